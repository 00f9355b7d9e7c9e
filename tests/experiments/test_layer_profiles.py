"""Layer-wise profiles: block parsing, composition share and count read-back (known answers), the dip test."""

import numpy as np
import pandas as pd
import pytest

from cpd_core.errors import InputError
from cpd_core.experiments.layer_profiles import (
    ProfileRun,
    composition_share,
    count_readback,
    dip_table,
    dip_test,
    parse_block,
    profile,
    profile_blocks,
    profile_facts,
    share_replicates,
)


pytestmark = pytest.mark.usefixtures("tmp_cache")  # fixtures: tests/experiments/conftest.py


def _counts(n=400, seed=0):
    rng = np.random.default_rng(seed)
    counts = pd.DataFrame({"H": rng.integers(2, 16, n), "C": rng.integers(1, 9, n), "O": rng.integers(0, 4, n)})
    return counts, np.column_stack([counts.to_numpy(float), np.ones(n)])


def test_parse_block_and_profile_blocks():
    assert parse_block("layer2/L0") == {"layer": "layer2", "depth": 2, "L": 0, "invariant": None}
    assert parse_block("layer0/L0")["depth"] == 0  # DimeNet++ numbers its first block 0
    assert parse_block("atomic_energy")["depth"] is None
    names = ["hidden3", "aev/angular", "aev", "hidden1", "hidden2", "atomic_energy"]
    assert profile_blocks(names) == ["aev", "hidden1", "hidden2", "hidden3"]
    names = [f"layer{k}/{irrep}" for k in (2, 1) for irrep in ("L0", "L1@atom-norm", "L1@pooled-norm")]
    assert profile_blocks(names + ["embedding/L0"]) == ["embedding/L0", "layer1/L0", "layer2/L0"]


def test_composition_share_known_answers():
    counts, C = _counts()
    rng = np.random.default_rng(1)
    # every column a linear function of the counts: all of the variance is compositional
    folds = np.arange(400) % 5
    share, lo, hi = composition_share(counts.to_numpy(float) @ rng.normal(size=(3, 5)), C, folds)
    assert share == pytest.approx(1.0, abs=1e-10) and hi <= 1.0 + 1e-12
    # pure noise: held out, nothing (a little below zero: the fit's own noise), and the interval covers it
    share, lo, hi = composition_share(rng.normal(size=(400, 50)), C, folds)
    assert -0.03 < share < 0.005 and lo < share < hi
    # half the columns compositional, half noise: half the variance
    H = np.column_stack([counts.to_numpy(float) @ rng.normal(size=(3, 10)), rng.normal(size=(400, 10))])
    share, lo, hi = composition_share(H, C, folds)
    assert share == pytest.approx(0.5, abs=0.02) and lo < share < hi
    # a constant column is dropped, not divided by zero
    share2 = composition_share(np.column_stack([np.ones(400), counts["C"]]), C, folds)[0]
    assert share2 == pytest.approx(1.0)
    with pytest.raises(InputError, match="same rows"):
        composition_share(np.ones((3, 2)), C, folds)


def test_count_readback_known_answers():
    counts, _ = _counts()
    rng = np.random.default_rng(2)
    folds = np.arange(400) % 5
    exact = count_readback(counts.to_numpy(float) @ rng.normal(size=(3, 6)), counts, folds)
    assert exact.r2 > 0.999 and set(exact.per_element) == {"H", "C", "O"}
    lo, hi = exact.interval()
    assert lo <= exact.r2 <= hi
    noise = count_readback(rng.normal(size=(400, 6)), counts, folds)
    assert noise.r2 < 0.05 and noise.interval()[0] < 0.0 < noise.interval()[1] + 0.05
    # fractions are not counts: mean-pooled features read counts back only partly
    fractions = counts.to_numpy(float) / counts.to_numpy(float).sum(axis=1, keepdims=True)
    part = count_readback(fractions, counts, folds)
    assert 0.1 < part.r2 < 0.95
    # a count that never varies within a fold is skipped
    counts["F"] = 0
    assert "F" not in count_readback(counts.to_numpy(float)[:, :3], counts, folds).per_element
    with pytest.raises(InputError, match="varies"):
        count_readback(rng.normal(size=(400, 2)), counts[["F"]], folds)


