"""Mean vs sum pooling: the counts basis removes an element part exactly from a sum, not from a mean."""

import numpy as np
import pandas as pd
import pytest

from cpd_core.errors import InputError
from cpd_core.experiments.controls import MASS_PER_ATOM, mass_per_atom
from cpd_core.experiments.mean_vs_sum import (
    PoolingRun,
    compare_poolings,
    mean_vs_sum,
    pooling_facts,
    pooling_table,
    sign_changes,
)


pytestmark = pytest.mark.usefixtures("tmp_cache")  # fixtures: tests/experiments/conftest.py


def _element_only(n=400, seed=0):
    """Per-atom features that depend on the element alone: h_a = w_{e(a)}."""
    rng = np.random.default_rng(seed)
    elements = np.array([1, 6, 7, 8])
    W = rng.normal(size=(4, 8))
    numbers = [rng.choice(elements, size=rng.integers(4, 20), p=[0.5, 0.3, 0.1, 0.1]) for _ in range(n)]
    counts = np.array([[np.sum(z == e) for e in elements] for z in numbers], dtype=float)
    atoms = counts.sum(axis=1)
    total = counts @ W
    C = np.column_stack([counts, np.ones(n)])
    return numbers, C, {"mean": {"h": total / atoms[:, None]}, "sum": {"h": total}}


def test_an_element_part_is_removed_from_a_sum_and_left_in_a_mean():
    numbers, C, pooled = _element_only()
    ys = {MASS_PER_ATOM: mass_per_atom(numbers)}
    rows, contrasts, results = compare_poolings(pooled, C, ys, {"model": "toy"}, cv=4)
    by = pd.DataFrame(rows).set_index("pooling")
    # the sum's features lie in the span of the counts: nothing is left to read, and all their variance is composition
    assert abs(by.loc["sum", "r2_geom"]) < 0.02 and by.loc["sum", "comp_share"] == pytest.approx(1.0, abs=1e-9)
    # the mean's features are linear in fractions, as the mean atomic mass is: all of it that the counts
    # do not explain is read from the residual
    mean = by.loc["mean"]
    assert mean["r2_full"] > 0.99 and mean["r2_geom"] == pytest.approx(1 - mean["r2_comp"], abs=0.03)
    assert mean["r2_geom_lo"] > 0 and mean["comp_share"] < 0.99
    c = contrasts[0]
    assert c["sum − mean"] < 0 and c["resolved"] and c["sum − mean_lo"] <= c["sum − mean"] <= c["sum − mean_hi"]
    assert set(results) == {(MASS_PER_ATOM, "mean"), (MASS_PER_ATOM, "sum")}
    with pytest.raises(InputError, match="missing"):
        compare_poolings({"mean": pooled["mean"]}, C, ys)


def test_tables_and_facts():
    numbers, C, pooled = _element_only()
    rng = np.random.default_rng(1)
    ys = {"gap": rng.normal(size=len(numbers)), MASS_PER_ATOM: mass_per_atom(numbers)}
    rows, contrasts, results = compare_poolings(pooled, C, ys, {"model": "toy", "family": "T", "status": "original"},
                                                cv=4)
    run = PoolingRun(pd.DataFrame(rows), pd.DataFrame(contrasts), results, len(numbers))
    table = pooling_table(run)
    assert list(table.columns) == ["model", "status", "target", "mean", "sum", "sum − mean", "resolved"]
    assert sign_changes(run).empty           # mean > 0, sum ≈ 0: no interval on the other side of zero
    facts = pooling_facts(run)
    assert facts["mpa_mean_read"] == 1 and facts["mpa_sum_read"] == 0 and facts["n_pairs"] == 1
    assert facts["ani2x_gap"] == "not run here" and facts["share_sum"] == "1.00"
    assert facts["mpa_read"].startswith("more often under mean pooling")
    # a block fit identically under both poolings is not a resolved difference, whatever the round-off
    same = compare_poolings({"mean": pooled["sum"], "sum": pooled["sum"]}, C, ys, cv=4)[1]
    assert not any(c["resolved"] for c in same)


def test_mean_vs_sum_on_qm9_reads_the_models_chapter_mean_scans(qm9_loaded, monkeypatch):
    import cpd_core.selection as selection
    from cpd_core.experiments.model_gradient import model_gradient

    model_gradient(["ani2x-aev"], n=60, probes=["ridge"], cv=3, device="cpu")
    scanned = []
    real = selection._scan_block
    monkeypatch.setattr(selection, "_scan_block", lambda *call: scanned.append(call) or real(*call))
    run = mean_vs_sum(["ani2x-aev"], n=60, cv=3, device="cpu")
    # only the sum-pooled blocks were fit; the mean-pooled ones came from the models chapter's scans
    assert len(scanned) == 3 and run.n == 60   # aev, aev/radial, aev/angular under sum
    assert set(run.summary["target"]) == {"gap", "dipole", MASS_PER_ATOM, "mass (control)"}


def test_ani2x_sentence_says_the_signs_it_sees():
    from cpd_core.experiments.mean_vs_sum import POOLINGS

    rows = [{"model": "ani2x", "family": "ANI", "status": "original", "target": "gap", "pooling": p,
             "block": "hidden2", "r2_full": 0.5, "r2_full_lo": 0.4, "r2_full_hi": 0.6, "r2_comp": 0.3,
             "r2_geom": g, "r2_geom_lo": g - 0.05, "r2_geom_hi": g + 0.05, "comp_share": 0.5,
             "comp_share_lo": 0.4, "comp_share_hi": 0.6} for p, g in zip(POOLINGS, (-0.3, 0.2))]
    contrasts = [{"model": "ani2x", "target": "gap", "sum − mean": 0.5, "sum − mean_lo": 0.4,
                  "sum − mean_hi": 0.6, "resolved": True}]
    run = PoolingRun(pd.DataFrame(rows), pd.DataFrame(contrasts), {}, 10)
    facts = pooling_facts(run)
    assert facts["ani2x_gap"].endswith("negative under mean and positive under sum pooling")
    assert facts["sign_changes"] == "ani2x (gap)"
