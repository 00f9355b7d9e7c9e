r"""QM9 for training: one seeded split, flat tensors on the training device, batches by index.

The split is a permutation of all 130,831 molecules drawn with
``numpy.random.default_rng(split_seed)``: the first 110,000 train, the next 10,000 validate,
the remaining 10,831 test (the sizes of SchNet, PaiNN and DimeNet++'s QM9 papers). A smaller
run (``n_train``, ``n_val``) takes the *first* molecules of its part, so every run with the same
split seed tests on the same molecules, whatever its size. :func:`probe_rows` draws held-out
molecules (the test part) to probe the trained networks on; :func:`assert_held_out` checks rows.

Targets are standardised for the loss (:class:`Normalisation`): the gap is an intensive
property, predicted as the mean of per-atom outputs; U0 is extensive, predicted as a sum of
per-atom outputs plus per-element reference energies fitted by least squares on the training
molecules,

.. math::

    \hat y = \sum_{i} \bigl(\mu_{Z_i} + \sigma\, o_i\bigr) \;\; (\text{U0}), \qquad
    \hat y = \mu + \sigma\,\frac1{n}\sum_i o_i \;\; (\text{gap}),

with :math:`o_i` the network's per-atom output.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from cpd_core.datasets.qm9 import N_MOLECULES, check_targets, flat_arrays
from cpd_core.errors import InputError

#: Published split sizes (train, validation); the rest of QM9 is the test set.
SPLIT_SIZES = (110_000, 10_000)
#: How each trainable target is pooled over atoms.
POOLING = {"gap": "mean", "U0": "sum"}
#: Largest atomic number + 1 the element tables cover (QM9: H C N O F).
MAX_Z = 10


def split_indices(n_total: int = N_MOLECULES, seed: int = 0, sizes: tuple[int, int] = SPLIT_SIZES) -> dict:
    """Rows of the train, validation and test parts of a seeded random split.

    Examples
    --------
    >>> parts = split_indices(10, seed=0, sizes=(6, 2))
    >>> [len(parts[k]) for k in ("train", "val", "test")]
    [6, 2, 2]
    >>> sorted(np.concatenate(list(parts.values())).tolist()) == list(range(10))
    True
    """
    n_train, n_val = sizes
    if n_train < 1 or n_val < 1 or n_train + n_val >= n_total:
        raise InputError(f"split sizes {sizes} do not leave a test set in {n_total} molecules")
    order = np.random.default_rng(seed).permutation(n_total)
    return {"train": order[:n_train], "val": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}


def probe_rows(n: int | None = None, seed: int = 0, split: str = "test", split_seed: int = 0) -> np.ndarray:
    """QM9 rows held out from training: a seeded subset of one part of the split, in QM9 order.

    The molecules to probe the networks trained here on (:mod:`cpd_core.models.trained`): by
    default the test part of the split they were trained under (split seed 0), 10,831 molecules
    none of them saw in training or early stopping. Pass the rows to
    :func:`cpd_core.datasets.qm9.load_qm9` as ``rows=``.

    Parameters
    ----------
    n : int or None
        How many rows; ``None`` takes the whole part. Drawn without replacement with
        ``numpy.random.default_rng(seed)``.
    seed : int
    split : {"test", "val", "train"}
    split_seed : int
        Seed of :func:`split_indices` (the trainer's ``split_seed``).

    Returns
    -------
    numpy.ndarray of int64
        Sorted 0-based QM9 rows (not QM9 ids; see :func:`cpd_core.datasets.qm9.load_qm9`).

    Examples
    --------
    >>> rows = probe_rows(500, seed=1)
    >>> len(rows), bool(np.isin(rows, split_indices()["test"]).all())
    (500, True)
    >>> np.array_equal(rows, probe_rows(500, seed=1)), len(probe_rows())
    (True, 10831)
    """
    parts = split_indices(N_MOLECULES, split_seed)
    if split not in parts:
        raise InputError(f"split must be one of {list(parts)}, got {split!r}")
    part = np.sort(parts[split])
    if n is None:
        return part
    if isinstance(n, bool) or int(n) != n or not 0 < n <= len(part):
        raise InputError(f"n must be between 1 and {len(part)} (the {split} split), got {n}")
    return np.sort(np.random.default_rng(seed).choice(part, size=int(n), replace=False))


def assert_held_out(rows, split_seed: int = 0) -> None:
    """Raise :class:`InputError` naming the ``rows`` that lie in the train or validation split.

    Examples
    --------
    >>> assert_held_out(probe_rows(5))
    >>> assert_held_out(split_indices()["train"][:2])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cpd_core.errors.InputError: 2 of 2 rows are not held out (split seed 0): train rows [...]
    """
    rows = np.asarray(rows, dtype=np.int64).ravel()
    parts = split_indices(N_MOLECULES, split_seed)
    seen = {k: rows[np.isin(rows, parts[k])] for k in ("train", "val")}
    n_bad = sum(len(v) for v in seen.values())
    if n_bad:
        named = "; ".join(f"{k} rows {v[:20].tolist()}" + (f" and {len(v) - 20} more" if len(v) > 20 else "")
                          for k, v in seen.items() if len(v))
        raise InputError(f"{n_bad} of {len(rows)} rows are not held out (split seed {split_seed}): {named}")


@dataclass
class Normalisation:
    """How the network's per-atom outputs become a prediction in the target's unit (eV).

    Attributes
    ----------
    pooling : {"mean", "sum"}
    scale, offset : float
        :math:`\\sigma` and :math:`\\mu` of the module docstring (offset is 0 for sums).
    atomref : list of float
        Per-element reference values :math:`\\mu_Z`, indexed by atomic number (zeros for means).
    """

    pooling: str
    scale: float
    offset: float
    atomref: list = field(default_factory=lambda: [0.0] * MAX_Z)

    @classmethod
    def fit(cls, target: str, y: np.ndarray, counts: np.ndarray) -> Normalisation:
        """From training targets ``y`` (M,) and element counts ``counts`` (M, MAX_Z).

        Examples
        --------
        >>> counts = np.zeros((3, MAX_Z)); counts[:, 1] = [2, 4, 2]; counts[:, 6] = [1, 2, 2]
        >>> norm = Normalisation.fit("U0", counts @ np.r_[0, -0.5, 0, 0, 0, 0, -38.0, 0, 0, 0], counts)
        >>> round(norm.atomref[1], 6), round(norm.atomref[6], 6)
        (-0.5, -38.0)
        """
        pooling = POOLING[target]
        if pooling == "mean":
            return cls("mean", float(np.std(y)) or 1.0, float(np.mean(y)))
        present = counts.any(axis=0)
        ref = np.zeros(counts.shape[1])
        ref[present] = np.linalg.lstsq(counts[:, present], y, rcond=None)[0]
        residual = y - counts @ ref
        return cls("sum", float(np.std(residual)) or 1.0, 0.0, ref.tolist())

    def to_dict(self) -> dict:
        return asdict(self)


class QM9Tensors:
    """All QM9 molecules as flat tensors on one device, gathered into batches by molecule row.

    Parameters
    ----------
    target : str
        A :data:`cpd_core.datasets.qm9.TARGETS` name (eV for energies).
    device : torch.device or str
    arrays : dict, optional
        :func:`cpd_core.datasets.qm9.flat_arrays`-shaped arrays (default: all of QM9).

    Examples
    --------
    >>> arrays = {"index": np.array([1, 2]), "n_atoms": np.array([2, 3]), "z": np.array([1, 1, 8, 1, 1]),
    ...           "xyz": np.arange(15.).reshape(5, 3), "target_gap": np.array([10., 7.])}
    >>> data = QM9Tensors("gap", "cpu", arrays)
    >>> numbers, positions, batch, y = data.batch(torch.tensor([1, 0]))
    >>> numbers.tolist(), batch.tolist(), y.tolist()
    ([8, 1, 1, 1, 1], [0, 0, 0, 1, 1], [7.0, 10.0])
    """

    def __init__(self, target: str, device: torch.device | str = "cpu", arrays: dict | None = None):
        check_targets([target])
        arrays = flat_arrays() if arrays is None else arrays
        y = np.asarray(arrays[f"target_{target}"], dtype=np.float64)
        if np.isnan(y).any():
            raise InputError(f"QM9 target {target!r} has missing values in these arrays")
        self.target = target
        self.ids = np.asarray(arrays["index"])
        n_atoms = np.asarray(arrays["n_atoms"], dtype=np.int64)
        self.device = torch.device(device)
        self.n_atoms = torch.as_tensor(n_atoms, device=self.device)
        self.offsets = torch.as_tensor(np.concatenate([[0], np.cumsum(n_atoms)[:-1]]), device=self.device)
        self.numbers = torch.as_tensor(np.asarray(arrays["z"], dtype=np.int64), device=self.device)
        self.positions = torch.as_tensor(np.asarray(arrays["xyz"], dtype=np.float32), device=self.device)
        self.y = torch.as_tensor(y, device=self.device)

    def __len__(self) -> int:
        return len(self.y)

    def counts(self, rows: np.ndarray) -> np.ndarray:
        """Element counts (len(rows), MAX_Z) of the molecules at ``rows``."""
        numbers, _, batch, _ = self.batch(torch.as_tensor(rows, device=self.device))
        out = torch.zeros((len(rows), MAX_Z), dtype=torch.float64, device=self.device)
        out.index_put_((batch, numbers), torch.ones_like(batch, dtype=torch.float64), accumulate=True)
        return out.cpu().numpy()

    def batch(self, rows: torch.Tensor):
        """``numbers``, ``positions``, ``batch`` (structure index per atom) and targets of ``rows``."""
        sizes = self.n_atoms[rows]
        batch = torch.repeat_interleave(torch.arange(len(rows), device=self.device), sizes)
        first = torch.cumsum(sizes, 0) - sizes
        atoms = self.offsets[rows][batch] + torch.arange(len(batch), device=self.device) - first[batch]
        return self.numbers[atoms], self.positions[atoms], batch, self.y[rows]
