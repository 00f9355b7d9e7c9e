"""Composition matrices: known small examples, element order, labels, errors."""

import numpy as np
import pytest
from ase import Atoms

from cpd_core import InputError, composition, composition_matrix
from cpd_core.composition import atomic_numbers, symbol

METHANE = [6, 1, 1, 1, 1]
WATER = [8, 1, 1]
AMMONIA = [7, 1, 1, 1]


def test_counts_known_answer():
    comp = composition([METHANE, WATER, AMMONIA], kind="counts")
    assert comp.columns == ("H", "C", "N", "O", "1")
    assert comp.elements == (1, 6, 7, 8)
    assert comp.kind == "counts"
    np.testing.assert_array_equal(comp.matrix, [
        [4, 1, 0, 0, 1],
        [2, 0, 0, 1, 1],
        [3, 0, 1, 0, 1],
    ])


def test_fractions_known_answer():
    C = composition_matrix([METHANE, WATER], kind="fractions", intercept=False)
    np.testing.assert_allclose(C, [[4 / 5, 1 / 5, 0], [2 / 3, 0, 1 / 3]], rtol=0, atol=1e-15)
    np.testing.assert_allclose(C.sum(axis=1), 1.0, rtol=0, atol=1e-15)


def test_onehot_known_answer():
    C = composition_matrix([METHANE, WATER, [1, 1]], kind="onehot")
    np.testing.assert_array_equal(C, [[1, 1, 0, 1], [1, 0, 1, 1], [1, 0, 0, 1]])


def test_intercept_false_has_no_ones_column():
    comp = composition([METHANE, WATER], intercept=False)
    assert comp.columns == ("H", "C", "O")
    assert comp.matrix.shape == (2, 3)


def test_columns_are_sorted_by_atomic_number_not_by_appearance():
    # Cl (17) appears first, H (1) last; S (16) sorts before Cl, after O.
    comp = composition([[17, 16, 8, 1]])
    assert comp.elements == (1, 8, 16, 17)
    assert comp.columns == ("H", "O", "S", "Cl", "1")
    np.testing.assert_array_equal(comp.matrix, [[1, 1, 1, 1, 1]])


def test_elements_restricts_and_orders_columns():
    # Requested out of order and with an absent element (F): sorted by Z, F column all zero.
    comp = composition([METHANE, WATER], elements=[9, 8, 6, 1, 7])
    assert comp.columns == ("H", "C", "N", "O", "F", "1")
    np.testing.assert_array_equal(comp.matrix, [
        [4, 1, 0, 0, 0, 1],
        [2, 0, 0, 1, 0, 1],
    ])


def test_elements_fixes_columns_across_subsets():
    # Two subsets with different elements present give comparable matrices.
    elements = [1, 6, 7, 8]
    a = composition_matrix([METHANE], elements=elements)
    b = composition_matrix([WATER], elements=elements)
    assert a.shape == b.shape == (1, 5)


def test_element_outside_elements_raises_naming_the_structure():
    structures = [METHANE, WATER, [17, 1], METHANE, [9, 17]]
    with pytest.raises(InputError) as err:
        composition(structures, elements=[1, 6, 8])
    msg = str(err.value)
    assert "Cl" in msg and "F" in msg
    assert "[2, 4]" in msg  # the offending structures' indices


def test_many_offending_structures_are_truncated():
    structures = [[9]] * 15
    with pytest.raises(InputError, match=r"\.\.\."):
        composition(structures, elements=[1])


@pytest.mark.parametrize("structures", [[], iter([])], ids=["list", "generator"])
def test_empty_selection_raises(structures):
    with pytest.raises(InputError, match="empty"):
        composition(structures)


def test_structure_without_atoms_raises():
    with pytest.raises(InputError, match="no atoms"):
        composition([METHANE, []])


@pytest.mark.parametrize("bad", [[0, 1], [1, 119], [-1]])
def test_invalid_atomic_numbers_raise(bad):
    with pytest.raises(InputError):
        composition([bad])