def _fake_run(middle_is_noise: bool) -> ProfileRun:
    """Three depths, each the counts seen through fresh noise; with ``middle_is_noise`` the middle is noise alone."""
    counts, C = _counts(n=500, seed=3)
    rng = np.random.default_rng(4)
    folds = np.arange(500) % 5
    X = (counts - counts.mean()).to_numpy(float) / counts.std().to_numpy()
    W = rng.normal(size=(3, 6))

    def noisy():
        return X @ W + 1.5 * rng.normal(size=(500, 6))

    layers = {"layer1/L0": noisy(), "layer2/L0": rng.normal(size=(500, 6)) if middle_is_noise else noisy(),
              "layer3/L0": noisy()}
    rows, replicates = [], {}
    for depth, (block, H) in enumerate(layers.items(), start=1):
        rb = count_readback(H, counts, folds)
        replicates[("m", 0, block, "readback")] = rb.r2, rb.replicates
        replicates[("m", 0, block, "comp_share")] = share_replicates(H, C, folds)
        row = {"molecules": "synthetic", "model": "m", "seed": 0, "family": "MACE", "status": "original",
               "twin_of": "", "depth": depth, "block": block, "d": H.shape[1], "r2_geom gap": 0.1 * depth,
               "r2_geom gap_lo": 0.0, "r2_geom gap_hi": 0.5}
        for m in ("readback", "comp_share"):
            row[m] = replicates[("m", 0, block, m)][0]
            row[m + "_lo"], row[m + "_hi"] = np.percentile(replicates[("m", 0, block, m)][1], [2.5, 97.5])
        rows.append(row)
    return ProfileRun(pd.DataFrame(rows), replicates, {"synthetic": 500})


def test_dip_test_finds_a_planted_dip_and_no_dip_where_there_is_none():
    run = _fake_run(middle_is_noise=True)
    for measure in ("readback", "comp_share"):
        dip = dip_test(run, "m", measure=measure)
        assert dip["middle"] == "layer2/L0" and dip["verdict"] == "dip and recovery", measure
        assert dip["lost_lo"] > 0.2 and dip["recovered_lo"] > 0.2
    flat = dip_test(_fake_run(middle_is_noise=False), "m", measure="readback")
    assert flat["verdict"] in ("not resolved", "no dip")
    with pytest.raises(InputError, match="measure"):
        dip_test(run, "m", measure="r2")
    table = dip_table(run)
    assert list(table["measure"]) == ["comp_share", "readback"] and table["equivariant"].all()
    assert (table["verdict"] == "dip and recovery").all() and (table["depths"] == 3).all()
    facts = profile_facts(run)
    assert facts["readback_dip_and_recovery"] == "m" and facts["comp_share_no_dip"] == "none"
    assert facts["best_last_gap"] == 1 and facts["best_first_gap"] == 0 and facts["too_shallow"] == "none"
    shallow = ProfileRun(run.table[run.table["depth"] < 3], run.replicates, run.n)
    assert dip_test(shallow, "m") is None
    assert (dip_table(shallow)["verdict"] == "fewer than 3 depths").all()
    assert profile_facts(shallow)["too_shallow"] == "m"


def test_profile_reads_the_models_chapter_scans(qm9_loaded, monkeypatch):
    """Same models, subset and folds as the models chapter: every block scan comes from its cache."""
    import cpd_core.selection as selection
    from cpd_core.experiments.model_gradient import model_gradient

    models = ["ani2x", "ani2x-random"]
    model_gradient(models, n=80, probes=["ridge"], cv=3, device="cpu", twin_seeds=(0,))
    scans = []
    real_scan = selection._scan_block
    monkeypatch.setattr(selection, "_scan_block", lambda *call: scans.append(call) or real_scan(*call))
    run = profile(models, n=80, cv=3, device="cpu")
    assert scans == []
    t = run.table
    assert list(t[t["model"] == "ani2x"]["block"]) == ["aev", "hidden1", "hidden2", "hidden3"]
    assert (t["r2_geom gap_lo"] <= t["r2_geom gap"]).all() and (t["readback"] <= t["readback_hi"]).all()
    assert ((t["comp_share"] > 0) & (t["comp_share"] < 1)).all()
    assert run.n == {"QM9 subset": 80}
