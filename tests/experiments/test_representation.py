"""CPD of a representation on QM9-like data: the compositional control and the ridge variants."""

import numpy as np
import pandas as pd
import pytest

from cpd_core import InputError
from cpd_core.datasets.qm9 import QM9Subset
from cpd_core.experiments.representation import CONTROL, molecular_mass, representation_cpd, ridge_variants
from cpd_core.synthetic import planted



@pytest.fixture(scope="module")
def subset():
    """A QM9Subset built by hand from planted molecules; features H, target 'gap' = planted y."""
    d = planted(n=150, comp_share=0.3, geom_share=0.5, seed=0)
    ids = np.arange(1, 151)
    targets = pd.DataFrame({"gap": d.y, "dipole": np.random.default_rng(1).normal(size=150)},
                           index=pd.Index(ids, name="qm9_id"))
    positions = [np.zeros((len(z), 3)) for z in d.numbers]
    return QM9Subset(ids=ids, numbers=d.numbers, positions=positions, targets=targets), d.H


def test_molecular_mass_known_answer():
    mass = molecular_mass([np.array([6, 1, 1, 1, 1]), np.array([8, 1, 1])])
    np.testing.assert_allclose(mass, [16.043, 18.015], atol=2e-3)


def test_control_target_is_purely_compositional(subset):
    qm9, H = subset
    summary, folds = representation_cpd(qm9, H, targets=["gap"], probes=("ridge",), cv=3)
    assert list(summary["target"]) == ["gap", CONTROL]
    control = summary.set_index("target").loc[CONTROL]
    assert control["r2_comp"] == pytest.approx(1.0, abs=1e-9)  # mass is exactly linear in counts
    assert abs(control["r2_geom"]) < 0.05  # nothing of it is left beyond composition
    assert set(folds["target"]) == {"gap", CONTROL}


def test_without_control(subset):
    qm9, H = subset
    summary, _ = representation_cpd(qm9, H, targets=["gap", "dipole"], probes=("ridge",), control=False, cv=3)
    assert list(summary["target"]) == ["gap", "dipole"]


def test_targets_not_loaded_raise(subset):
    qm9, H = subset
    with pytest.raises(InputError, match=r"\['homo'\] were not loaded"):
        representation_cpd(qm9, H, targets=["gap", "homo"], probes=("ridge",), cv=3)
    with pytest.raises(InputError, match="unknown QM9 target"):
        representation_cpd(qm9, H, targets=["bandgap"], probes=("ridge",), cv=3)


def test_ridge_variants_table(subset):
    qm9, H = subset
    table = ridge_variants(qm9, H, target="gap", cv=3)
    assert list(table.columns) == ["variant", "fold", "r2_full", "r2_geom"]
    assert len(table) == 4 * 3
    assert table["variant"].nunique() == 4
    assert "clipped · train folds (default)" in set(table["variant"])
    # scaler choice changes the full-feature probe; projection choice does not
    by = table.set_index(["variant", "fold"])["r2_full"]
    np.testing.assert_allclose(by["clipped · train folds (default)"], by["clipped · all rows"])
