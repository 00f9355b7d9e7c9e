"""The disentanglement-gradient experiment: block scan, best block, common molecules, tables."""

import numpy as np
import pandas as pd
import pytest

from cpd_core.datasets import qm9 as qm9_module
from cpd_core.errors import InputError
from cpd_core.experiments.gradient import (
    best_blocks,
    default_models,
    family_order,
    gradient_table,
    invariant_comparison,
    model_gradient,
    twin_gaps,
)
from cpd_core.models import REGISTRY
from cpd_core.models.base import shared_dir


@pytest.fixture(autouse=True)
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CPD_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def qm9_arrays():
    if qm9_module.importlib.util.find_spec("qm9pack") is None:
        pytest.skip("QM9 needs the PyPI package qm9pack")
    return qm9_module._all_arrays()


@pytest.fixture
def qm9_loaded(qm9_arrays, monkeypatch):
    monkeypatch.setattr(qm9_module, "_all_arrays", lambda: qm9_arrays)


def test_default_models_are_offline_and_without_caveats():
    names = default_models()
    assert names and all(REGISTRY[m].offline and not REGISTRY[m].caveat for m in names)
    assert "mace-mp-0-medium" not in names and "tensornet-ani1x" not in names
    assert "ani2x" in names and "ani2x-random" in names


def test_unknown_model_raises_before_work():
    with pytest.raises(InputError, match="unknown model"):
        model_gradient(["ani2x-aev", "nope"], n=10)


def test_gradient_on_a_small_subset(qm9_loaded):
    summary, scan = model_gradient(["ani2x-aev", "ani2x-random"], n=80, probes=["ridge"], cv=3, device="cpu")
    assert set(summary["model"]) == {"ani2x-aev", "ani2x-random"}
    assert set(summary["target"]) == {"gap", "dipole"} and set(summary["probe"]) == {"ridge"}
    assert (summary["n"] == 80).all() and summary.attrs["dropped"] == []
    # the chosen block is the scan's best for that model and target
    for (model, target), row in summary.set_index(["model", "target"]).iterrows():
        sub = scan[(scan["model"] == model) & (scan["target"] == target)]
        assert row["block"] == sub.loc[sub["r2_geom"].idxmax(), "block"]
        assert row["r2_geom"] == pytest.approx(sub["r2_geom"].max())
    assert set(scan[scan["model"] == "ani2x-random"]["block"]) == {
        "aev", "hidden1", "hidden2", "hidden3", "atomic_energy"}
    table = gradient_table(summary)
    assert list(table.index) == ["ani2x-aev", "ani2x-random"]  # trained before twin
    gaps = twin_gaps(summary)
    assert gaps.empty  # ani2x-random is the twin of ani2x, which did not run


@pytest.mark.skipif(not (shared_dir() / "models" / "matgl").exists(), reason="needs ../shared matgl checkpoints")
def test_models_share_the_molecules_every_model_supports(qm9_loaded):
    n = 400
    qm9 = qm9_module.load_qm9(n=n, seed=0)
    with_f = [int(i) for i, z in zip(qm9.ids, qm9.numbers) if 9 in set(z.tolist())]
    assert with_f, "pick a subset with fluorine"
    summary, _ = model_gradient(["ani2x-aev", "so3net-ani1x"], n=n, probes=["ridge"], targets=["gap"], cv=3,
                                device="cpu")
    assert summary.attrs["dropped"] == with_f  # so3net-ani1x covers H, C, N, O only
    assert (summary["n"] == n - len(with_f)).all()


def test_best_blocks_family_order_and_invariants():
    summary = pd.DataFrame({
        "model": ["a", "a-r", "b", "b-r"], "family": ["A", "A", "B", "B"], "twin_of": ["", "a", "", "b"],
        "status": ["original", "random-init", "original", "random-init"], "target": ["gap"] * 4,
        "probe": ["ridge"] * 4, "r2_geom": [0.2, 0.1, 0.6, 0.3]})
    assert family_order(summary) == ["B", "A"]
    gaps = twin_gaps(summary).set_index("model")
    assert gaps.loc["b", "learned"] == pytest.approx(0.3) and gaps.loc["a", "learned"] == pytest.approx(0.1)
    scan = pd.DataFrame({"model": ["m"] * 4, "target": ["dipole"] * 4,
                         "block": ["layer1/L0", "layer1/L1@atom-norm", "layer1/L1@pooled-norm", "layer2/L0"],
                         "r2_geom": [0.1, 0.2, 0.5, 0.3]})
    inv = invariant_comparison(scan).iloc[0]
    assert (inv["L0"], inv["atom-norm"], inv["pooled-norm"]) == (0.3, 0.2, 0.5)
    assert best_blocks(scan) == {"dipole": "layer1/L1@pooled-norm"}
    assert np.isfinite(inv[["L0", "atom-norm", "pooled-norm"]].astype(float)).all()
