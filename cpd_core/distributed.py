"""Past one process: features in a Zarr store, extraction and streaming CPD on Dask workers.

The same code runs on a :class:`distributed.LocalCluster` on this machine and on a real cluster given
its scheduler's address (``cpd extract --scheduler ADDRESS``, ``cpd probe --scheduler ADDRESS``):

- :func:`extract_to_zarr`: the structures are cut into shards; each shard's pooled features are
  computed by one task on some worker (one GPU per worker where there are GPUs: a worker uses the
  device it is given, ``device="auto"``: its CUDA device when present) and written into its own
  rows of a Zarr array. A task is idempotent (it writes the same rows with the same values), so when a
  worker dies Dask reruns its tasks elsewhere and no shard is lost or written twice; a shard whose
  ``done`` flag is set is not recomputed by a later run (resume).
- :func:`dask_reduce`: each pass of :func:`cpd_core.streaming.stream_cpd` maps its per-shard
  function over the workers, every worker reading its shards from the store, and merges the partial
  statistics in a tree on the cluster: only :math:`O(K p^2)` numbers travel per shard.

Store layout (``zarr`` 2 format, a directory): arrays ``H`` (n, d), ``C`` (n, k), ``Y`` (n, t), chunked
by ``shard_rows`` rows, and ``done`` (one flag per shard); attributes ``targets``, ``model``,
``block``, ``dataset``, ``ids``.

``dask[distributed]`` and ``zarr`` are needed only here (``import cpd_core`` does not import them).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cpd_core.errors import InputError
from cpd_core.streaming import Shard, merge, stream_cpd


def _zarr():
    try:
        import zarr
    except ImportError:  # pragma: no cover - in requirements.txt
        raise InputError("this needs the zarr package: pip install zarr") from None
    return zarr


#: Dask settings of the workers this module starts. Dask's nanny sets ``MALLOC_TRIM_THRESHOLD_=65536``
#: in every worker by default; setting it at all switches off glibc's dynamic mmap threshold, so every
#: tensor above 128 KiB is a fresh ``mmap`` that page-faults on first touch. Measured on the 2-core CPU:
#: one ANI-2x AEV shard of 2,048 QM9 molecules took 1.0-1.5 s of the worker thread's CPU with it and
#: 0.52-0.60 s without, as in a plain process (``benchmarks/extract_workers.py``). ``None`` leaves it
#: unset. On a cluster started by hand, give ``dask worker`` the same with the environment variable
#: ``DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON__MALLOC_TRIM_THRESHOLD_=None`` (book/cluster.md).
WORKER_CONFIG = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}


def client_for(scheduler: str | None = None, n_workers: int | None = None, threads_per_worker: int = 1):
    """A Dask client: of the scheduler at ``scheduler`` (``"tcp://host:8786"``), or, for ``None`` or
    ``"local"``, of a new :class:`distributed.LocalCluster` of ``n_workers`` processes on this machine.

    Examples
    --------
    >>> client_for("nonsense")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    cpd_core.errors.InputError: ...
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError:  # pragma: no cover - in requirements.txt
        raise InputError("this needs Dask: pip install 'dask[distributed]'") from None
    if scheduler in (None, "local"):
        import dask

        with dask.config.set(WORKER_CONFIG):
            cluster = LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker, processes=True,
                                   dashboard_address=None)
        return Client(cluster)
    if "://" not in scheduler and ":" not in scheduler:
        raise InputError(f"a scheduler address looks like tcp://HOST:PORT, got {scheduler!r} ('local' for this machine)")
    return Client(scheduler, timeout="30s")


def create_store(path, n: int, d: int, k: int, targets: Sequence[str], shard_rows: int, attrs: dict | None = None,
                 dtype="float32"):
    """An empty feature store at ``path`` (overwritten), chunked by ``shard_rows`` rows."""
    zarr = _zarr()
    if shard_rows < 1:
        raise InputError(f"shard_rows must be positive, got {shard_rows}")
    root = zarr.open_group(str(path), mode="w")
    root.create_dataset("H", shape=(n, d), chunks=(shard_rows, d), dtype=dtype)
    root.create_dataset("C", shape=(n, k), chunks=(shard_rows, k), dtype="float64")
    root.create_dataset("Y", shape=(n, len(targets)), chunks=(shard_rows, len(targets)), dtype="float64")
    root.create_dataset("done", shape=(n_shards(n, shard_rows),), chunks=(1,), dtype=bool, fill_value=False)
    root.attrs.update({"targets": list(targets), "shard_rows": int(shard_rows), **(attrs or {})})
    return root