def test_unknown_kind_raises():
    with pytest.raises(InputError, match="counts"):
        composition([METHANE], kind="mass")


def test_ase_atoms_and_raw_arrays_give_the_same_matrix():
    rng = np.random.default_rng(0)
    raw = [np.array(METHANE), np.array(WATER), np.array([17, 6, 1, 1, 1])]
    atoms = [Atoms(numbers=z, positions=rng.normal(size=(len(z), 3))) for z in raw]
    for kind in ("counts", "fractions", "onehot"):
        a = composition(atoms, kind=kind)
        b = composition(raw, kind=kind)
        np.testing.assert_array_equal(a.matrix, b.matrix)
        assert a.columns == b.columns
    # plain lists, tuples and a generator work as well
    np.testing.assert_array_equal(composition_matrix(tuple(tuple(z) for z in raw)),
                                  composition_matrix(z for z in raw))


def test_atomic_numbers_from_atoms_and_array():
    atoms = Atoms("H2O", positions=np.zeros((3, 3)))
    np.testing.assert_array_equal(atomic_numbers(atoms), [1, 1, 8])
    np.testing.assert_array_equal(atomic_numbers([[8], [1]]), [8, 1])  # raveled
    assert atomic_numbers(atoms).dtype == np.int64


@pytest.mark.parametrize("z, sym", [(1, "H"), (6, "C"), (17, "Cl"), (35, "Br"), (118, "Og")])
def test_symbol(z, sym):
    assert symbol(z) == sym


@pytest.mark.parametrize("z", [0, 119])
def test_symbol_rejects_non_elements(z):
    with pytest.raises(InputError):
        symbol(z)


def _span_residual(C, y):
    """Largest residual of y after projecting it on the column span of C (least squares)."""
    coef = np.linalg.lstsq(C, y, rcond=None)[0]
    return float(np.abs(y - C @ coef).max())


def test_bases_hold_the_functions_of_composition_they_promise():
    """Known answers: each basis spans what it says, and only that (up to round-off)."""
    from cpd_core.experiments.controls import mass_per_atom, molecular_mass

    rng = np.random.default_rng(0)
    numbers = [rng.choice([1, 6, 7, 8], size=rng.integers(3, 15)) for _ in range(200)]
    mass, per_atom = molecular_mass(numbers), mass_per_atom(numbers)
    size = np.array([len(z) for z in numbers], dtype=float)
    for kind, spans_mass, spans_per_atom, spans_size2 in [
        ("counts", True, False, False),
        ("fractions", False, True, False),
        ("counts+fractions+size", True, True, False),
        ("poly2", True, False, True),
    ]:
        C = composition(numbers, kind=kind).matrix
        assert (_span_residual(C, mass) < 1e-8) is spans_mass, kind
        assert (_span_residual(C, per_atom) < 1e-8) is spans_per_atom, kind
        assert (_span_residual(C, size ** 2) < 1e-6) is spans_size2, kind
    presence = composition(numbers, kind="onehot").matrix
    has_n = np.array([7 in set(z.tolist()) for z in numbers], dtype=float)
    assert _span_residual(presence, has_n) < 1e-10


def test_wide_bases_label_their_columns():
    comp = composition([[6, 1, 1, 1, 1], [8, 1, 1]], kind="poly2")
    assert comp.columns == ("H", "C", "O", "H²", "H·C", "H·O", "C²", "C·O", "O²", "1")
    assert comp.matrix[0].tolist() == [4, 1, 0, 16, 4, 0, 1, 0, 0, 1]
    comp = composition([[6, 1, 1, 1, 1], [8, 1, 1]], kind="counts+fractions+size", intercept=False)
    assert comp.columns == ("H", "C", "O", "x_H", "x_C", "x_O", "N")
    np.testing.assert_allclose(comp.matrix[1], [2, 0, 1, 2 / 3, 0, 1 / 3, 3])
