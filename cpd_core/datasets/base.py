r"""A data set of structures: what every step after loading takes, for molecules and crystals alike.

The path of the whole library is

.. code-block:: text

    load_qm9(...) ─► Dataset ─► cpd_core.extract.features(model, dataset) ─► Features (per block)
                       │                                                        │
                       └─► dataset.composition() ─► C ─────────────────────────►└─► cpd(H, C, y)

A :class:`Dataset` holds, per structure, its id, atomic numbers and Cartesian positions (Å),
optionally its cell and periodicity, and a table of targets. ``name`` with ``ids`` identifies
the structures for the feature cache: the same ``(name, id)`` must always mean the same
structure. The composition matrix is computed once per data set (and per kind) and kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from cpd_core.errors import InputError


@dataclass(eq=False)
class Dataset:
    """Structures with their targets.

    Attributes
    ----------
    name : str or None
        Names the source (``"qm9"``); with ``ids`` it identifies the structures for the feature
        cache. ``None``: an anonymous set of arrays, never cached.
    ids : numpy.ndarray
        One identifier per structure (for QM9 its 1-based molecule id).
    numbers : list of numpy.ndarray
        Atomic numbers (n_atoms,) per structure.
    positions : list of numpy.ndarray
        Cartesian coordinates (n_atoms, 3) in Å per structure.
    targets : pandas.DataFrame
        One column per target (units in the loader's documentation), indexed by ``ids``; may
        have no columns.
    cells : list of numpy.ndarray or None
        Lattice vectors (3, 3), rows in Å, of periodic structures; ``None`` for molecules.
    pbc : numpy.ndarray of bool (n, 3) or None
        Periodicity per structure and lattice direction; ``None`` for molecules.

    Raises
    ------
    InputError
        At construction, for an empty set, mismatched lengths, or positions whose shape is not
        (n_atoms, 3) with n_atoms ≥ 1.
    """

    name: str | None
    ids: np.ndarray
    numbers: list
    positions: list
    targets: pd.DataFrame = None
    cells: list | None = None
    pbc: np.ndarray | None = None
    _compositions: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.ids = np.asarray(self.ids)
        n = len(self.numbers)
        if len(self.positions) != n:
            raise InputError(f"{n} atomic-number arrays but {len(self.positions)} position arrays")
        if n == 0:
            raise InputError("no structures given: the selection is empty")
        if len(self.ids) != n:
            raise InputError(f"{len(self.ids)} ids for {n} structures")
        bad = [i for i, (z, r) in enumerate(zip(self.numbers, self.positions))
               if len(z) == 0 or np.shape(r) != (len(z), 3)]
        if bad:
            raise InputError(f"positions must have shape (n_atoms, 3) with n_atoms ≥ 1 matching the atomic "
                             f"numbers; structures {bad[:10]} do not")
        if self.cells is not None and len(self.cells) != n:
            raise InputError(f"{len(self.cells)} cells for {n} structures")
        if self.pbc is not None and np.shape(self.pbc) != (n, 3):
            raise InputError(f"pbc must have shape ({n}, 3), got {np.shape(self.pbc)}")
        if self.targets is None:
            self.targets = pd.DataFrame(index=pd.Index(self.ids, name="id"))
        elif len(self.targets) != n:
            raise InputError(f"{len(self.targets)} target rows for {n} structures")

    @classmethod
    def from_arrays(cls, numbers: Sequence, positions: Sequence, cells: Sequence | None = None,
                    ids: Sequence | None = None, name: str | None = None, targets: pd.DataFrame | None = None
                    ) -> "Dataset":
        """A data set from plain arrays (ids default to the positions 0 … n−1; no name: not cached).

        Examples
        --------
        >>> water = Dataset.from_arrays([[8, 1, 1]], [[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]])
        >>> len(water), water.ids.tolist(), water.numbers[0].tolist()
        (1, [0], [8, 1, 1])
        """
        numbers = [np.asarray(z, dtype=np.int64) for z in numbers]
        positions = [np.asarray(r, dtype=np.float64) for r in positions]
        ids = np.arange(len(numbers)) if ids is None else np.asarray(ids)
        return cls(name, ids, numbers, positions, targets,
                   None if cells is None else [np.asarray(c, dtype=np.float64) for c in cells],
                   None if cells is None else np.ones((len(numbers), 3), dtype=bool))

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, {len(self)} structures, targets {list(self.targets.columns)}"
                + (", periodic" if self.cells is not None else "") + ")")

    @property
    def periodic(self) -> bool:
        """Whether the structures have cells."""
        return self.cells is not None

    def select(self, rows) -> "Dataset":
        """The structures at ``rows`` (a boolean mask or integer positions), in that order."""
        rows = np.asarray(rows)
        rows = np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.int64)
        return type(self)(self.name, self.ids[rows], [self.numbers[i] for i in rows],
                          [self.positions[i] for i in rows], self.targets.iloc[rows],
                          None if self.cells is None else [self.cells[i] for i in rows],
                          None if self.pbc is None else np.asarray(self.pbc)[rows])

    def composition(self, kind: str = "counts", intercept: bool = True,
                    elements: Sequence[int] | None = None) -> np.ndarray:
        """The composition matrix of these structures (:func:`cpd_core.composition_matrix`), computed once.

        Examples
        --------
        >>> ds = Dataset.from_arrays([[6, 1, 1, 1, 1], [8, 1, 1]], [np.zeros((5, 3)), np.zeros((3, 3))])
        >>> ds.composition().tolist()  # H, C, O counts and the intercept
        [[4.0, 1.0, 0.0, 1.0], [2.0, 0.0, 1.0, 1.0]]
        >>> ds.composition() is ds.composition()
        True
        """
        from cpd_core.composition import composition_matrix

        key = (kind, intercept, None if elements is None else tuple(int(z) for z in elements))
        if key not in self._compositions:
            C = composition_matrix(self.numbers, elements=elements, kind=kind, intercept=intercept)
            C.setflags(write=False)
            self._compositions[key] = C
        return self._compositions[key]

    def pymatgen(self) -> list:
        """The structures as pymatgen objects: ``Structure`` (with its lattice) for periodic sets, else ``Molecule``.

        Examples
        --------
        >>> ds = Dataset.from_arrays([[11, 17]], [[[0, 0, 0], [2.82, 0, 0]]], cells=[5.64 * np.eye(3)])
        >>> s = ds.pymatgen()[0]
        >>> s.formula, round(s.volume, 1)
        ('Na1 Cl1', 179.4)
        """
        from pymatgen.core import Lattice, Molecule, Structure

        if self.cells is None:
            return [Molecule(z.tolist(), r) for z, r in zip(self.numbers, self.positions)]
        pbc = np.ones((len(self), 3), dtype=bool) if self.pbc is None else np.asarray(self.pbc)
        return [Structure(Lattice(c, pbc=tuple(bool(b) for b in p)), z.tolist(), r, coords_are_cartesian=True)
                for z, r, c, p in zip(self.numbers, self.positions, self.cells, pbc)]

    @property
    def structures(self) -> list:
        """The structures as :class:`ase.Atoms`."""
        from ase import Atoms

        if self.cells is None:
            return [Atoms(numbers=z, positions=r) for z, r in zip(self.numbers, self.positions)]
        pbc = np.ones((len(self), 3), dtype=bool) if self.pbc is None else np.asarray(self.pbc)
        return [Atoms(numbers=z, positions=r, cell=c, pbc=p)
                for z, r, c, p in zip(self.numbers, self.positions, self.cells, pbc)]
