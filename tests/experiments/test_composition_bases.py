"""Composition bases: a basis that spans the features leaves nothing for any probe; one that does not, leaves it."""

import numpy as np
import pandas as pd
import pytest

from cpd_core.datasets.base import Dataset
from cpd_core.decomposition import cpd_many
from cpd_core.errors import InputError
from cpd_core.experiments.composition_bases import (
    BASES,
    BasesRun,
    basis_jobs,
    basis_summary,
    bases_facts,
    composition_bases,
    compositional_targets,
    contrast_rows,
    inflation_table,
)
from cpd_core.experiments.controls import MASS, MASS_PER_ATOM

pytestmark = pytest.mark.usefixtures("tmp_cache")  # fixtures: tests/experiments/conftest.py


def _sum_pooled(n=300, seed=0):
    """Molecules whose features are sum-pooled element embeddings: exactly linear in the counts."""
    rng = np.random.default_rng(seed)
    numbers = [rng.choice([1, 6, 7, 8], size=rng.integers(4, 20), p=[0.5, 0.3, 0.1, 0.1]) for _ in range(n)]
    data = Dataset.from_arrays(numbers, [np.zeros((len(z), 3)) for z in numbers])
    counts = data.composition(intercept=False)
    H = counts @ rng.normal(size=(counts.shape[1], 6))
    return data, H


def _run(bases=("counts", "fractions"), probes=("ridge", "gbt")):
    data, H = _sum_pooled()
    ys = compositional_targets(data.numbers)
    gap = np.random.default_rng(5).normal(size=len(data))
    jobs = basis_jobs(H, data, ys, bases, probes, gap=gap)
    done = cpd_many([job for _, job in jobs], cv=4, seed=0)
    return {key: res for (key, _), res in zip(jobs, done)}


def test_a_basis_that_spans_the_features_leaves_nothing_and_one_that_does_not_leaves_composition():
    results = _run()
    assert len(results) == 2 * (2 * 2) + 2        # bases × targets × probes, and the gap with ridge per basis
    # counts span the features: the residual is round-off, no probe reads the mass from it
    assert results[(MASS, "counts", "gbt")].r2_geom < 0.05
    assert results[(MASS, "counts", "ridge")].r2_geom < 0.02
    # fractions do not span counts: size stays in the residual, and trees read the mass back (inflation)
    assert results[(MASS, "fractions", "gbt")].r2_geom > 0.3
    rows = {(r["target"], r["probe"]): r for r in contrast_rows(results, {"model": "toy"})}
    gbt = rows[(MASS, "gbt")]
    assert gbt["basis"] == "fractions" and gbt["resolved"] and gbt["difference"] > 0.3
    assert gbt["difference_lo"] <= gbt["difference"] <= gbt["difference_hi"] and gbt["model"] == "toy"
    assert ("gap", "ridge") in rows                 # every (target, probe) with the default has a contrast


def test_tables_and_facts_of_a_run():
    results = _run(bases=("counts", "fractions", "poly2"))
    rows = []
    for (t, basis, probe), res in results.items():
        s = res.summary()
        rows.append({"model": "toy", "family": "T", "status": "original", "block": "h", "target": t, "basis": basis,
                     "probe": probe, "rank_C": s["rank_C"], "r2_comp": s["r2_comp"], "r2_geom": s["r2_geom"],
                     "r2_geom_lo": s["r2_geom_lo"], "r2_geom_hi": s["r2_geom_hi"]})
    run = BasesRun(pd.DataFrame(rows), pd.DataFrame(contrast_rows(results, {"model": "toy"})), results, 300)
    table = inflation_table(run, MASS)
    assert list(table.columns) == ["model", "probe", "counts", "fractions", "poly2"] and len(table) == 2
    with pytest.raises(InputError, match="not probed"):
        inflation_table(run, "homo")
    summary = basis_summary(run).set_index(["basis", "target", "probe"])
    assert summary.loc[("fractions", MASS, "gbt"), "higher than default"] == 1
    assert summary.loc[("counts", MASS, "gbt"), "lower than default"] == 0
    facts = bases_facts(run)
    assert facts["n_models"] == 1 and facts["probes"] == "ridge, gbt" and facts["mlp_mass_default"] == "not run here"
    assert facts["paper_low"] == "0.68" and facts["gap_cost"].startswith("counts ")
    # fractions leave size in the residual: trees read the mass, a resolved rise over the default
    assert "fractions 2 of 2" in facts["nonlinear_raised"] and facts["nonlinear_lowered"].startswith("fractions 0 of 2")
    assert facts["gap_lowered"].startswith("fractions ") and "poly2 " in facts["gap_raised"]


def test_bases_are_checked():
    with pytest.raises(InputError, match="unknown composition basis"):
        composition_bases(["ani2x-aev"], n=10, bases=["counts", "cubic"])
    assert set(BASES) == {"counts", "fractions", "counts+fractions+size", "onehot", "poly2"}


def test_on_qm9_the_gap_block_comes_from_the_models_chapter_scan(qm9_loaded, monkeypatch):
    import cpd_core.selection as selection
    from cpd_core.experiments.model_gradient import model_gradient

    model_gradient(["ani2x-aev"], n=60, probes=["ridge"], cv=3, device="cpu")
    scanned = []
    real = selection._scan_block
    monkeypatch.setattr(selection, "_scan_block", lambda *call: scanned.append(call) or real(*call))
    run = composition_bases(["ani2x-aev"], n=60, cv=3, bases=["fractions", "counts"], probes=["ridge"], device="cpu")
    assert scanned == [] and run.n == 60
    s = run.summary
    assert set(s["basis"]) == {"counts", "fractions"} and set(s["target"]) == {MASS, MASS_PER_ATOM, "gap"}
    # mass is linear in counts: under the default basis a linear probe reads nothing of it
    assert s[(s["target"] == MASS) & (s["basis"] == "counts")]["r2_geom"].iloc[0] < 0.05
    assert len(run.contrasts) == 3 and set(run.contrasts["basis"]) == {"fractions"}
