"""QM9 loader: size, reproducible subsets, units, known molecules, stoichiometry, errors.

These tests use the real cache (``$CPD_CACHE_DIR`` or ``~/.cache/cpd_core``): parsing all of
QM9 takes a while the first time, and the session fixture loads it once.
"""

import importlib.util

import numpy as np
import pytest
from ase import Atoms

from cpd_core import InputError
from cpd_core.datasets import QM9_TARGETS
from cpd_core.datasets import Dataset
from cpd_core.datasets.qm9 import HARTREE_TO_EV, N_MOLECULES, TARGETS, check_targets, load_qm9

# find_spec, not import: `import qm9pack` needs the deprecated pkg_resources; the loader reads its files
pytestmark = pytest.mark.skipif(importlib.util.find_spec("qm9pack") is None,
                                reason="QM9 needs the PyPI package qm9pack")


@pytest.fixture(scope="session")
def qm9():
    return load_qm9(n=None)


def _stoichiometry(numbers):
    return np.array([[np.count_nonzero(z == e) for e in (1, 6, 7, 8, 9)] for z in numbers])


def test_all_of_qm9(qm9):
    assert isinstance(qm9, Dataset) and qm9.name == "qm9" and not qm9.periodic
    assert len(qm9) == N_MOLECULES == 130_831
    assert len(qm9.numbers) == len(qm9.positions) == len(qm9.targets) == 130_831
    assert list(qm9.targets.columns) == list(TARGETS)
    # 1-based QM9 indices, in QM9 order, unique (3,054 molecules of the original 133,885 left out)
    assert qm9.ids[0] == 1 and qm9.ids[-1] == 133_885
    assert np.all(np.diff(qm9.ids) > 0)
    assert qm9.targets.index.name == "qm9_id"
    np.testing.assert_array_equal(qm9.targets.index, qm9.ids)


def test_same_seed_same_subset_different_seed_different_subset():
    a = load_qm9(n=200, seed=4, targets=["gap"])
    b = load_qm9(n=200, seed=4, targets=["gap"])
    c = load_qm9(n=200, seed=5, targets=["gap"])
    np.testing.assert_array_equal(a.ids, b.ids)
    assert len(set(a.ids) ^ set(c.ids)) > 100
    assert len(a) == 200 and len(np.unique(a.ids)) == 200
    assert np.all(np.diff(a.ids) > 0)  # kept in QM9 order


def test_subset_rows_equal_the_full_set_rows(qm9):
    sub = load_qm9(n=50, seed=1)
    rows = np.searchsorted(qm9.ids, sub.ids)
    np.testing.assert_array_equal(qm9.ids[rows], sub.ids)
    for i, row in enumerate(rows):
        np.testing.assert_array_equal(sub.numbers[i], qm9.numbers[row])
        np.testing.assert_array_equal(sub.positions[i], qm9.positions[row])
    np.testing.assert_array_equal(sub.targets.to_numpy(), qm9.targets.iloc[rows].to_numpy())


def test_n_equal_to_all_gives_all(qm9):
    every = load_qm9(n=N_MOLECULES, seed=3, targets=["gap"])
    np.testing.assert_array_equal(every.ids, qm9.ids)


def test_targets_in_documented_units(qm9):
    t = qm9.targets
    assert t["gap"].mean() == pytest.approx(6.86, abs=0.01)  # eV (0.252 Ha)
    assert t["homo"].mean() == pytest.approx(-6.54, abs=0.01)
    assert t["dipole"].mean() == pytest.approx(2.67, abs=0.01)  # Debye, not atomic units
    assert t["Cv"].mean() == pytest.approx(31.6, abs=0.1)
    # gap = LUMO - HOMO, each rounded to 1e-4 Ha in QM9
    assert np.abs(t["gap"] - (t["lumo"] - t["homo"])).max() < 1.5e-4 * HARTREE_TO_EV


def test_methane_is_qm9_id_1(qm9):
    assert qm9.ids[0] == 1
    np.testing.assert_array_equal(qm9.numbers[0], [6, 1, 1, 1, 1])
    t = qm9.targets.loc[1]
    assert t["gap"] == pytest.approx(0.5048 * 27.211386, abs=1e-6)
    assert t["gap"] == pytest.approx(13.736, abs=1e-3)
    assert t["homo"] == pytest.approx(-0.3877 * 27.211386, abs=1e-6)
    assert t["dipole"] == 0.0
    assert t["alpha"] == pytest.approx(13.21)
    assert t["U0"] == pytest.approx(-40.478930 * 27.211386, abs=1e-4)
    assert t["Cv"] == pytest.approx(6.469)
    # C-H bonds of 1.09 Å: positions are in Ångström
    r = qm9.positions[0]
    np.testing.assert_allclose(np.linalg.norm(r[1:] - r[0], axis=1), 1.0919, atol=1e-3)


def test_water_is_qm9_id_3(qm9):
    assert qm9.ids[2] == 3
    np.testing.assert_array_equal(qm9.numbers[2], [8, 1, 1])
    t = qm9.targets.loc[3]
    assert t["gap"] == pytest.approx(0.3615 * 27.211386, abs=1e-6)
    assert t["lumo"] == pytest.approx(0.0687 * 27.211386, abs=1e-6)
    assert t["dipole"] == pytest.approx(1.8511)
    assert t["alpha"] == pytest.approx(6.31)
    assert t["r2"] == pytest.approx(19.0002)
    assert t["U0"] == pytest.approx(-76.404702 * 27.211386, abs=1e-4)
    r = qm9.positions[2]
    np.testing.assert_allclose(np.linalg.norm(r[1:] - r[0], axis=1), 0.962, atol=1e-3)


