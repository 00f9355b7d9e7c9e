r"""The extraction engine: a data set → a model's per-atom blocks → pooled, invariant features per structure.

One call, :func:`features`, serves the chapters, the CLI and the benchmarks:

>>> from cpd_core.datasets import load_qm9               # doctest: +SKIP
>>> qm9 = load_qm9(n=2000, seed=0)                       # doctest: +SKIP
>>> feats = features("ani2x-aev", qm9)                   # doctest: +SKIP
>>> feats["aev"].shape                                   # doctest: +SKIP
(2000, 1008)

A featurizer (:class:`cpd_core.models.base.Featurizer`) returns per-atom blocks for an
:class:`~cpd_core.models.base.AtomsBatch`. The batch runner here sorts structures by atom
count, runs the model (CUDA when available) and pools each block per structure
(:mod:`cpd_core.pooling`: mean or sum; an L ≥ 1 block gives ``<block>@atom-norm`` and
``<block>@pooled-norm``).

Features of a named data set are cached on disk (:mod:`cpd_core.cache`) in shards of
consecutive rows, each keyed by what determines it (:func:`shard_key`): an interrupted
extraction resumes from the shards already written, a shard is written atomically, and every
chapter that asks for the same model on the same molecules reads the same files.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from cpd_core.cache import cache_dir, content_key, load_shards, readable_shard, save_shard, shard_masks
from cpd_core.composition import symbol
from cpd_core.datasets.base import Dataset
from cpd_core.errors import InputError
from cpd_core.models.base import AtomsBatch, resolve_device
from cpd_core.pooling import check_pooling, invariant_pool

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
        Ids of the skipped structures.
    """

    def __init__(self, *args, kept=None, skipped=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.kept = np.zeros(0, dtype=bool) if kept is None else np.asarray(kept, dtype=bool)
        self.skipped = list(skipped)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}: {v.shape[1]}" for k, v in self.items())
        return f"Features({int(self.kept.sum())} structures, {len(self.skipped)} skipped; {shapes})"


def sum_from_mean(feats: Features, dataset: Dataset) -> Features:
    r"""Sum-pooled features from mean-pooled ones, without running the model again.

    Every block :func:`~cpd_core.pooling.invariant_pool` returns is positively homogeneous of
    degree one in the pooling weights: :math:`\sum_a h_a = N_s \cdot \frac{1}{N_s}\sum_a h_a`, and
    for an :math:`L \ge 1` block both invariants scale the same way,
    :math:`\sum_a \lVert \mathbf v_a \rVert = N_s \operatorname{mean}_a \lVert \mathbf v_a \rVert` and
    :math:`\lVert \sum_a \mathbf v_a \rVert = N_s \lVert \operatorname{mean}_a \mathbf v_a \rVert`.
    So each row is multiplied by its structure's atom count :math:`N_s` (of the rows ``feats``
    kept). Equal to ``features(..., pooling="sum")`` up to the round-off of the stored features.

    Examples
    --------
    >>> data = Dataset.from_arrays([[8, 1, 1], [6, 1, 1, 1, 1]], [np.zeros((3, 3)), np.zeros((5, 3))])
    >>> mean = Features({"h": np.array([[1.0, 2.0], [0.5, 0.0]])}, kept=[True, True])
    >>> sum_from_mean(mean, data)["h"].tolist()
    [[3.0, 6.0], [2.5, 0.0]]
    """
    kept = np.asarray(feats.kept, dtype=bool)
    if len(kept) != len(dataset):
        raise InputError(f"the features were extracted from {len(kept)} structures, the data set has {len(dataset)}")
    atoms = np.array([len(z) for z, k in zip(dataset.numbers, kept) if k], dtype=np.float64)
    return Features({name: x * atoms[:, None] for name, x in feats.items()}, kept=kept, skipped=feats.skipped)


