r"""Batched feature extraction: structures → per-atom features → pooled per structure.

A *featurizer* is a callable ``f(numbers, positions, mask) -> dict[str, Tensor]``
taking a padded batch (``numbers`` (B, A) int64 with 0 for padding,
``positions`` (B, A, 3), ``mask`` (B, A) bool) and returning per-atom
features of shape (B, A, d) per named block (a layer, an irrep block, ...).
It carries ``name``, ``elements`` (supported atomic numbers) and ``spec()``
(everything that determines its output, for the cache key).

Pooling over the atoms :math:`a` of structure :math:`s`:

.. math::

    h_s^{\text{mean}} = \frac{1}{N_s}\sum_{a \in s} h_a, \qquad
    h_s^{\text{sum}} = \sum_{a \in s} h_a .

Structures are sorted by atom count so each batch pads little, and results
come back in the input order.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from cpd_core.cache import cached_arrays, content_key
from cpd_core.composition import symbol
from cpd_core.errors import InputError

POOLINGS = ("mean", "sum")
#: Bumped when a change here changes extracted features.
EXTRACT_VERSION = "1"


def resolve_device(device: str | None) -> torch.device:
    """``"auto"``/``None`` → CUDA when available, else CPU; otherwise as given."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {device!r} requested but CUDA is not available here")
    return torch.device(device)


def check_elements(numbers: Sequence[np.ndarray], supported: Sequence[int], model: str,
                   ids: Sequence | None = None) -> None:
    """Raise :class:`InputError` naming the structures with elements a model does not support."""
    supported = set(int(z) for z in supported)
    bad = [(i if ids is None else ids[i], sorted(set(map(int, z)) - supported))
           for i, z in enumerate(numbers) if not set(map(int, z)) <= supported]
    if bad:
        shown = ", ".join(f"{s} ({'/'.join(symbol(e) for e in els)})" for s, els in bad[:10])
        raise InputError(
            f"{len(bad)} structure(s) hold elements {model} does not support "
            f"(it covers {'/'.join(symbol(z) for z in sorted(supported))}): {shown}"
            f"{' ...' if len(bad) > 10 else ''}")


def pool_atoms(feats: torch.Tensor, mask: torch.Tensor, pooling: str = "mean") -> torch.Tensor:
    """Pool padded per-atom features (B, A, d) over real atoms to (B, d).

    Examples
    --------
    >>> f = torch.tensor([[[1.0], [3.0], [100.0]]]); m = torch.tensor([[True, True, False]])
    >>> pool_atoms(f, m, "mean").tolist(), pool_atoms(f, m, "sum").tolist()
    ([[2.0]], [[4.0]])
    """
    if pooling not in POOLINGS:
        raise InputError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")
    w = mask.to(feats.dtype).unsqueeze(-1)
    total = (feats * w).sum(dim=1)
    return total / w.sum(dim=1) if pooling == "mean" else total


def pooled_features(featurizer: Callable, numbers: Sequence[np.ndarray], positions: Sequence[np.ndarray],
                    pooling: str = "mean", batch_size: int = 256, device: str | None = "auto",
                    dtype: torch.dtype = torch.float32, progress: bool = True) -> dict[str, np.ndarray]:
    """Run ``featurizer`` over all structures in size-sorted batches and pool per structure.

    Parameters
    ----------
    featurizer : callable
        See the module docstring.
    numbers, positions : sequences of arrays
        Atomic numbers (n_atoms,) and coordinates (n_atoms, 3) in Å per structure.
    pooling : {"mean", "sum"}
    batch_size : int
        Structures per batch.
    device : str or None
        ``"auto"`` uses CUDA when available.
    dtype : torch.dtype
        ``torch.float32`` (default) or ``torch.float64``.
    progress : bool
        Show a progress bar.

    Returns
    -------
    dict of str to numpy.ndarray
        Pooled features (n_structures, d) per block, float64, in input order.
    """
    from tqdm import tqdm

    if len(numbers) != len(positions):
        raise InputError(f"{len(numbers)} atomic-number arrays but {len(positions)} position arrays")
    if len(numbers) == 0:
        raise InputError("no structures given: the selection is empty")
    if pooling not in POOLINGS:
        raise InputError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")
    bad = [i for i, (z, r) in enumerate(zip(numbers, positions)) if np.shape(r) != (len(z), 3)]
    if bad:
        raise InputError(f"positions must have shape (n_atoms, 3) matching the atomic numbers; "
                         f"structures {bad[:10]} do not")
    check_elements(numbers, featurizer.elements, featurizer.name)
    dev = resolve_device(device)
    sizes = np.array([len(z) for z in numbers])
    order = np.argsort(sizes, kind="stable")
    out: dict[str, np.ndarray] = {}
    with torch.no_grad(), tqdm(total=len(order), desc=f"{featurizer.name} features",
                               unit="struct", disable=not progress) as bar:
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            width = sizes[idx].max()
            z = torch.zeros((len(idx), width), dtype=torch.int64)
            r = torch.zeros((len(idx), width, 3), dtype=dtype)
            for row, i in enumerate(idx):
                z[row, :sizes[i]] = torch.as_tensor(numbers[i])
                r[row, :sizes[i]] = torch.as_tensor(positions[i], dtype=dtype)
            z, r = z.to(dev), r.to(dev)
            mask = z > 0
            for block, feats in featurizer(z, r, mask).items():
                pooled = pool_atoms(feats, mask, pooling).double().cpu().numpy()
                if block not in out:
                    out[block] = np.empty((len(order), pooled.shape[1]))
                out[block][idx] = pooled
            bar.update(len(idx))
    return out


def cached_pooled_features(featurizer: Callable, dataset: str, ids: Sequence, numbers, positions,
                           pooling: str = "mean", **kwargs) -> dict[str, np.ndarray]:
    """:func:`pooled_features`, cached by model spec, dataset rows and pooling.

    ``dataset`` names the source and ``ids`` identify its rows (e.g. QM9
    indices): together they key the cache, so a different subset never reuses
    stale features. ``dtype`` (in ``kwargs``) is part of the key; batch size
    and device are not (they do not change the result beyond round-off).
    """
    key = content_key(model=featurizer.name, spec=featurizer.spec(), dataset=dataset,
                      ids=np.asarray(ids), pooling=pooling, dtype=str(kwargs.get("dtype", torch.float32)),
                      extract_version=EXTRACT_VERSION)
    return cached_arrays("features", key,
                         lambda: pooled_features(featurizer, numbers, positions, pooling=pooling, **kwargs))