def test_stoichiometry_of_every_molecule(qm9):
    counts = _stoichiometry(qm9.numbers)
    n_h, n_c, n_n, n_o, n_f = counts.T
    heavy = n_c + n_n + n_o + n_f
    # only H C N O F; 1..9 heavy atoms; at most 29 atoms
    assert counts.sum() == sum(len(z) for z in qm9.numbers)
    assert heavy.min() == 1 and heavy.max() == 9
    assert counts.sum(axis=1).max() == 29
    # closed-shell neutral molecules: valences add up to an even number, so H + N + F is even,
    # and the degree of unsaturation (2C + 2 + N - H - F) / 2 is a non-negative integer
    assert np.all((n_h + n_n + n_f) % 2 == 0)
    assert np.all(2 * n_c + 2 + n_n - n_h - n_f >= 0)
    # one position per atom
    assert all(r.shape == (len(z), 3) for z, r in zip(qm9.numbers, qm9.positions))
    assert all(z.dtype == np.int64 for z in qm9.numbers[:100])


def test_structures_are_ase_atoms_with_the_right_symbols():
    sub = load_qm9(n=30, seed=7, targets=["gap"])
    structures = sub.structures
    assert len(structures) == 30
    for atoms, z, r in zip(structures, sub.numbers, sub.positions):
        assert isinstance(atoms, Atoms)
        assert atoms.get_chemical_symbols() == [{1: "H", 6: "C", 7: "N", 8: "O", 9: "F"}[int(x)] for x in z]
        np.testing.assert_array_equal(atoms.positions, r)


def test_requested_targets_only_in_requested_order():
    sub = load_qm9(n=5, seed=0, targets=["dipole", "gap"])
    assert list(sub.targets.columns) == ["dipole", "gap"]
    assert list(load_qm9(n=5, seed=0, targets="gap").targets.columns) == ["gap"]


def test_unknown_target_raises_listing_known_ones():
    with pytest.raises(InputError) as err:
        load_qm9(n=5, targets=["gap", "bandgap"])
    msg = str(err.value)
    assert "bandgap" in msg
    for name in QM9_TARGETS:
        assert repr(name) in msg


def test_check_targets():
    assert check_targets("gap") == ["gap"]
    assert check_targets(("gap", "U0")) == ["gap", "U0"]
    with pytest.raises(InputError, match="'u0'"):
        check_targets(["u0"])  # names are case-sensitive


@pytest.mark.parametrize("n", [0, -1, N_MOLECULES + 1, 10 ** 7])
def test_bad_n_raises(n):
    with pytest.raises(InputError, match="130831"):
        load_qm9(n=n, targets=["gap"])


def test_rows_give_exactly_those_molecules_in_that_order(qm9):
    rows = np.array([130_830, 0, 2, 77_777, 5])
    sub = load_qm9(rows=rows, targets=["gap", "U0"])
    # ids are QM9's own (1-based, with gaps), not row + 1
    np.testing.assert_array_equal(sub.ids, qm9.ids[rows])
    assert sub.ids[:3].tolist() == [133_885, 1, 3] and sub.ids[3] != 77_778
    for i, row in enumerate(rows):
        np.testing.assert_array_equal(sub.numbers[i], qm9.numbers[row])
        np.testing.assert_array_equal(sub.positions[i], qm9.positions[row])
    np.testing.assert_array_equal(sub.targets.to_numpy(), qm9.targets[["gap", "U0"]].iloc[rows].to_numpy())


def test_probe_rows_load_the_held_out_molecules(qm9):
    from cpd_core.training.data import probe_rows

    rows = probe_rows(500, seed=0)
    sub = load_qm9(rows=rows, targets=["gap"])
    np.testing.assert_array_equal(sub.ids, qm9.ids[rows])
    assert all(np.array_equal(sub.numbers[i], qm9.numbers[r]) for i, r in enumerate(rows))


def test_n_with_rows_draws_a_seeded_subset_of_them():
    rows = np.arange(1000, 0, -10)  # 100 rows, descending
    a = load_qm9(n=20, seed=3, rows=rows, targets=["gap"])
    b = load_qm9(n=20, seed=3, rows=rows, targets=["gap"])
    every = load_qm9(rows=rows, targets=["gap"])
    np.testing.assert_array_equal(a.ids, b.ids)
    assert len(a) == 20 and set(a.ids) <= set(every.ids)
    assert np.all(np.diff(a.ids) < 0)  # kept in the order of rows
    assert not np.array_equal(a.ids, load_qm9(n=20, seed=4, rows=rows, targets=["gap"]).ids)
    with pytest.raises(InputError, match="between 1 and 100"):
        load_qm9(n=101, rows=rows, targets=["gap"])


@pytest.mark.parametrize("rows, message", [([0, N_MOLECULES], "130830"), ([-1], "-1"), ([4, 7, 4], "repeat"),
                                           ([1.5], "integer"), ([[0, 1]], "1-D")])
def test_bad_rows_raise(rows, message):
    with pytest.raises(InputError, match=message):
        load_qm9(rows=rows, targets=["gap"])
