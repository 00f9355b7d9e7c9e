"""Streaming ridge CPD: time and peak memory against n, in one process and on Dask workers.

For each n it runs :func:`cpd_core.streaming.stream_cpd` (three passes over the shards, ``folds="hash"``
so that nothing of size n is kept) in a fresh process and prints the wall time, the time per million
rows and the peak resident memory of that process; with ``--workers W`` also on a
:class:`distributed.LocalCluster` of W worker processes (:func:`cpd_core.distributed.dask_reduce`), where
it prints the largest worker's peak memory and the client's. Beside small n it runs the in-memory
:func:`cpd_core.cpd` for comparison (its memory grows with n).

Rows are either synthetic — generated shard by shard where they are read (QM9-like element counts of
5 elements, ``--d`` features mixing composition, latent geometry and noise, two targets), so that
10 million rows need no disk — or real: ``--store PATH`` probes a Zarr feature store written by
``cpd extract --store`` (e.g. all 130,831 QM9 molecules), at the first n rows of it for each n.

Targets of the design (issue 15): time linear in n, memory flat in n.

Usage::

    python benchmarks/streaming.py                                  # 1e4 ... 1e7 synthetic rows, d = 64
    python benchmarks/streaming.py --n 10000 100000 --workers 2     # and on 2 Dask workers
    python benchmarks/streaming.py --store qm9-aev.zarr --n 1000 10000 130831
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from cpd_core.streaming import Shard, stream_cpd
from fresh import machine, measure, serve


def synthetic_shard(i: int, n: int, rows: int, d: int, seed: int = 0) -> Shard:
    """Shard ``i`` of a synthetic data set of ``n`` rows (a pure function of its arguments)."""
    a, b = i * rows, min((i + 1) * rows, n)
    rng = np.random.default_rng([seed, i])
    m = b - a
    counts = rng.poisson([9.0, 7.0, 1.0, 1.5, 0.1], size=(m, 5)).astype(float)
    C = np.column_stack([counts, np.ones(m)])
    W = np.random.default_rng(seed).normal(size=(6, d))            # the same mixing in every shard
    latent = rng.normal(size=(m, 4))
    L = np.random.default_rng(seed + 1).normal(size=(4, d))
    H = C @ W + latent @ L + 0.5 * rng.normal(size=(m, d))
    Y = np.column_stack([counts @ [0.1, -0.2, 0.3, 0.0, 0.5] + latent[:, 0] + 0.3 * rng.normal(size=m),
                         latent[:, 1] ** 2 + rng.normal(size=m)])
    return Shard(np.arange(a, b), H, C, Y)


def _synthetic_source(n, rows, d):
    count = -(-n // rows)
    return lambda: (synthetic_shard(i, n, rows, d) for i in range(count))


def store_shard(path, n: int, rows: int, i: int) -> Shard:
    """Shard ``i`` of the first ``n`` rows of a Zarr feature store, ``rows`` rows a shard."""
    from cpd_core.distributed import open_store

    root = open_store(path)
    a, b = i * rows, min((i + 1) * rows, n)
    return Shard(np.arange(a, b), root["H"][a:b].astype(np.float64), root["C"][a:b], root["Y"][a:b])


def _store_source(path, n, rows):
    count = -(-n // rows)
    return lambda: (store_shard(path, n, rows, i) for i in range(count))


def one(n: int, rows: int, d: int, store: str | None, workers: int, in_memory: bool) -> dict:
    """One measurement (run in its own process, so its peak memory is its own)."""
    out = {"n": n}
    source = _store_source(store, n, rows) if store else _synthetic_source(n, rows, d)
    if in_memory:
        from cpd_core import cpd

        shards = list(source())
        H, C, Y = (np.concatenate([getattr(s, k) for s in shards]) for k in ("H", "C", "Y"))
        del shards
        t = time.perf_counter()
        res = cpd(H, C, Y[:, 0])
        out.update(seconds=time.perf_counter() - t, r2_geom=res.r2_geom)
    elif workers:
        from cpd_core.distributed import client_for, reduce_on_workers

        client = client_for("local", n_workers=workers)
        load = ((lambda i: store_shard(store, n, rows, i)) if store else (lambda i: synthetic_shard(i, n, rows, d)))
        reduce = reduce_on_workers(client, -(-n // rows), load)

        t = time.perf_counter()
        res = stream_cpd(source, n=n, folds="hash", reduce=reduce)
        out.update(seconds=time.perf_counter() - t, r2_geom=res["y0"].r2_geom,
                   worker_peak_mib=max(client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss).values())
                   / 1024)
        client.close()
    else:
        t = time.perf_counter()
        res = stream_cpd(source, n=n, folds="hash")
        out.update(seconds=time.perf_counter() - t, r2_geom=res["y0"].r2_geom)
    out["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=float, nargs="+", default=[1e4, 1e5, 1e6, 1e7])
    parser.add_argument("--d", type=int, default=64, help="synthetic features (default 64)")
    parser.add_argument("--shard-rows", type=int, default=100_000)
    parser.add_argument("--store", default=None, help="a Zarr feature store instead of synthetic rows")
    parser.add_argument("--workers", type=int, default=0, help="also on a LocalCluster of this many workers")
    parser.add_argument("--in-memory-max", type=float, default=1e6, help="largest n for the in-memory comparison")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if serve(args.one, one):
        return

    print(f"# machine: {machine()}; rows: {args.store or f'synthetic, d = {args.d}'}, "
          f"shards of {args.shard_rows:,} rows, hash folds, ridge, 5 folds, 57 penalties, 2 targets")
    print(f"{'route':<22}{'n':>12}{'seconds':>10}{'s per 1e6 rows':>16}{'peak MiB':>10}{'worker MiB':>12}{'R²_geom':>9}")
    routes = [("streaming, 1 process", 0, False)]
    if args.workers:
        routes.append((f"streaming, {args.workers} workers", args.workers, False))
    routes.append(("in memory (cpd)", 0, True))
    for name, workers, in_memory in routes:
        for n in (int(x) for x in args.n):
            if in_memory and n > args.in_memory_max:
                continue
            spec = {"n": n, "rows": min(args.shard_rows, n), "d": args.d, "store": args.store, "workers": workers,
                    "in_memory": in_memory}
            try:
                r = measure(__file__, spec)
            except RuntimeError as e:
                print(f"{name:<22}{n:>12,} failed: {e}")
                continue
            worker = f"{r['worker_peak_mib']:>12.0f}" if "worker_peak_mib" in r else f"{'':>12}"
            print(f"{name:<22}{n:>12,}{r['seconds']:>10.1f}{r['seconds'] / n * 1e6:>16.1f}{r['peak_mib']:>10.0f}"
                  f"{worker}{r['r2_geom']:>9.3f}", flush=True)


if __name__ == "__main__":
    main()
