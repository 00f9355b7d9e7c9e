"""Composition matrices: the part of a structure CPD removes.

A structure's *composition* is its multiset of elements. CPD treats every
quantity that is a linear function of the composition as "compositional" and
removes it; what is left is geometric. This module turns structures into the
design matrix :math:`C` whose column span defines "linear in composition".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from cpd_core.errors import InputError

#: Composition bases: what CPD treats as "linear in composition" (see :func:`composition`).
KINDS = ("counts", "fractions", "onehot", "counts+fractions+size", "poly2")

_SYMBOLS = (
    "X H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn "
    "Ga Ge As Se Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr "
    "Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra "
    "Ac Th Pa U Np Pu Am Cm Bk Cf Es Fm Md No Lr Rf Db Sg Bh Hs Mt Ds Rg Cn Nh Fl Mc Lv Ts Og"
).split()


def symbol(z: int) -> str:
    """Chemical symbol of atomic number ``z``.

    >>> symbol(8)
    'O'
    """
    if not 0 < int(z) < len(_SYMBOLS):
        raise InputError(f"atomic number {z} is not an element (1..{len(_SYMBOLS) - 1})")
    return _SYMBOLS[int(z)]


def atomic_numbers(structure) -> np.ndarray:
    """Atomic numbers of one structure.

    Parameters
    ----------
    structure : ase.Atoms or array_like of int
        Anything with ``get_atomic_numbers()``, or a sequence of atomic numbers.

    Returns
    -------
    numpy.ndarray of int64, shape (n_atoms,)
    """
    if hasattr(structure, "get_atomic_numbers"):
        z = np.asarray(structure.get_atomic_numbers(), dtype=np.int64)
    else:
        z = np.asarray(structure, dtype=np.int64).ravel()
    if z.size == 0:
        raise InputError("a structure has no atoms")
    if z.min() < 1 or z.max() >= len(_SYMBOLS):
        raise InputError(f"atomic numbers must lie in 1..{len(_SYMBOLS) - 1}, got {sorted(set(z))}")
    return z


@dataclass(frozen=True)
class Composition:
    """A composition matrix with the column labels that explain it.

    Attributes
    ----------
    matrix : numpy.ndarray, shape (n_structures, n_columns)
    elements : tuple of int
        Atomic numbers of the element columns, in increasing order of Z.
    columns : tuple of str
        One label per column of ``matrix`` (element symbols, then ``"1"`` for
        the intercept when present).
    kind : str
    """

    matrix: np.ndarray
    elements: tuple[int, ...]
    columns: tuple[str, ...]
    kind: str


def composition(
    structures: Iterable,
    elements: Sequence[int] | None = None,
    kind: str = "counts",
    intercept: bool = True,
) -> Composition:
    r"""Composition matrix of a set of structures, with its labels.

    For structure :math:`i` with :math:`n_{ie}` atoms of element :math:`e`,

    .. math::

        C_{ie} = \begin{cases}
            n_{ie} & \text{counts} \\
            n_{ie} / \sum_{e'} n_{ie'} & \text{fractions} \\
            [n_{ie} > 0] & \text{onehot (presence)}
        \end{cases}

    and two wider bases: ``"counts+fractions+size"``, the counts, the fractions and the atom number
    :math:`N_i = \sum_e n_{ie}` side by side (so that both extensive and intensive functions of
    composition are in its span); ``"poly2"``, the counts and every product :math:`n_{ie} n_{ie'}`,
    :math:`e \le e'` (a polynomial of degree 2 in the counts). Each is followed by a column of ones
    when ``intercept`` is true. Some bases are rank deficient (fractions sum to one; :math:`N_i` is the
    sum of the counts): the projection (:class:`cpd_core.projection.CompositionProjector`, pivoted QR)
    handles that, and the span is what matters.

    Parameters
    ----------
    structures : iterable of ase.Atoms or of arrays of atomic numbers
    elements : sequence of int, optional
        Atomic numbers that get a column, in this order after sorting by Z.
        Default: every element present in ``structures``. A structure holding
        an element not in ``elements`` raises :class:`~cpd_core.errors.InputError`.
    kind : {"counts", "fractions", "onehot", "counts+fractions+size", "poly2"}
    intercept : bool
        Append a column of ones.

    Returns
    -------
    Composition

    Examples
    --------
    >>> comp = composition([[6, 1, 1, 1, 1], [8, 1, 1]])
    >>> comp.columns
    ('H', 'C', 'O', '1')
    >>> comp.matrix
    array([[4., 1., 0., 1.],
           [2., 0., 1., 1.]])
    """
    if kind not in KINDS:
        raise InputError(f"unknown composition kind {kind!r}; choose one of {KINDS}")
    zs = [atomic_numbers(s) for s in structures]
    if not zs:
        raise InputError("no structures given: the selection is empty")
    present = sorted(set(np.concatenate(zs).tolist()))
    if elements is None:
        elements = present
    else:
        elements = sorted(set(int(e) for e in elements))
        missing = sorted(set(present) - set(elements))
        if missing:
            bad = [i for i, z in enumerate(zs) if np.isin(z, missing).any()]
            raise InputError(
                f"elements {[symbol(e) for e in missing]} occur in structures {bad[:10]}"
                f"{' ...' if len(bad) > 10 else ''} but are not among the requested elements "
                f"{[symbol(e) for e in elements]}"
            )
    lookup = {z: j for j, z in enumerate(elements)}
    counts = np.zeros((len(zs), len(elements)))
    for i, z in enumerate(zs):
        values, n = np.unique(z, return_counts=True)
        counts[i, [lookup[int(v)] for v in values]] = n
    columns = tuple(symbol(e) for e in elements)
    if kind == "fractions":
        counts = counts / counts.sum(axis=1, keepdims=True)
    elif kind == "onehot":
        counts = (counts > 0).astype(float)
    elif kind == "counts+fractions+size":
        size = counts.sum(axis=1, keepdims=True)
        counts = np.hstack([counts, counts / size, size])
        columns = columns + tuple(f"x_{c}" for c in columns) + ("N",)
    elif kind == "poly2":
        pairs = [(a, b) for a in range(len(elements)) for b in range(a, len(elements))]
        counts = np.hstack([counts, np.column_stack([counts[:, a] * counts[:, b] for a, b in pairs])])
        columns = columns + tuple(f"{columns[a]}²" if a == b else f"{columns[a]}·{columns[b]}" for a, b in pairs)
    if intercept:
        counts = np.hstack([counts, np.ones((len(zs), 1))])
        columns = columns + ("1",)
    return Composition(counts, tuple(elements), columns, kind)


def composition_matrix(
    structures: Iterable,
    elements: Sequence[int] | None = None,
    kind: str = "counts",
    intercept: bool = True,
) -> np.ndarray:
    """The matrix of :func:`composition`; see there for the definition.

    The element order (increasing Z) is reported by :func:`composition`'s
    ``columns``.

    Examples
    --------
    >>> composition_matrix([[1, 1, 8], [1, 8, 8, 1]], kind="fractions", intercept=False)
    array([[0.66666667, 0.33333333],
           [0.5       , 0.5       ]])
    """
    return composition(structures, elements, kind, intercept).matrix