def run_batches(featurizer, dataset: Dataset, rows: np.ndarray, pooling: str, batch_size: int,
                device: torch.device, dtype: torch.dtype, bar=None) -> dict[str, np.ndarray]:
    """The batch runner: pooled features (float64, in the order of ``rows``) of ``dataset``'s structures at ``rows``.

    Structures go through the model in batches of ``batch_size``, sorted by atom count (similar
    sizes per batch); every row must hold only elements the model supports.
    """
    rows = np.asarray(rows, dtype=np.int64)
    sizes = np.fromiter((len(dataset.numbers[r]) for r in rows), dtype=np.int64, count=len(rows))
    order = np.argsort(sizes, kind="stable")
    out: dict[str, np.ndarray] = {}
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        take = rows[idx]
        batch = AtomsBatch.from_arrays([dataset.numbers[r] for r in take], [dataset.positions[r] for r in take],
                                       None if dataset.cells is None else [dataset.cells[r] for r in take],
                                       dtype=dtype, device=device)
        pooled = invariant_pool(featurizer(batch), batch.batch, batch.n_structures, pooling)
        for name, x in pooled.items():
            if name not in out:
                out[name] = np.empty((len(rows), x.shape[1]))
            out[name][idx] = x.double().cpu().numpy()
        if bar is not None:
            bar.update(len(idx))
    return out


def shard_key(featurizer, dataset: str, ids: np.ndarray, pooling: str, dtype: torch.dtype) -> str:
    """Cache key of one shard: model spec (weights hash included), data set name and rows, pooling, dtype, version.

    The skip policy is not part of it: a shard records which of its rows were kept, and
    without ``skip_unsupported`` an unsupported row raises before any shard is read.
    """
    return content_key(spec=featurizer.spec(), dataset=dataset, ids=np.asarray(ids), pooling=pooling,
                       dtype=str(dtype), extract_version=EXTRACT_VERSION)


#: Default structures per forward pass, by device kind (see :func:`features`).
BATCH_SIZE = {"cpu": 16, "cuda": 256}


