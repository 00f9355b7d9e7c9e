"""Extraction throughput per Dask worker against the single-process engine (prints figures; not a test).

The same QM9 molecules go through :func:`cpd_core.distributed.extract_to_zarr` — one task per shard:
featurize the shard's molecules with the engine (:func:`cpd_core.extract.features`) and write its rows
into a Zarr store — in three ways, each in a fresh process with one compute thread per worker
(``OMP_NUM_THREADS=1`` and one torch thread, as Dask's nanny and ``extract_to_zarr`` give its workers):

* ``engine``: :func:`cpd_core.extract.features` on all molecules at once, into memory (no store), with one
  torch thread (and, for context, with every core);
* ``1 process``: ``extract_to_zarr(client=None)``, the shards one after another in this process;
* ``W workers``: ``extract_to_zarr(client=...)`` on a :class:`distributed.LocalCluster` of W worker
  processes of one thread each.

Each route runs ``--repeats`` times (fresh processes, routes interleaved, so that a slow spell of a
shared machine falls on all of them) and the median is printed with the range. It prints molecules
per second and, for the workers, molecules per second per worker and its ratio to
the single-process engine. The target of the design (issue 15): per-worker throughput within 10 % of
the engine's. Timings include building the model (once per process or worker) and writing the store,
not starting the cluster and importing torch and the engine on its workers (printed apart, as the
other routes import them before their clock starts). On a machine with fewer cores than workers the per-worker
figure measures the oversubscription, not Dask.

Usage::

    python benchmarks/extract_workers.py                                 # ani2x-aev, 32,768 molecules, 1 and 2 workers
    python benchmarks/extract_workers.py --model ani2x --n 4096 --shard-rows 512 --workers 1 2
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

from fresh import machine, measure, serve


def _warm() -> None:
    import cpd_core.distributed  # noqa: F401
    import cpd_core.extract  # noqa: F401
    import torch  # noqa: F401


def one(route: str, model: str, n: int, shard_rows: int, workers: int, threads: int = 1) -> dict:
    """One measurement, in its own process."""
    import torch

    torch.set_num_threads(1)
    from cpd_core.distributed import client_for, extract_to_zarr

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        if route == "engine":
            from cpd_core.datasets import load_qm9
            from cpd_core.extract import features
            from cpd_core.models.lazy import load_lazy

            t = time.perf_counter()
            data = load_qm9(n=n, seed=0)
            features(load_lazy(model, device="cpu"), data, device="cpu", progress=False, cache=False, threads=threads)
            out["seconds"] = time.perf_counter() - t
        elif route == "process":
            t = time.perf_counter()
            extract_to_zarr(model, f"{tmp}/s.zarr", n=n, shard_rows=shard_rows, device="cpu", progress=False,
                            threads=threads)
            out["seconds"] = time.perf_counter() - t
        else:
            t = time.perf_counter()
            client = client_for("local", n_workers=workers, threads_per_worker=1)
            client.run(_warm)  # imports, as the other routes' process has them before its clock starts
            out["startup"] = time.perf_counter() - t
            t = time.perf_counter()
            extract_to_zarr(model, f"{tmp}/s.zarr", n=n, shard_rows=shard_rows, device="cpu", progress=False,
                            client=client)
            out["seconds"] = time.perf_counter() - t
            client.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ani2x-aev")
    parser.add_argument("--n", type=int, default=32_768)
    parser.add_argument("--shard-rows", type=int, default=2048)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each route (median printed)")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if serve(args.one, one):
        return

    print(f"# machine: {machine()}; {args.model}, {args.n:,} QM9 molecules, shards of "
          f"{args.shard_rows:,}, one thread per process or worker, CPU, median of {args.repeats} runs")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    routes = [("engine (in memory)", "engine", 1), ("1 process, store", "process", 1)]
    cores = os.cpu_count() or 1
    routes += [(f"{w} Dask worker{'s' * (w > 1)}, store", "workers", w) for w in args.workers]
    if cores > 1:
        routes.append((f"engine, {cores} threads", "engine", 1))
    runs = {name: [] for name, _, _ in routes}
    for _ in range(args.repeats):
        for name, route, w in routes:
            spec = {"route": route, "model": args.model, "n": args.n, "shard_rows": args.shard_rows, "workers": w,
                    "threads": cores if name.endswith("threads") else 1}
            try:
                runs[name].append(measure(__file__, spec, env))
            except RuntimeError as e:
                sys.exit(f"{name} failed: {e}")
    print(f"{'route':<26}{'seconds':>9}{'(range)':>14}{'mol/s':>9}{'mol/s per worker':>18}{'vs engine':>11}"
          f"{'cluster start s':>17}")
    base = None
    for name, route, w in routes:
        seconds = sorted(r["seconds"] for r in runs[name])
        median = seconds[len(seconds) // 2]
        rate = args.n / median
        base = base or rate
        start = runs[name][0].get("startup")
        start = f"{start:>17.1f}" if start is not None else f"{'':>17}"
        spread = f"{seconds[0]:.1f}-{seconds[-1]:.1f}"
        print(f"{name:<26}{median:>9.1f}{spread:>14}{rate:>9.0f}{rate / w:>18.0f}{rate / w / base:>11.2f}{start}")


if __name__ == "__main__":
    main()
