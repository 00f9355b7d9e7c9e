"""Sample efficiency: a representation that holds the target in few directions learns it from fewer molecules."""

import numpy as np
import pandas as pd
import pytest

from cpd_core.decomposition import cpd, fold_labels
from cpd_core.errors import InputError
from cpd_core.experiments.sample_efficiency import (
    MEASURES,
    SHUFFLED,
    EfficiencyRun,
    _live_columns,
    curve_predictions,
    curve_scores,
    efficiency,
    efficiency_facts,
    efficiency_measurements,
    efficiency_plot,
    efficiency_set,
    fold_r2,
    model_curves,
    model_row,
    model_table,
    n90_note,
    n_reach,
    rank_correlation,
    rank_table,
    ranks_of,
    sample_efficiency,
    size_grid,
    subsample,
)
from cpd_core.intervals import bootstrap_r2
from cpd_core.projection import project_out

pytestmark = pytest.mark.usefixtures("tmp_cache")  # fixtures: tests/experiments/conftest.py


def _planted(n=400, seed=0):
    """Counts, a geometric signal orthogonal to them, and a target that is both (R²_geom of g alone = its share)."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 6, size=(n, 3)).astype(float)
    C = np.hstack([counts, np.ones((n, 1))])
    g = project_out(rng.normal(size=(n, 1)), C)[:, 0]
    g /= g.std()
    y = counts @ [0.5, -0.3, 0.2] + g
    return rng, C, g, y


def _representation(rng, C, g, width, noise, blur=0.0):
    """``g`` spread over ``width`` random directions among as many nuisance columns, plus composition;
    ``blur`` adds noise to ``g`` itself, which no number of molecules removes (a lower ceiling)."""
    n = len(g)
    mix = rng.normal(size=(1, width))
    signal = g + blur * rng.normal(size=n)
    H = np.hstack([signal[:, None] @ mix + noise * rng.normal(size=(n, width)), rng.normal(size=(n, width)), C[:, :3]])
    return H


def test_size_grid_and_balanced_subsets():
    assert size_grid(400) == [32, 64, 128, 256, 400] and size_grid(64) == [32, 64]
    with pytest.raises(InputError):
        size_grid(0)
    fold_of = fold_labels(100, 5, 0)
    a = subsample(fold_of, 2, 41, np.random.default_rng([0, 2, 41]))
    b = subsample(fold_of, 2, 41, np.random.default_rng([0, 2, 41]))
    assert np.array_equal(a, b) and len(np.unique(a)) == 41          # seeded, without replacement
    per_fold = np.bincount(fold_of[a], minlength=5)
    assert per_fold[2] == 0 and sorted(per_fold[[0, 1, 3, 4]]) == [10, 10, 10, 11]
    with pytest.raises(InputError, match="cannot fill"):
        subsample(fold_of, 0, 3, np.random.default_rng(0))


def test_at_all_training_rows_the_curve_is_the_cpd_ridge_fit():
    rng, C, g, y = _planted()
    H = _representation(rng, C, g, 8, 0.5)
    fold_of = fold_labels(len(y), 5, 0)
    preds = curve_predictions({f: H for f in range(5)}, C, {"y": y}, fold_of, [64, None], draws=3)["y"]
    ref = cpd(H, C, y, cv=5, seed=0)
    # the same fit up to round-off (the rows are stored in another order)
    assert np.allclose(preds[1, 0], ref.oof["geom"], rtol=0, atol=1e-9) and np.array_equal(preds[1, 2], preds[1, 0])
    assert not np.array_equal(preds[0, 0], preds[0, 1])               # smaller sizes: separate draws
    values, reps = curve_scores(y, fold_of, preds, n_boot=200)
    assert values[1] == pytest.approx(ref.r2_geom, abs=1e-9) and reps.shape == (200, 2)


def test_a_disentangled_representation_learns_from_fewer_molecules_and_a_shuffled_target_reads_nothing():
    rng, C, g, y = _planted(n=500)
    fold_of = fold_labels(len(y), 5, 0)
    sizes = [32, 64, 128, 256, None]
    ys = {"y": y, SHUFFLED: np.random.default_rng(1).permutation(y)}
    H_few, H_many = _representation(rng, C, g, 2, 0.3), _representation(rng, C, g, 150, 3.0)
    few = model_curves({f: H_few for f in range(5)}, C, ys, fold_of, sizes, n_boot=200)
    many = model_curves({f: H_many for f in range(5)}, C, ys, fold_of, sizes, n_boot=200)
    v_few, v_many = few["y"][0], many["y"][0]
    # g is about half of y's variance: both hold it, one needs more molecules to read it
    assert v_few[0] > 0.25 and v_many[-1] > 0.3 and abs(v_few[-1] - v_many[-1]) < 0.1
    assert v_many[-1] - v_many[0] > 0.25 and v_many[0] < v_few[0] - 0.2
    assert np.all(np.diff(v_many) > -0.02)                             # the curve rises with the training rows
    assert efficiency(v_few, "relative") > efficiency(v_many, "relative") + 0.1
    for curves in (few, many):
        assert curves[SHUFFLED][0].max() < 0.03                        # nothing to read at any size
        lo, hi = np.percentile(curves["y"][1], [2.5, 97.5], axis=0)
        assert np.all(lo <= curves["y"][0] + 1e-12) and np.all(curves["y"][0] <= hi + 1e-12)


def test_rank_correlation_is_paired_over_models_and_can_fail():
    rng = np.random.default_rng(0)
    D = np.linspace(0.1, 0.9, 6)
    reps = D + 0.01 * rng.normal(size=(300, 6))
    up = rank_correlation(D, D / 2, reps, reps / 2)
    assert up["rho"] == 1.0 and up["lo"] == 1.0 and up["n_models"] == 6
    down = rank_correlation(D, -D, reps, -reps)
    assert down["rho"] == -1.0 and down["hi"] == -1.0
    noise = rank_correlation(D, D[::-1] * 0 + rng.normal(size=6), reps, rng.normal(size=(300, 6)))
    assert noise["lo"] < 0 < noise["hi"]                               # unrelated: not resolved
    assert np.isnan(rank_correlation(D[:2], D[:2], reps[:, :2], reps[:, :2])["rho"])


def _toy_run():
    """An EfficiencyRun of four planted representations (one a 'twin' that holds nothing), built as the chapter
    does, for two targets: the gap (the planted signal) and a 'dipole' with half of it."""
    rng, C, g, y = _planted(n=400)
    fold_of = fold_labels(len(y), 5, 0)
    sizes = size_grid(int(min(np.sum(fold_of != f) for f in range(5))))
    dipole = C[:, :3] @ [0.1, 0.2, 0.3] + 0.5 * g + 0.5 * rng.normal(size=len(y))
    ys = {"gap": y, "dipole": dipole, SHUFFLED: np.random.default_rng(0).permutation(y)}
    specs = {"sharp": (2, 0.3, 0.0, "original"), "medium": (20, 1.0, 0.7, "original"),
             "blurred": (100, 3.0, 1.5, "original"), "twin": (0, 0.0, 0.0, "random-init")}
    reps, curves, per_model = {}, [], []
    for name, (width, noise, blur, status) in specs.items():
        H = _representation(rng, C, g, width, noise, blur) if width else np.hstack([rng.normal(size=(len(y), 20)), C[:, :3]])
        reps[name] = model_curves({f: H for f in range(5)}, C, ys, fold_of, sizes[:-1] + [None], n_boot=200)
        for t, (vals, r) in reps[name].items():
            ci = np.percentile(r, [2.5, 97.5], axis=0)
            info = {"molecules": "QM9 subset", "model": name, "family": "toy", "status": status, "block": "h",
                    "target": t, "probe": "ridge"}
            curves += [{**info, "m": m, "r2_geom": vals[i], "r2_geom_lo": ci[0, i], "r2_geom_hi": ci[1, i]}
                       for i, m in enumerate(sizes)]
            per_model.append({**info, **model_row(vals, r, sizes)})
    models = pd.DataFrame(per_model)
    ranks = pd.DataFrame([{"molecules": "QM9 subset", "probe": "ridge", **r}
                          for t in ("gap", "dipole") for r in ranks_of(models, reps, t, sizes)])
    return EfficiencyRun(pd.DataFrame(curves), models, ranks, {"QM9 subset": len(y)}, {"QM9 subset": sizes}, 5, reps,
                         ("gap", "dipole"), 200)


def test_tables_facts_measurements_and_figure_of_a_run():
    run = _toy_run()
    ranks = rank_table(run).set_index(["target", "group", "measure"])
    # the sharper the representation, the higher both D and its few-molecule score: ρ = 1 over the four
    for t in ("gap", "dipole"):
        assert ranks.loc[(t, "all", "absolute"), "rho"] == 1.0 and ranks.loc[(t, "all", "absolute"), "n_models"] == 4
        assert ranks.loc[(t, "all", "absolute"), "rho_lo"] > 0
    # the twin holds nothing (D not above zero): left out of the relative and n90 readings and of 'trained'
    assert "twin" not in ranks.loc[("gap", "all", "relative"), "models"]
    assert "twin" not in ranks.loc[("gap", "all", "n90"), "models"]
    assert ranks.loc[("gap", "trained", "absolute"), "n_models"] == 3
    assert ranks.loc[("gap", "all", "relative"), "rho"] == 1.0
    # the sharp representation reaches 90 % of its ceiling with fewer molecules than the blurred one
    table = model_table(run)
    assert list(table["model"].unique()) == ["sharp", "medium", "blurred", "twin"]
    assert set(table["target"]) == {"gap", "dipole"}                       # the control is not a row
    gap = table[table["target"] == "gap"].set_index("model")
    assert gap.loc["sharp", "n90"] < gap.loc["blurred", "n90"] and ranks.loc[("gap", "all", "n90"), "rho"] < 0
    assert gap.loc["twin", "n90_note"] == "D ≤ 0" and np.isnan(gap.loc["twin", "n90"])
    assert (gap["n90_lo"] <= gap["n90"]).loc[["sharp", "medium", "blurred"]].all()
    facts = efficiency_facts(run)
    assert facts["subset_n_mol"] == 400 and facts["subset_sizes"] == "32, 64, 128, 256 and 320"
    for t in ("gap", "dipole"):
        assert facts[f"subset_{t}_abs_all"].startswith("ρ = +1.00")
        assert facts[f"subset_{t}_abs_all_verdict"].startswith("positive")
        assert facts[f"subset_{t}_best"].startswith("sharp") and facts[f"heldout_{t}_abs_all"] == "not run here"
        assert facts[f"subset_{t}_n90"].startswith("median")
    assert "over 3 models" in facts["subset_gap_n90"]                     # the three whose D is above zero
    assert facts["subset_gap_n90_all_verdict"].startswith("negative")
    assert float(facts["subset_shuffled_max"]) < 0.03 and facts["draws"] == 5 and facts["n_boot"] == 200
    (m,) = efficiency_measurements(run)                                    # one probe set, the gap only
    gap_abs = ranks.loc[("gap", "all", "absolute")]
    assert m.claim == "sample_efficiency" and m.value == gap_abs["rho"] and m.lo == gap_abs["rho_lo"]
    assert "of the gap" in m.what and m.n == 400 and not m.comparable
    fig = efficiency_plot(run)
    assert len(fig.axes) == 4                                              # one row per target


def test_probes_are_checked():
    with pytest.raises(InputError, match="probes"):
        sample_efficiency(["ani2x-aev"], archs=[], n=60, probes=["lasso"])


def test_a_refit_probe_runs_on_the_same_subsets():
    rng, C, g, y = _planted(n=200)
    H = _representation(rng, C, g, 4, 0.5)
    fold_of = fold_labels(len(y), 5, 0)
    preds = curve_predictions({f: H for f in range(5)}, C, {"y": y}, fold_of, [32, None], draws=2, probe="gbt")["y"]
    assert preds.shape == (2, 2, 200) and np.isfinite(preds).all()
    assert np.array_equal(preds[1, 0], preds[1, 1]) and not np.array_equal(preds[0, 0], preds[0, 1])


def test_on_qm9_the_largest_size_is_the_models_chapter_nested_score(qm9_loaded, monkeypatch):
    import cpd_core.selection as selection
    from cpd_core.experiments.model_gradient import model_gradient

    chapter = model_gradient(["ani2x-aev"], n=80, targets=["gap", "dipole"], probes=["ridge"], cv=5, device="cpu",
                             controls=False, routing=False)
    scanned = []
    real = selection._scan_block
    monkeypatch.setattr(selection, "_scan_block", lambda *call: scanned.append(call) or real(*call))
    curves, per_model, ranks, reps, n, sizes = efficiency_set(["ani2x-aev"], "QM9 subset", {"n": 80, "seed": 0},
                                                              draws=2, n_boot=100, device="cpu")
    assert scanned == [] and n == 80 and sizes == [32, 64]             # the models chapter's scans, from the cache
    s = chapter.summary
    for t in ("gap", "dipole"):
        row = [r for r in per_model if r["target"] == t][0]
        nested = s[(s["target"] == t) & (s["probe"].str.startswith("ridge"))]["r2_geom"].iloc[0]
        assert row["D"] == pytest.approx(nested, abs=1e-9)             # all training rows: the chapter's score
    assert {r["target"] for r in per_model} == {"gap", "dipole", SHUFFLED}
    assert {c["m"] for c in curves} == {32, 64} and all(r["n_models"] < 3 for r in ranks)
    assert {r["target"] for r in ranks} == {"gap", "dipole"}


def test_n90_interpolates_on_log_m_and_handles_its_edges():
    sizes = [32, 64, 128, 256]
    curves = np.array([
        [0.0, 0.1, 0.9, 1.0],       # crosses 0.9 exactly at 128
        [0.0, 0.4, 0.5, 1.0],       # crosses between 128 (0.5) and 256 (1.0): 0.8 of the way on log m
        [0.95, 0.9, 0.97, 1.0],     # already there at the smallest size: censored at 32
        [0.2, 0.1, 0.0, -0.1],      # D <= 0: no ceiling
        [0.2, 0.1, 0.0, 0.0],       # D = 0 exactly
        [np.nan, 0.1, 0.2, 0.3],    # a missing point
        [0.5, 0.95, 0.2, 1.0],      # not monotone: the first crossing counts
    ])
    got = n_reach(curves, sizes)
    assert got[0] == pytest.approx(128.0) and got[1] == pytest.approx(128 * 2 ** 0.8)
    assert got[2] == 32.0 and np.isnan(got[3]) and np.isnan(got[4]) and np.isnan(got[5])
    assert got[6] == pytest.approx(32 * 2 ** (0.4 / 0.45))
    # scaling a curve by D > 0 does not move n90; a lower share is reached no later
    assert np.allclose(n_reach(3.0 * curves[:3], sizes), got[:3])
    assert np.all(n_reach(curves[:3], sizes, share=0.5) <= got[:3])
    assert [n90_note(v, d) for v, d in zip(got, curves[:, -1])] == ["reached", "reached", "at or below 32", "D ≤ 0",
                                                                     "D ≤ 0", "D ≤ 0", "reached"]
    with pytest.raises(InputError):
        n_reach(curves, sizes[:3])
    with pytest.raises(InputError, match="sizes"):
        efficiency(curves, "n90")
    # a replicate whose D is not above zero never reaches: the interval's upper bound is infinite
    reps = np.vstack([np.tile(curves[1], (90, 1)), np.tile(curves[3], (10, 1))])
    row = model_row(curves[1], reps, sizes)
    assert row["n90_lo"] == pytest.approx(got[1]) and row["n90_hi"] == np.inf and row["n90_note"] == "reached"


def test_fold_r2_is_bootstrap_r2_and_the_fold_mean_r2():
    from sklearn.metrics import r2_score

    rng = np.random.default_rng(3)
    y = rng.normal(size=250) + 5.0
    fold_of = fold_labels(250, 5, 0)
    P = y + rng.normal(size=(6, 250)) * np.linspace(0.1, 2.0, 6)[:, None]
    values, reps = fold_r2(y, fold_of, P, n_boot=130, seed=4, chunk=50)
    assert np.allclose(reps, bootstrap_r2(y, fold_of, list(P), n_boot=130, seed=4, chunk=50), rtol=0, atol=1e-10)
    ref = [np.mean([r2_score(y[fold_of == f], p[fold_of == f]) for f in range(5)]) for p in P]
    assert np.allclose(values, ref, rtol=0, atol=1e-12) and np.all(np.diff(values) < 0)


def test_zero_columns_and_shared_arrays_change_no_prediction():
    rng, C, g, y = _planted(n=300)
    H = _representation(rng, C, g, 6, 0.5)
    fold_of = fold_labels(len(y), 5, 0)
    padded = np.hstack([np.zeros((len(y), 40)), H, np.zeros((len(y), 7))])
    assert np.array_equal(_live_columns(padded), H) and _live_columns(H) is H
    ys = {"y": y, "z": y[::-1].copy()}
    plain = curve_predictions({f: H for f in range(5)}, C, ys, fold_of, [32, 96, None], draws=2)
    wide = curve_predictions({f: padded for f in range(5)}, C, ys, fold_of, [32, 96, None], draws=2)
    alone = curve_predictions({f: H for f in range(5)}, C, {"z": ys["z"]}, fold_of, [32, 96, None], draws=2)
    for t in ys:
        assert np.allclose(plain[t], wide[t], rtol=0, atol=1e-9)
    assert np.allclose(plain["z"], alone["z"], rtol=0, atol=1e-9)          # sharing a fit's array with "y"


def test_each_target_its_own_block_and_known_predictions_at_all_rows():
    rng, C, g, y = _planted(n=300)
    fold_of = fold_labels(len(y), 5, 0)
    H_good, H_noise = _representation(rng, C, g, 4, 0.3), rng.normal(size=(len(y), 10))
    ys = {"a": y, "b": y}
    blocks = {"a": {f: H_good for f in range(5)}, "b": {f: H_noise for f in range(5)}}
    curves = model_curves(blocks, C, ys, fold_of, [32, 64, None], draws=2, n_boot=100)
    assert curves["a"][0][-1] > 0.3 and curves["b"][0][-1] < 0.05                # each target read its own block
    computed = curve_predictions(blocks, C, ys, fold_of, [64, None], draws=2)
    fake = np.full(len(y), 7.0)
    given = curve_predictions(blocks, C, ys, fold_of, [64, None], draws=2, known={"a": fake})
    assert np.all(given["a"][1] == 7.0) and np.array_equal(given["a"][0], computed["a"][0])
    assert np.array_equal(given["b"], computed["b"])
    with pytest.raises(InputError, match="no blocks"):
        curve_predictions({"a": blocks["a"]}, C, ys, fold_of, [64, None])