def features(model, dataset: Dataset, pooling: str = "mean", *, device: str | None = "auto",
             dtype: torch.dtype | str = torch.float32, batch_size: int | None = None, shard_size: int = 8192,
             skip_unsupported: bool = False, progress: bool = True, cache: bool = True,
             load: bool = True, threads: int | None = None) -> Features | list[Path]:
    """Pooled features of every structure of ``dataset`` under ``model``: the one extraction call.

    Parameters
    ----------
    model : cpd_core.models.base.Featurizer or str
        A featurizer, or a registry name (:func:`cpd_core.models.load`, on ``device``).
    dataset : cpd_core.datasets.Dataset
        The structures (:func:`cpd_core.datasets.load_qm9`, :meth:`Dataset.from_arrays`, ...).
    pooling : {"mean", "sum"}
    device : str or None
        ``"auto"`` uses CUDA when available.
    dtype : torch.float32 (default) or torch.float64, or their names
    batch_size : int, optional
        Structures per forward pass. Default: :data:`BATCH_SIZE` for the device's kind (small on a
        CPU, where large batches of graphs spill the caches: 16 structures are 1.4-1.8x faster than
        256 for SO3Net, SevenNet-0, CHGNet, DimeNet++ and ViSNet on QM9, ``benchmarks/batch_size.py``).
    shard_size : int
        Rows per cache shard.
    skip_unsupported : bool
        Leave out structures with elements the model does not support (listed in the result's
        ``skipped``, ``kept`` marks the others) instead of raising :class:`InputError`.
    progress : bool
        Show a progress bar.
    cache : bool
        Read and write the on-disk cache (default). A data set without a ``name`` is never cached.
        Each shard is ``<cache>/features/<model>/<key>.npz`` (:func:`shard_key`); shards already on
        disk are read, not recomputed, so an interrupted run resumes where it stopped.
    load : bool
        Return the features (default). With ``False`` (cached data sets only), only make sure every
        shard is on disk and return their paths: memory then stays flat however many structures
        there are (:func:`kept_rows` reads their masks).
    threads : int, optional
        Torch threads while extracting (default: every core this process may use; restored
        afterwards, see :func:`torch_threads`).

    Returns
    -------
    Features, or list of pathlib.Path when ``load=False``
        Pooled features (n_kept, d) per block, float64, in the data set's order; L ≥ 1 blocks as
        ``<block>@atom-norm`` and ``<block>@pooled-norm``.

    Raises
    ------
    InputError
        For an unknown pooling or dtype, a structure with elements the model does not support
        (unless ``skip_unsupported``), no supported structure at all, or ``load=False`` without
        a cache.
    """
    from tqdm import tqdm

    if not isinstance(dataset, Dataset):
        raise InputError(f"dataset must be a cpd_core.datasets.Dataset (load_qm9(...), Dataset.from_arrays(...)), "
                         f"got {type(dataset).__name__}")
    check_pooling(pooling)
    if shard_size < 1:
        raise InputError(f"shard_size must be positive, got {shard_size}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
                                   or batch_size < 1):
        raise InputError(f"batch_size must be a positive whole number, got {batch_size!r}")
    dtype = _dtype(dtype)
    cache = cache and dataset.name is not None
    if not load and not cache:
        raise InputError("load=False keeps features only in the cache: it needs cache=True and a named data set")
    if isinstance(model, str):  # built only if some shard is not in the cache
        from cpd_core.models import load as load_model
        from cpd_core.models.lazy import load_lazy

        model = load_lazy(model, device=device) if cache else load_model(model, device=device)
    keep = check_elements(dataset.numbers, model.elements, model.name, ids=dataset.ids, skip=skip_unsupported)
    if not keep.any():
        raise InputError(f"none of the {len(dataset)} structures is supported by {model.name}")
    n = len(dataset)
    shards = [np.arange(s, min(s + shard_size, n)) for s in range(0, n, shard_size)] if cache else [np.arange(n)]
    paths = [cache_dir() / "features" / model.name.replace("/", "_").replace(":", "_")
             / f"{shard_key(model, dataset.name, dataset.ids[s], pooling, dtype)}.npz" for s in shards] if cache else []
    todo = [k for k in range(len(shards)) if not (cache and readable_shard(paths[k]))]
    computed = {}
    if todo:
        dev = resolve_device(device)
        model.to(dev, dtype)
        if batch_size is None:
            batch_size = BATCH_SIZE.get(torch.device(dev).type, BATCH_SIZE["cuda"])
        total = sum(int(keep[shards[k]].sum()) for k in todo)
        with torch.no_grad(), torch_threads(threads), \
                tqdm(total=total, desc=model.name, unit="struct", disable=not progress) as bar:
            for k in todo:
                rows = shards[k][keep[shards[k]]]
                t0 = time.perf_counter()
                out = {} if len(rows) == 0 else run_batches(model, dataset, rows, pooling, batch_size, dev, dtype, bar)
                if cache:
                    store = np.float32 if dtype == torch.float32 else np.float64
                    save_shard(paths[k], keep[shards[k]], {name: x.astype(store) for name, x in out.items()},
                               seconds=np.float64(time.perf_counter() - t0))
                else:
                    computed = out
    if not load:
        return paths
    if not cache:
        return Features(computed, kept=keep, skipped=list(dataset.ids[~keep]))
    kept, blocks = load_shards(paths)
    return Features({k: v.astype(np.float64) for k, v in blocks.items()}, kept=kept,
                    skipped=list(dataset.ids[~kept]))


@contextlib.contextmanager
def torch_threads(n: int | None = None):
    """Run torch with ``n`` intra-op threads (None: every core this process may use), then restore.

    The book pins BLAS and OpenMP to one thread (``make``: numpy's small matrices and tree probes are
    faster so on two cores), which would also leave torch at one thread; extraction is torch's own
    batched work and gains from every core (measured 1.6x on SO3LR with 2 cores).
    """
    if n is None:
        try:
            n = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            n = os.cpu_count() or 1
    if n < 1:
        raise InputError(f"threads must be at least 1, got {n}")
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)


def kept_rows(paths: list[Path]) -> np.ndarray:
    """Which rows the shards at ``paths`` (from ``features(..., load=False)``) kept, without loading features."""
    return shard_masks(paths)