def n_shards(n: int, shard_rows: int) -> int:
    return -(-n // shard_rows)


def open_store(path):
    """The store at ``path`` (read-only), with a clear error if there is none or it is incomplete."""
    zarr = _zarr()
    if not Path(path).exists():
        raise InputError(f"no feature store at {path}: write one with extract_to_zarr (cpd extract --store PATH)")
    root = zarr.open_group(str(path), mode="r")
    missing = [name for name in ("H", "C", "Y", "done") if name not in root]
    if missing:
        raise InputError(f"{path} is not a feature store: it has no {missing}")
    return root


def read_shard(path, i: int) -> Shard:
    """Shard ``i`` of the store (rows ``i * shard_rows`` … ), as float64."""
    root = open_store(path)
    rows = root.attrs["shard_rows"]
    a, b = i * rows, min((i + 1) * rows, root["H"].shape[0])
    if not root["done"][i]:
        raise InputError(f"{path}: shard {i} (rows {a}…{b - 1}) has no features yet; run the extraction again")
    return Shard(np.arange(a, b), root["H"][a:b].astype(np.float64), root["C"][a:b], root["Y"][a:b])


def zarr_shards(path):
    """The store's shards, one after the other (a source for :func:`~cpd_core.streaming.stream_cpd`)."""
    root = open_store(path)
    count = len(root["done"])
    return lambda: (read_shard(path, i) for i in range(count))


@functools.lru_cache(maxsize=2)
def _qm9(n, seed):
    """The QM9 subset of a store, loaded once per worker process (not once per shard)."""
    from cpd_core.datasets import load_qm9

    return load_qm9(n=n, seed=seed)


def _worker_threads(threads: int | None) -> int | None:
    """Torch threads of one task: ``threads``, else 1 inside a Dask worker (Dask's convention — one compute
    thread per task thread; give ``dask worker --nthreads`` and ``threads`` to use more), else None (the
    engine's default: every core of this process)."""
    if threads is not None:
        return threads
    try:
        from distributed import get_worker

        get_worker()
    except (ImportError, ValueError):
        return None
    return 1


def _extract_shard(path, i: int, model: str, block: str, dataset_args: dict, device: str, dtype: str,
                   pooling: str, threads: int | None = None) -> int:
    """One task: the pooled features of shard ``i``'s structures, written into the store's rows."""
    from cpd_core.extract import features
    from cpd_core.models.lazy import load_lazy

    zarr = _zarr()
    root = zarr.open_group(str(path), mode="r+")
    rows = root.attrs["shard_rows"]
    a, b = i * rows, min((i + 1) * rows, root["H"].shape[0])
    data = _qm9(dataset_args["n"], dataset_args["seed"]).select(np.arange(a, b))  # one cache key with extract_to_zarr's
    H = features(load_lazy(model, device=device), data, pooling=pooling, device=device, dtype=dtype,
                 progress=False, cache=False, threads=_worker_threads(threads))[block]
    root["H"][a:b] = H
    root["done"][i] = True
    return i


def extract_to_zarr(model: str, path, n: int | None = 2000, seed: int = 0, targets: Sequence[str] = ("gap",),
                    block: str | None = None, shard_rows: int = 8192, client=None, device: str = "auto",
                    dtype: str = "float32", pooling: str = "mean", resume: bool = True, progress: bool = True,
                    task=None, threads: int | None = None):
    """Pooled features of a QM9 subset under ``model`` into a Zarr store, one task per shard.

    Parameters
    ----------
    model : str
        Registry name (:func:`cpd_core.models.load`); every worker builds it once.
    path : path
        The store (a directory); with ``resume`` an existing store of the same request keeps its
        finished shards.
    n, seed, targets
        The QM9 subset (:func:`cpd_core.datasets.load_qm9`) and the targets stored beside the features.
    block : str, optional
        The feature block to store (default: the model's first).
    shard_rows : int
        Rows per shard (and per Zarr chunk).
    client : distributed.Client, optional
        Where the tasks run (:func:`client_for`); ``None``: in this process, shard after shard.
    threads : int, optional
        Torch threads per task. Default: 1 on a Dask worker (one per task thread, Dask's convention: two
        workers of two torch threads each on a 2-core machine ran 3x slower than one process), every core
        of this process without a client.
    task : callable, optional
        The per-shard task (default: featurize and write the shard); tests wrap it to kill a worker.

    Returns
    -------
    pathlib.Path
        The store.
    """
    from cpd_core.datasets.qm9 import check_targets
    from cpd_core.extract import features
    from cpd_core.models.lazy import load_lazy

    zarr = _zarr()
    targets = check_targets(targets)
    data = _qm9(n, seed)
    request = {"model": model, "n": len(data), "seed": seed, "targets": list(targets), "pooling": pooling,
               "dtype": dtype, "shard_rows": shard_rows, "block": block}
    path = Path(path)
    existing = zarr.open_group(str(path), mode="r").attrs.asdict() if (path / ".zgroup").exists() else {}
    if not (resume and existing.get("request") == request):
        one = features(load_lazy(model, device="cpu"), data.select([0]), pooling=pooling, progress=False,
                       cache=False, dtype=dtype)                     # the blocks and their widths
        stored = block or next(iter(one))
        if stored not in one:
            raise InputError(f"unknown block {stored!r}; {model} has {list(one)}")
        root = create_store(path, len(data), one[stored].shape[1], data.composition().shape[1], targets,
                            shard_rows, {"model": model, "block": stored, "dataset": "qm9",
                                         "ids": [int(x) for x in data.ids], "request": request}, dtype=dtype)
        root["C"][:] = data.composition()
        root["Y"][:] = data.targets[list(targets)].to_numpy(dtype=np.float64)
    root = zarr.open_group(str(path), mode="r")
    block = root.attrs["block"]
    todo = [i for i in range(len(root["done"])) if not root["done"][i]]
    task = task or _extract_shard
    args = (model, block, {"n": n, "seed": seed}, device, dtype, pooling, threads)
    if client is None:
        from tqdm import tqdm

        for i in tqdm(todo, desc=f"features of {model}", unit="shard", disable=not progress):
            task(str(path), i, *args)
    else:
        from distributed import progress as dask_progress

        futures = client.map(task, [str(path)] * len(todo), todo, *[[a] * len(todo) for a in args], pure=False)
        if progress:
            dask_progress(futures)
        client.gather(futures)
    done = zarr.open_group(str(path), mode="r")["done"][:]
    if not done.all():
        raise InputError(f"{path}: shards {np.flatnonzero(~done)[:10].tolist()} have no features after the run")
    return path


def _apply(i, fn, load):
    return fn(load(i))


def reduce_on_workers(client, count: int, load):
    """A ``reduce`` for :func:`~cpd_core.streaming.stream_cpd` over ``count`` shards, ``load(i)`` giving
    shard ``i`` where it runs: each pass's per-shard function is sent to each worker once, mapped over
    the shards there, and the partial results are merged pairwise on the cluster."""

    def reduce(name, fn, empty):
        fn = client.scatter(fn, broadcast=True, hash=False)
        futures = client.map(_apply, range(count), fn=fn, load=load, pure=False)
        while len(futures) > 1:
            merged = [client.submit(merge, a, b, pure=False) for a, b in zip(futures[::2], futures[1::2])]
            futures = merged + (futures[-1:] if len(futures) % 2 else [])
        return futures[0].result()

    return reduce


def dask_reduce(client, path, reader=None):
    """:func:`reduce_on_workers` over the shards of the store at ``path``, read by ``reader(path, i)``
    (default :func:`read_shard`) on the workers."""
    count = len(open_store(path)["done"])
    path, reader = str(path), reader or read_shard
    return reduce_on_workers(client, count, lambda i: reader(path, i))


def write_store(path, H, C, Y, targets: Sequence[str] | None = None, shard_rows: int = 8192,
                attrs: dict | None = None):
    """Features, composition and targets already in memory (or memory-mapped) into a store, shard by shard.

    Examples
    --------
    >>> import tempfile
    >>> from cpd_core.synthetic import planted
    >>> d = planted(n=200, seed=0)
    >>> path = write_store(tempfile.mkdtemp() + "/s.zarr", d.H, d.C, d.y, targets=["y"], shard_rows=64)
    >>> [int(s.rows[0]) for s in zarr_shards(path)()]
    [0, 64, 128, 192]
    """
    Y = np.asarray(Y)
    Y = Y[:, None] if Y.ndim == 1 else Y
    n = len(H)
    if not (len(C) == len(Y) == n):
        raise InputError(f"H, C and Y must have the same number of rows, got {n}, {len(C)}, {len(Y)}")
    targets = list(targets) if targets is not None else [f"y{i}" for i in range(Y.shape[1])]
    root = create_store(path, n, H.shape[1], C.shape[1], targets, shard_rows, attrs, dtype=np.asarray(H[:1]).dtype)
    for i in range(n_shards(n, shard_rows)):
        a, b = i * shard_rows, min((i + 1) * shard_rows, n)
        root["H"][a:b], root["C"][a:b], root["Y"][a:b] = H[a:b], C[a:b], Y[a:b]
        root["done"][i] = True
    return Path(path)


def probe_store(path, cv: int = 5, seed: int = 0, client=None, reader=None, **kwargs):
    """Streaming ridge CPD (:func:`~cpd_core.streaming.stream_cpd`) of every target in the store, on the
    workers of ``client`` (or in this process); ``kwargs`` go to :func:`~cpd_core.streaming.stream_cpd`."""
    root = open_store(path)
    done = root["done"][:]
    if not done.all():
        raise InputError(f"{path}: shards {np.flatnonzero(~done)[:10].tolist()} have no features yet")
    return stream_cpd(zarr_shards(path), n=root["H"].shape[0], targets=list(root.attrs["targets"]), cv=cv, seed=seed,
                      reduce=dask_reduce(client, path, reader) if client is not None else None, **kwargs)


__all__ = ["client_for", "create_store", "dask_reduce", "extract_to_zarr", "n_shards", "open_store", "probe_store",
           "read_shard", "reduce_on_workers", "write_store", "zarr_shards"]
