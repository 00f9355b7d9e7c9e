r"""Control targets that sit beside every result: what chance and composition alone give.

=========================  =============================================================  ==========================
control                    definition                                                     what a probe should score
=========================  =============================================================  ==========================
``mass (control)``         molecular mass :math:`\sum_e N_e m_e` — *linear* in counts      linear R²_geom = 0 exactly
``mass/atom (control)``    mean atomic mass :math:`\sum_e N_e m_e / \sum_e N_e` —           > 0 is possible: linear in
                           *nonlinear* in counts, linear in element fractions              fractions, which mean
                                                                                           pooling creates
``<target> (shuffled)``    the target permuted over molecules (seeded)                     ≈ 0 (slightly below): what
                                                                                           chance gives at this n, d
=========================  =============================================================  ==========================

Mean pooling divides by the number of atoms, so pooled features carry element *fractions*; a
projection that removes what is linear in *counts* leaves fractions in reach of a linear probe.
``mass/atom`` measures how much such composition a probe still reads from the residual: any
R²_geom it gets is composition, not geometry.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MASS = "mass (control)"
MASS_PER_ATOM = "mass/atom (control)"
SHUFFLED = "{} (shuffled)"


def molecular_mass(numbers: Sequence[np.ndarray]) -> np.ndarray:
    """Molecular mass in Da (ASE's standard atomic weights)."""
    from ase.data import atomic_masses

    return np.array([atomic_masses[np.asarray(z)].sum() for z in numbers])


def mass_per_atom(numbers: Sequence[np.ndarray]) -> np.ndarray:
    """Mean atomic mass in Da: nonlinear in element counts, linear in element fractions."""
    return molecular_mass(numbers) / np.array([len(z) for z in numbers])


def shuffled(y, seed: int = 0) -> np.ndarray:
    """``y`` permuted over rows with a seeded generator (the chance-level control).

    Examples
    --------
    >>> shuffled(np.arange(5), seed=0).tolist()
    [2, 4, 3, 0, 1]
    """
    return np.random.default_rng(seed).permutation(np.asarray(y))


def control_targets(numbers: Sequence[np.ndarray], y: dict, seed: int = 0, shuffle: Sequence[str] | None = None,
                    compositional: bool = True) -> dict[str, np.ndarray]:
    """The control targets for a data set: compositional controls and shuffled copies of targets.

    Parameters
    ----------
    numbers : sequence of numpy.ndarray
        Atomic numbers per structure.
    y : dict of str to numpy.ndarray
        The real targets; those named in ``shuffle`` (default: the first) get a shuffled copy.
    seed : int
        Seeds the permutation.
    compositional : bool
        Add :data:`MASS` and :data:`MASS_PER_ATOM`.

    Returns
    -------
    dict of str to numpy.ndarray
        Control name → values, in the order of the table in the module docstring.
    """
    out = {}
    if compositional:
        out[MASS] = molecular_mass(numbers)
        out[MASS_PER_ATOM] = mass_per_atom(numbers)
    names = list(y)[:1] if shuffle is None else list(shuffle)
    for name in names:
        out[SHUFFLED.format(name)] = shuffled(y[name], seed)
    return out


def is_control(name: str) -> bool:
    """Whether a target name is one of the controls."""
    return name in (MASS, MASS_PER_ATOM) or name.endswith(" (shuffled)")


__all__ = ["MASS", "MASS_PER_ATOM", "SHUFFLED", "control_targets", "is_control", "mass_per_atom",
           "molecular_mass", "shuffled"]
