"""The Dataset every step of the library takes: checks at construction, selection, composition once."""

import numpy as np
import pandas as pd
import pytest

from cpd_core import InputError, composition_matrix
from cpd_core.datasets import Dataset

METHANE = [6, 1, 1, 1, 1]
WATER = [8, 1, 1]


def _water_methane(**kw):
    return Dataset.from_arrays([WATER, METHANE], [np.zeros((3, 3)), np.ones((5, 3))], **kw)


def test_from_arrays_defaults():
    ds = _water_methane()
    assert ds.name is None and ds.ids.tolist() == [0, 1] and len(ds) == 2
    assert list(ds.targets.columns) == [] and len(ds.targets) == 2
    assert ds.numbers[1].dtype == np.int64 and ds.positions[0].shape == (3, 3)


@pytest.mark.parametrize("numbers, positions, match", [
    ([], [], "empty"),
    ([WATER], [np.zeros((3, 3)), np.zeros((5, 3))], "position arrays"),
    ([WATER, METHANE], [np.zeros((3, 3)), np.zeros((4, 3))], r"structures \[1\]"),
    ([[]], [np.zeros((0, 3))], r"structures \[0\]"),
])
def test_bad_structures_raise_at_construction(numbers, positions, match):
    with pytest.raises(InputError, match=match):
        Dataset.from_arrays(numbers, positions)


def test_ids_targets_cells_and_pbc_must_match_the_structures():
    with pytest.raises(InputError, match="3 ids for 2 structures"):
        _water_methane(ids=[1, 2, 3])
    with pytest.raises(InputError, match="1 target rows"):
        _water_methane(targets=pd.DataFrame({"y": [1.0]}))
    with pytest.raises(InputError, match="1 cells"):
        _water_methane(cells=[np.eye(3)])
    with pytest.raises(InputError, match="pbc"):
        Dataset("x", [0, 1], [np.array(WATER), np.array(METHANE)], [np.zeros((3, 3)), np.ones((5, 3))],
                cells=[np.eye(3)] * 2, pbc=np.ones((2, 2), dtype=bool))


def test_select_keeps_everything_in_step():
    ds = _water_methane(ids=[10, 20], name="toy", targets=pd.DataFrame({"y": [1.0, 2.0]}, index=[10, 20]),
                        cells=[np.eye(3), 2 * np.eye(3)])
    for rows in ([1], np.array([False, True])):
        sub = ds.select(rows)
        assert sub.name == "toy" and sub.ids.tolist() == [20] and sub.numbers[0].tolist() == METHANE
        assert sub.targets["y"].tolist() == [2.0] and np.array_equal(sub.cells[0], 2 * np.eye(3))
    assert ds.select([1, 0]).ids.tolist() == [20, 10]
    with pytest.raises(InputError, match="empty"):
        ds.select([])


def test_composition_is_the_library_matrix_computed_once():
    ds = _water_methane()
    C = ds.composition()
    np.testing.assert_array_equal(C, composition_matrix([WATER, METHANE]))
    assert ds.composition() is C and not C.flags.writeable
    F = ds.composition(kind="fractions", intercept=False)
    np.testing.assert_allclose(F.sum(axis=1), 1.0)
    assert ds.composition(kind="fractions", intercept=False) is F and F is not C
    assert ds.select([0]).composition().shape == (1, 3)  # a subset: its own elements (H, O) + intercept


def test_structures_as_ase_atoms():
    pytest.importorskip("ase")
    mol, crystal = _water_methane().structures[0], _water_methane(cells=[np.eye(3), np.eye(3)]).structures[1]
    assert mol.get_chemical_formula() == "H2O" and not mol.pbc.any()
    assert crystal.pbc.all() and np.allclose(crystal.cell[:], np.eye(3))
