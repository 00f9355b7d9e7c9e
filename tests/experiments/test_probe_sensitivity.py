"""Probe sensitivity: ours is cpd(); each choice moves what it should on known-answer data; matscope's protocol."""

import numpy as np
import pandas as pd
import pytest

from cpd_core.decomposition import cpd, fold_labels
from cpd_core.errors import InputError
from cpd_core.experiments.probe_sensitivity import (
    MATSCOPE,
    MATSCOPE_NAME,
    OURS,
    PROTOCOLS,
    Protocol,
    SensitivityRun,
    ani_rows,
    choice_summary,
    compare_protocols,
    composition_columns,
    fold_assignment,
    model_table,
    probe_sensitivity,
    protocol_table,
    replicates,
    ridge_residual,
    score_protocols,
    sensitivity_facts,
    sensitivity_measurements,
    sensitivity_plot,
    set_tables,
    sign_flips,
)

pytestmark = pytest.mark.usefixtures("tmp_cache")  # fixtures: tests/experiments/conftest.py


def _data(n=300, d=6, seed=0):
    """Counts of three elements, features with composition and geometry in them, a target of both."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 7, size=(n, 3)).astype(float)
    g = rng.normal(size=n)
    H = np.column_stack([counts @ rng.normal(size=(3, d)) + np.outer(g, rng.normal(size=d)),
                         rng.normal(size=(n, 4))])
    y = counts @ [0.5, -0.2, 0.1] + g + 0.3 * rng.normal(size=n)
    return H, counts, y


def _one(H, counts, y, p: Protocol, cv=5):
    return score_protocols(H, counts, {"y": y}, {"p": p}, cv=cv)[("p", "y")]


@pytest.mark.parametrize("protocol, kwargs, kind, intercept", [
    (Protocol(), {}, "counts", True),
    (Protocol(scaler="zscore"), {"clip": False}, "counts", True),
    (Protocol(scaler="none"), {"standardize": False}, "counts", True),
    (Protocol(alpha=1.0), {"alphas": 1.0}, "counts", True),
    (Protocol(projection="all"), {"fit_projection": "all"}, "counts", True),
    (Protocol(intercept=False), {}, "counts", False),
    (Protocol(composition="fractions"), {}, "fractions", True),
    (Protocol(composition="fractions", intercept=False), {}, "fractions", False),
])
def test_each_protocol_with_shuffled_folds_is_cpd_with_the_same_choices(protocol, kwargs, kind, intercept):
    H, counts, y = _data()
    res = _one(H, counts, y, protocol)
    ref = cpd(H, composition_columns(counts, kind, intercept), y, **kwargs)
    assert abs(res.value - ref.r2_geom) < 1e-10
    np.testing.assert_allclose(res.oof, ref.oof["geom"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(res.fold_r2, ref.folds["r2_geom"].to_numpy(), rtol=0, atol=1e-10)
    np.testing.assert_array_equal(res.alpha, ref.folds["alpha_geom"].to_numpy())
    assert np.allclose([res.lo, res.hi], ref.ci["r2_geom"], rtol=0, atol=1e-10)   # the same bootstrap, draw for draw


def test_fractions_with_and_without_intercept_span_the_same_space_and_the_near_constant_rule_cannot_bind():
    H, counts, y = _data(seed=1)
    # computed apart (cpd builds each composition matrix as given): equal to round-off
    a = cpd(H, composition_columns(counts, "fractions", True), y)
    b = cpd(H, composition_columns(counts, "fractions", False), y)
    assert abs(a.r2_geom - b.r2_geom) < 1e-8
    # a residual centred on the training rows: keeping near-constant columns (rtol 0) changes nothing
    from cpd_core.ridge import RidgeFolds

    C = composition_columns(counts)
    folds = fold_labels(len(y), 5, 0)
    for rtol in (0.0, 1e-8):
        rf = RidgeFolds(H, C, y, folds, rtol=rtol)
        pred = rf.fit([1, 2, 3, 4], 0, [1.0]).predictions
        if rtol:
            np.testing.assert_array_equal(pred, kept)
        kept = pred
    res = score_protocols(H, counts, {"y": y}, {"o": Protocol(), "k": Protocol(near_constant="keep")})
    np.testing.assert_array_equal(res[("o", "y")].oof, res[("k", "y")].oof)


def test_a_fixed_penalty_far_from_the_right_one_loses_to_a_chosen_penalty():
    rng = np.random.default_rng(2)
    n = 200
    counts = rng.integers(1, 6, size=(n, 3)).astype(float)
    H = rng.normal(size=(n, 150))                         # many weak columns: the right penalty is large
    y = 0.05 * H.sum(axis=1) + 0.3 * rng.normal(size=n)
    res = score_protocols(H, counts, {"y": y}, {OURS: Protocol(), "a1": Protocol(alpha=1.0)})
    chosen, fixed = res[(OURS, "y")], res[("a1", "y")]
    assert np.median(chosen.alpha) > 10 and np.all(fixed.alpha == 1.0)
    c = compare_protocols(fixed, chosen)
    assert c.resolved and c.diff < -0.5


def test_projection_on_all_rows_leaks_composition_when_rank_c_is_large_against_n():
    # the target is pure composition and the features pure noise: R²_geom is zero at best
    rng = np.random.default_rng(3)
    n = 120
    counts = rng.integers(0, 4, size=(n, 30)).astype(float)      # rank(C) = 31 of 120 rows
    H = rng.normal(size=(n, 20))
    y = counts @ rng.normal(size=30)
    protocols = {"train": Protocol(alpha=1.0), "all": Protocol(alpha=1.0, projection="all")}
    res = score_protocols(H, counts, {"y": y}, protocols)
    train, allrows = res[("train", "y")], res[("all", "y")]
    # fit on the training rows the residual is orthogonal to any composition-linear target there: the
    # ridge weights are zero and each fold predicts its training mean
    folds = train.fold_of
    means = np.array([y[folds != f].mean() for f in folds])
    np.testing.assert_allclose(train.oof, means, rtol=0, atol=1e-8)
    # fit on all rows, the training residual carries composition, with the opposite sign on the held-out rows
    c = compare_protocols(allrows, train)
    assert c.resolved and c.diff < -0.2


def test_unshuffled_folds_on_rows_sorted_by_the_target_extrapolate_and_pooling_hides_it():
    rng = np.random.default_rng(4)
    n = 400
    counts = rng.integers(1, 6, size=(n, 3)).astype(float)
    g = np.sort(rng.normal(size=n))
    H = np.column_stack([g + 0.3 * rng.normal(size=n), rng.normal(size=(n, 5))])
    res = score_protocols(H, counts, {"y": g}, {OURS: Protocol(), "u": Protocol(folds="unshuffled"),
                                                "up": Protocol(folds="unshuffled", aggregate="pooled")})
    ours, unshuffled, pooled = res[(OURS, "y")], res[("u", "y")], res[("up", "y")]
    assert fold_assignment(7, 3, folds="unshuffled").tolist() == [0, 0, 0, 1, 1, 2, 2]
    assert ours.value > 0.85 and unshuffled.value < 0          # each held-out fold is a narrow band of y
    c = compare_protocols(unshuffled, ours)                    # other folds: paired over the cells of both
    assert c.resolved and c.diff < -1
    # pooled over all out-of-fold predictions the band's own variance is not the reference
    np.testing.assert_array_equal(pooled.oof, unshuffled.oof)
    assert pooled.value == pytest.approx(1 - np.sum((g - pooled.oof) ** 2) / np.sum((g - g.mean()) ** 2), abs=1e-12)
    assert pooled.value > 0.7 and unshuffled.value == pytest.approx(unshuffled.fold_r2.mean(), abs=1e-12)


def test_plain_z_scoring_lets_one_rare_column_collapse_a_fold_that_clipping_keeps():
    rng = np.random.default_rng(0)
    n = 300
    counts = rng.integers(1, 6, size=(n, 3)).astype(float)
    g = rng.normal(size=n)
    folds = fold_labels(n, 5, 0)
    rare = np.zeros(n)                                # non-zero for one training and one held-out molecule
    rare[np.flatnonzero(folds != 0)[0]], rare[np.flatnonzero(folds == 0)[0]] = 1.0, 100.0
    H = np.column_stack([g + 0.5 * rng.normal(size=n), rng.normal(size=(n, 5)), rare])
    y = g + 0.5 * rng.normal(size=n)
    res = score_protocols(H, counts, {"y": y}, {"clip": Protocol(alpha=1.0), "z": Protocol(scaler="zscore", alpha=1.0)})
    clipped, plain = res[("clip", "y")], res[("z", "y")]
    assert clipped.fold_r2.min() > 0.4 and plain.fold_r2[0] < -10
    np.testing.assert_allclose(plain.fold_r2[1:], clipped.fold_r2[1:], atol=0.02)   # only that fold moves


def test_ridge_residual_and_matscope_protocol_match_scikit_learn():
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import cross_validate
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    H, counts, y = _data(n=250, seed=5)
    X = composition_columns(counts, "fractions", intercept=False)
    Z = StandardScaler().fit_transform(X)
    expected = H - Ridge(alpha=1.0).fit(Z, H).predict(Z)
    np.testing.assert_allclose(ridge_residual(H, X, 1.0), expected, rtol=0, atol=1e-9)
    scores = cross_validate(make_pipeline(StandardScaler(), Ridge(alpha=1.0)), expected, y, cv=5, scoring="r2")
    res = _one(H, counts, y, MATSCOPE)
    assert res.value == pytest.approx(float(np.mean(scores["test_score"])), abs=1e-8)
    np.testing.assert_allclose(res.fold_r2, scores["test_score"], rtol=0, atol=1e-8)


def _matscope_arrays(seed=6, n=200):
    """Molecules as matscope reads them (dicts of atomic numbers) and features that carry composition."""
    rng = np.random.default_rng(seed)
    numbers = [rng.choice([1, 6, 7, 8, 9], size=rng.integers(4, 20), p=[0.5, 0.3, 0.1, 0.08, 0.02]) for _ in range(n)]
    counts = np.array([[np.sum(z == e) for e in (1, 6, 7, 8, 9)] for z in numbers], dtype=float)
    g = rng.normal(size=n)
    H = np.column_stack([counts @ rng.normal(size=(5, 8)) + np.outer(g, rng.normal(size=8)), rng.normal(size=(n, 3))])
    H[:, -1] = 0.0
    H[:3, -1] = [1.0, 2.0, 5.0]                              # a rare column, as in ANI-2x's AEV
    y = counts @ rng.normal(size=5) + g + 0.3 * rng.normal(size=n)
    return numbers, counts, H, y


def test_the_reimplementation_equals_the_matscope_package():
    pytest.importorskip("matscope")
    from matscope.analysis.cpd import CompositionProjectionDecomposition
    from matscope.datasets import composition_features

    numbers, counts, H, y = _matscope_arrays()
    C = composition_features([{"numbers": [int(v) for v in z]} for z in numbers], method="fractional")
    np.testing.assert_allclose(C, composition_columns(counts, "fractions", intercept=False), rtol=0, atol=1e-15)
    theirs = CompositionProjectionDecomposition(probe_type="linear").decompose(H, C, y).residual_linear_r2
    assert _one(H, counts, y, MATSCOPE).value == pytest.approx(theirs, abs=1e-8)


def test_paired_replicates_agree_with_cpd_core_compare_and_keep_every_fold_size():
    from cpd_core.intervals import compare

    H, counts, y = _data(seed=7)
    a, b = cpd(H, composition_columns(counts), y), cpd(H[:, :3], composition_columns(counts), y)
    res = score_protocols(H, counts, {"y": y}, {OURS: Protocol()})[(OURS, "y")]
    res_b = score_protocols(H[:, :3], counts, {"y": y}, {OURS: Protocol()})[(OURS, "y")]
    ours, ref = compare_protocols(res, res_b), compare(a, b)
    assert (ours.diff, ours.lo, ours.hi) == pytest.approx((ref.diff, ref.lo, ref.hi), abs=1e-10)
    # two fold assignments: every replicate of a constant-error prediction keeps its folds' sizes, so the
    # fold-mean score of a perfect prediction is exactly 1 under both
    u = score_protocols(H, counts, {"y": y}, {"u": Protocol(folds="unshuffled")})[("u", "y")]
    perfect = [type(r)(r.protocol, 1.0, r.fold_r2, r.alpha, r.n_kept, r.y, r.fold_of, r.y.copy()) for r in (res, u)]
    np.testing.assert_allclose(replicates(perfect, n_boot=50), 1.0)
    with pytest.raises(InputError, match="same molecules"):
        replicates([res, score_protocols(H, counts, {"y": y + 1}, {OURS: Protocol()})[(OURS, "y")]])


def _toy_run(protocols=None):
    """Three 'models' on the same molecules (one named as ANI-2x's descriptor), through set_tables."""
    protocols = protocols or {k: PROTOCOLS[k] for k in (OURS, "α = 1", "unshuffled folds", MATSCOPE_NAME)}
    H, counts, y = _data(n=300, seed=8)
    rng = np.random.default_rng(9)
    blocks = {"ani2x-aev": H, "good": np.column_stack([H, y + 0.2 * rng.normal(size=300)]),
              "noise": rng.normal(size=(300, 5))}
    results, info = {}, {}
    for m, X in blocks.items():
        got = score_protocols(X, counts, {"gap": y, "dipole": -y}, protocols, intervals=False)
        results.update({(m, t, p): r for (p, t), r in got.items()})
        info[m] = {"model": m, "family": "toy", "status": "original", "block": "b", "width": X.shape[1],
                   "same block as": ""}
    rows, contrasts, orders = set_tables("toy set", results, info, protocols, n_boot=200)
    return SensitivityRun(pd.DataFrame(rows), pd.DataFrame(contrasts), pd.DataFrame(orders),
                          {("toy set", *k): v for k, v in results.items()}, {"toy set": 300}, protocols,
                          {"toy set": 0.5})


def test_tables_flips_facts_and_the_scorecard_measurement_of_a_run():
    run = _toy_run()
    s, c = run.summary, run.contrasts
    assert len(s) == 3 * 2 * 4 and len(c) == 3 * 2 * 3
    assert s["r2_geom_lo"].notna().all() and (s["r2_geom_lo"] <= s["r2_geom_hi"]).all()
    assert set(c["protocol"]) == {"α = 1", "unshuffled folds", MATSCOPE_NAME}
    # 'good' holds the target, 'noise' nothing: ours orders them, resolved
    o = run.orders
    pair = o[(o["model_a"] == "good") & (o["model_b"] == "noise") & (o["target"] == "gap")]
    assert len(pair) == 3 and (pair["ours_lo"] > 0).all()
    summary = choice_summary(run).set_index(["target", "protocol"])
    assert summary.loc[("gap", OURS), "lowered"] == 0 and summary.loc[("gap", OURS), "models"] == 3
    flips = sign_flips(run)
    assert set(flips.columns) >= {"model", "protocol", "ours", "this protocol"}
    for _, f in flips.iterrows():
        assert np.sign(f["ours"]) != np.sign(f["this protocol"])
    table = model_table(run, "gap")
    assert list(table.columns[:3]) == ["set", "model", "block"] and len(table) == 3
    with pytest.raises(InputError, match="not probed"):
        model_table(run, "homo")
    a = ani_rows(run)
    assert len(a) == 4 and a.set_index("protocol").loc[OURS, "change"] == 0.0
    facts = sensitivity_facts(run)
    assert facts["protocols"] == 4 and facts["aev500_n"] == 300 and facts["size_order"] == "toy set 0.50"
    assert facts["aev500_ours"].count("[") == 1 and facts["aev500_matscope_side"] in ("above zero", "below zero",
                                                                                       "across zero")
    (m,) = sensitivity_measurements(run)
    assert m.claim == "ani_gap_ridge" and m.n == 300 and "matscope 0.2.0" in m.what
    ms = a.set_index("protocol").loc[MATSCOPE_NAME]
    assert (m.value, m.lo, m.hi) == pytest.approx((ms["r2_geom"], ms["r2_geom_lo"], ms["r2_geom_hi"]))
    assert sensitivity_plot(run, "gap").axes


def test_protocols_are_checked():
    with pytest.raises(InputError, match="scaler"):
        Protocol(scaler="robust")
    with pytest.raises(InputError, match="alpha"):
        Protocol(alpha=0.0)
    assert MATSCOPE.differs() == {"scaler": "zscore", "near_constant": "keep", "alpha": 1.0, "projection": "ridge-all",
                                  "composition": "fractions", "intercept": False, "folds": "unshuffled"}
    assert set(protocol_table().columns) >= {"protocol", "scaler", "folds"} and len(protocol_table()) == len(PROTOCOLS)
    with pytest.raises(InputError, match="must include"):
        probe_sensitivity(["ani2x-aev"], archs=[], n=10, protocols={"x": Protocol()})


def test_on_qm9_the_gap_block_comes_from_the_models_chapter_scan(qm9_loaded, monkeypatch):
    import cpd_core.selection as selection
    from cpd_core.experiments.model_gradient import model_gradient

    model_gradient(["ani2x-aev"], n=60, probes=["ridge"], cv=3, device="cpu")
    scanned = []
    real = selection._scan_block
    monkeypatch.setattr(selection, "_scan_block", lambda *call: scanned.append(call) or real(*call))
    protocols = {k: PROTOCOLS[k] for k in (OURS, MATSCOPE_NAME)}
    run = probe_sensitivity(["ani2x-aev"], archs=[], n=60, cv=3, protocols=protocols, aev_molecules=40,
                            device="cpu")
    assert scanned == [] and run.n == {"QM9 subset": 60, "ANI-2x chapter's subset": 40}
    s = run.summary
    assert set(s["block"][s["set"] == "ANI-2x chapter's subset"]) == {"aev"}
    assert len(s) == 2 * 2 * 2 and len(run.contrasts) == 2 * 2
    assert -1 <= run.size_order["QM9 subset"] <= 1
