r"""The extraction engine: structures → per-atom blocks (a model) → pooled, invariant features per structure.

A featurizer (:class:`cpd_core.models.base.Featurizer`) returns per-atom blocks for an
:class:`~cpd_core.models.base.AtomsBatch`. This module batches structures by atom count,
runs the model (CUDA when available), and pools each block over the atoms :math:`a` of
structure :math:`s` with the batch index:

.. math::

    h_s^{\text{mean}} = \frac{1}{N_s}\sum_{a \in s} h_a, \qquad
    h_s^{\text{sum}} = \sum_{a \in s} h_a .

Blocks of degree :math:`L \ge 1` (per-atom tensors :math:`\mathbf v_{a,c} \in \mathbb R^{2L+1}`
for each channel :math:`c`) rotate with the structure; two rotation invariants keep different
information, and the engine returns both, named by a suffix:

``<block>@atom-norm``
    :math:`\operatorname{pool}_a \lVert \mathbf v_{a,c} \rVert`: the norm of each atom's
    vector, pooled afterwards. Blind to how the atoms' vectors are oriented relative to
    each other.
``<block>@pooled-norm``
    :math:`\lVert \operatorname{pool}_a \mathbf v_{a,c} \rVert`: the norm of the pooled vector.
    Keeps the cancellations between atoms that a molecular dipole is made of.

(Inner products between different pooled channels would add more invariants; they are not
computed.)

Features are cached on disk in shards of consecutive input rows, each keyed by what
determines it (:func:`extract_features`): an interrupted extraction resumes from the
shards already written, and a shard file is written atomically, so it is never half there.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from cpd_core.cache import cache_dir, content_key, save_npz_atomic
from cpd_core.composition import symbol
from cpd_core.errors import InputError
from cpd_core.models.base import AtomsBatch, resolve_device

POOLINGS = ("mean", "sum")
INVARIANTS = ("atom-norm", "pooled-norm")
#: Bumped when a change here changes extracted features.
EXTRACT_VERSION = "2"
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def check_elements(numbers: Sequence[np.ndarray], supported: Sequence[int], model: str,
                   ids: Sequence | None = None, skip: bool = False) -> np.ndarray:
    """Which structures hold only elements a model supports.

    Returns a boolean mask of the supported structures. Unless ``skip``, any unsupported
    structure raises :class:`InputError` naming the structures (by ``ids`` when given) and
    their offending elements.

    Examples
    --------
    >>> check_elements([[1, 6], [1, 8]], supported=(1, 6, 8), model="toy").tolist()
    [True, True]
    >>> check_elements([[1, 6], [1, 9]], supported=(1, 6, 8), model="toy", skip=True).tolist()
    [True, False]
    """
    supported = set(int(z) for z in supported)
    keep = np.array([set(map(int, z)) <= supported for z in numbers], dtype=bool)
    if not skip and not keep.all():
        bad = [(i if ids is None else ids[i], sorted(set(map(int, numbers[i])) - supported))
               for i in np.flatnonzero(~keep)]
        shown = ", ".join(f"{s} ({'/'.join(symbol(e) for e in els)})" for s, els in bad[:10])
        raise InputError(
            f"{len(bad)} structure(s) hold elements {model} does not support "
            f"(it covers {'/'.join(symbol(z) for z in sorted(supported))}): {shown}"
            f"{' ...' if len(bad) > 10 else ''}. Pass skip_unsupported=True "
            f"(cpd extract --skip-unsupported) to leave them out and count them.")
    return keep


def pool_atoms(feats: torch.Tensor, batch: torch.Tensor, n_structures: int,
               pooling: str = "mean") -> torch.Tensor:
    """Pool per-atom rows (N, ...) into per-structure rows (S, ...) with the batch index.

    Examples
    --------
    >>> f = torch.tensor([[1.0], [3.0], [10.0]]); b = torch.tensor([0, 0, 1])
    >>> pool_atoms(f, b, 2, "mean").tolist(), pool_atoms(f, b, 2, "sum").tolist()
    ([[2.0], [10.0]], [[4.0], [10.0]])
    """
    if pooling not in POOLINGS:
        raise InputError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")
    total = feats.new_zeros((n_structures,) + tuple(feats.shape[1:])).index_add_(0, batch, feats)
    if pooling == "sum":
        return total
    counts = torch.bincount(batch, minlength=n_structures).to(feats.dtype)
    return total / counts.reshape((-1,) + (1,) * (feats.dim() - 1))


def invariant_pool(blocks: dict[str, torch.Tensor], batch: torch.Tensor, n_structures: int,
                   pooling: str = "mean") -> dict[str, torch.Tensor]:
    """Pool every block; an L ≥ 1 block (N, c, 2L+1) gives its two invariants (module docstring).

    Examples
    --------
    >>> v = torch.tensor([[[1.0, 0, 0]], [[-1.0, 0, 0]]])       # two atoms, opposite unit vectors
    >>> out = invariant_pool({"l1": v}, torch.tensor([0, 0]), 1)
    >>> out["l1@atom-norm"].tolist(), out["l1@pooled-norm"].tolist()
    ([[1.0]], [[0.0]])
    """
    out = {}
    for name, x in blocks.items():
        if x.dim() == 2:
            out[name] = pool_atoms(x, batch, n_structures, pooling)
        elif x.dim() == 3:
            out[f"{name}@atom-norm"] = pool_atoms(x.norm(dim=-1), batch, n_structures, pooling)
            out[f"{name}@pooled-norm"] = pool_atoms(x, batch, n_structures, pooling).norm(dim=-1)
        else:
            raise ValueError(f"block {name!r} has shape {tuple(x.shape)}; expected (N, d) or (N, c, 2L+1)")
    return out


def _check_inputs(numbers, positions, cells) -> None:
    if len(numbers) != len(positions):
        raise InputError(f"{len(numbers)} atomic-number arrays but {len(positions)} position arrays")
    if len(numbers) == 0:
        raise InputError("no structures given: the selection is empty")
    bad = [i for i, (z, r) in enumerate(zip(numbers, positions)) if len(z) == 0 or np.shape(r) != (len(z), 3)]
    if bad:
        raise InputError(f"positions must have shape (n_atoms, 3) with n_atoms ≥ 1 matching the atomic "
                         f"numbers; structures {bad[:10]} do not")
    if cells is not None and len(cells) != len(numbers):
        raise InputError(f"{len(cells)} cells for {len(numbers)} structures")


def _dtype(dtype) -> torch.dtype:
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise InputError(f"unknown dtype {dtype!r}; choose one of {list(DTYPES)}")
        return DTYPES[dtype]
    if dtype not in DTYPES.values():
        raise InputError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    return dtype


class Features(dict):
    """Pooled features per block (a ``dict`` of name → (n_kept, d) float64 arrays), plus bookkeeping.

    Attributes
    ----------
    kept : numpy.ndarray of bool
        Which input structures have features (all, unless unsupported ones were skipped).
    skipped : list
        Ids (or input positions) of the skipped structures.
    """

    def __init__(self, *args, kept=None, skipped=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.kept = np.zeros(0, dtype=bool) if kept is None else np.asarray(kept, dtype=bool)
        self.skipped = list(skipped)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}: {v.shape[1]}" for k, v in self.items())
        return f"Features({int(self.kept.sum())} structures, {len(self.skipped)} skipped; {shapes})"


def _run(featurizer, numbers, positions, cells, pooling, batch_size, dev, dtype, bar) -> dict:
    """Pooled features (float64 numpy, input order) of structures all supported by the model."""
    sizes = np.fromiter((len(z) for z in numbers), dtype=np.int64, count=len(numbers))
    order = np.argsort(sizes, kind="stable")
    out: dict[str, np.ndarray] = {}
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch = AtomsBatch.from_arrays([numbers[i] for i in idx], [positions[i] for i in idx],
                                       None if cells is None else [cells[i] for i in idx],
                                       dtype=dtype, device=dev)
        pooled = invariant_pool(featurizer(batch), batch.batch, batch.n_structures, pooling)
        for name, x in pooled.items():
            if name not in out:
                out[name] = np.empty((len(order), x.shape[1]))
            out[name][idx] = x.double().cpu().numpy()
        if bar is not None:
            bar.update(len(idx))
    return out


def pooled_features(featurizer, numbers: Sequence[np.ndarray], positions: Sequence[np.ndarray],
                    cells: Sequence[np.ndarray] | None = None, pooling: str = "mean", batch_size: int = 256,
                    device: str | None = "auto", dtype: torch.dtype | str = torch.float32,
                    skip_unsupported: bool = False, ids: Sequence | None = None,
                    progress: bool = True) -> Features:
    """Run ``featurizer`` over all structures in size-sorted batches; pool per structure.

    Parameters
    ----------
    featurizer : cpd_core.models.base.Featurizer
    numbers, positions : sequences of arrays
        Atomic numbers (n_atoms,) and coordinates (n_atoms, 3) in Å per structure.
    cells : sequence of (3, 3) arrays, optional
        Lattice vectors (rows, Å) of periodic structures; omit for molecules.
    pooling : {"mean", "sum"}
    batch_size : int
        Structures per forward pass.
    device : str or None
        ``"auto"`` uses CUDA when available.
    dtype : torch.float32 (default) or torch.float64, or their names
    skip_unsupported : bool
        Leave out structures with elements the model does not support (counted in the
        result's ``skipped``) instead of raising :class:`InputError`.
    ids : sequence, optional
        Names of the structures for messages and ``skipped`` (default: positions in the input).
    progress : bool
        Show a progress bar.

    Returns
    -------
    Features
        Pooled features (n_kept, d) per block, float64, in input order; L ≥ 1 blocks as
        ``<block>@atom-norm`` and ``<block>@pooled-norm``.
    """
    from tqdm import tqdm

    _check_inputs(numbers, positions, cells)
    if pooling not in POOLINGS:
        raise InputError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")
    dtype = _dtype(dtype)
    keep = check_elements(numbers, featurizer.elements, featurizer.name, ids=ids, skip=skip_unsupported)
    result = Features(kept=keep, skipped=[(i if ids is None else ids[i]) for i in np.flatnonzero(~keep)])
    if not keep.any():
        raise InputError(f"none of the {len(numbers)} structures is supported by {featurizer.name}")
    rows = np.flatnonzero(keep)
    dev = resolve_device(device)
    featurizer.to(dev, dtype)
    with torch.no_grad(), tqdm(total=len(rows), desc=f"{featurizer.name}", unit="struct",
                               disable=not progress) as bar:
        out = _run(featurizer, [numbers[i] for i in rows], [positions[i] for i in rows],
                   None if cells is None else [cells[i] for i in rows], pooling, batch_size, dev, dtype, bar)
    result.update(out)
    return result


def shard_key(featurizer, dataset: str, ids: np.ndarray, pooling: str, dtype: torch.dtype) -> str:
    """Cache key of one shard: model spec (weights hash included), dataset rows, pooling, dtype, code version.

    The skip policy is not part of it: a shard records which of its rows were kept, and
    without ``skip_unsupported`` an unsupported row raises before any shard is read.
    """
    return content_key(spec=featurizer.spec(), dataset=dataset, ids=np.asarray(ids), pooling=pooling,
                       dtype=str(dtype), extract_version=EXTRACT_VERSION)


def extract_features(featurizer, dataset: str, ids: Sequence, numbers, positions, cells=None,
                     pooling: str = "mean", shard_size: int = 8192, batch_size: int = 256,
                     device: str | None = "auto", dtype: torch.dtype | str = torch.float32,
                     skip_unsupported: bool = False, progress: bool = True,
                     load: bool = True) -> Features | list[Path]:
    """:func:`pooled_features` with a sharded, resumable, content-keyed cache.

    Rows are cut into shards of ``shard_size`` consecutive input rows. Each shard is
    stored as ``<cache>/features/<model>/<key>.npz`` where the key hashes the model's
    :meth:`~cpd_core.models.base.Featurizer.spec` (weights hash included), ``dataset``
    and the shard's ``ids``, the pooling, the dtype and the engine version. Shards already on disk are read, not recomputed, so an interrupted run
    resumes where it stopped; a shard is written atomically.

    Parameters
    ----------
    dataset : str
        Names the source of the rows (``"qm9"``); with ``ids`` it identifies the structures.
    ids : sequence
        Row identifiers (e.g. QM9 indices), one per structure. The cache trusts that the
        same (dataset, id) always means the same structure.
    load : bool
        Return the features (default). With ``False``, only make sure every shard is on
        disk and return their paths: memory then stays flat however many structures there are.
    Other parameters
        As :func:`pooled_features`.

    Returns
    -------
    Features, or list of pathlib.Path when ``load=False``.
    """
    from tqdm import tqdm

    _check_inputs(numbers, positions, cells)
    if len(ids) != len(numbers):
        raise InputError(f"{len(ids)} ids for {len(numbers)} structures")
    if pooling not in POOLINGS:
        raise InputError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")
    if shard_size < 1:
        raise InputError(f"shard_size must be positive, got {shard_size}")
    dtype = _dtype(dtype)
    ids = np.asarray(ids)
    keep = check_elements(numbers, featurizer.elements, featurizer.name, ids=ids, skip=skip_unsupported)
    if not keep.any():
        raise InputError(f"none of the {len(numbers)} structures is supported by {featurizer.name}")
    folder = cache_dir() / "features" / featurizer.name.replace("/", "_").replace(":", "_")
    shards = [slice(s, min(s + shard_size, len(ids))) for s in range(0, len(ids), shard_size)]
    paths = [folder / f"{shard_key(featurizer, dataset, ids[s], pooling, dtype)}.npz" for s in shards]
    todo = [k for k, p in enumerate(paths) if not _readable(p)]
    if todo:
        dev = resolve_device(device)
        featurizer.to(dev, dtype)
        total = sum(int(keep[shards[k]].sum()) for k in todo)
        with torch.no_grad(), tqdm(total=total, desc=f"{featurizer.name}", unit="struct",
                                   disable=not progress) as bar:
            for k in todo:
                s = shards[k]
                rows = np.arange(s.start, s.stop)[keep[s]]
                t0 = time.perf_counter()
                out = {} if len(rows) == 0 else _run(
                    featurizer, [numbers[i] for i in rows], [positions[i] for i in rows],
                    None if cells is None else [cells[i] for i in rows], pooling, batch_size, dev, dtype, bar)
                store = {f"block::{name}": x.astype(np.float32 if dtype == torch.float32 else np.float64)
                         for name, x in out.items()}
                save_npz_atomic(paths[k], kept=keep[s], seconds=np.float64(time.perf_counter() - t0), **store)
    if not load:
        return paths
    return _load_shards(paths, ids)


def _readable(path: Path) -> bool:
    if not path.exists():
        return False
    try:
        with np.load(path, allow_pickle=False) as data:
            _ = data["kept"]
        return True
    except Exception:
        path.unlink(missing_ok=True)
        return False


def kept_rows(paths: list[Path]) -> np.ndarray:
    """Which rows the shards at ``paths`` (from ``extract_features(..., load=False)``) kept, without loading features."""
    masks = []
    for path in paths:
        with np.load(path, allow_pickle=False) as data:
            masks.append(data["kept"])
    return np.concatenate(masks)


def _load_shards(paths: list[Path], ids: np.ndarray) -> Features:
    parts, kept = [], []
    for path in paths:
        with np.load(path, allow_pickle=False) as data:
            kept.append(data["kept"])
            parts.append({k.split("::", 1)[1]: data[k] for k in data.files if k.startswith("block::")})
    keep = np.concatenate(kept)
    result = Features(kept=keep, skipped=list(ids[~keep]))
    names = next((list(p) for p in parts if p), [])
    for name in names:
        result[name] = np.concatenate([p[name] for p in parts if p]).astype(np.float64)
    return result


def cached_pooled_features(featurizer, dataset: str, ids: Sequence, numbers, positions,
                           pooling: str = "mean", **kwargs) -> Features:
    """Shorthand for :func:`extract_features` (kept for the first chapters' notebooks)."""
    return extract_features(featurizer, dataset, ids, numbers, positions, pooling=pooling, **kwargs)
