"""Benchmark: extraction throughput, the engine's overhead, and memory over all of QM9 (prints figures; not a test).

For each model: molecules per second through ``cpd_core.extract.features`` (uncached) on a QM9
subset, and the same size-sorted batches through the bare model call plus pooling on batches
built beforehand, so the engine's own cost (batch assembly, host-device copies, bookkeeping)
reads off as an overhead (target: at most 10 %). Runs on CPU, and on CUDA when present.

With ``--memory-model``, each ``--memory-n`` extraction runs in a fresh process through the
sharded cache with ``load=False`` into a temporary cache, and its peak resident memory is
printed: pooled features stream to disk shard by shard, so the peak should not grow with
the number of molecules.

    python benchmarks/extract_throughput.py --n 2000 --models ani2x-aev ani2x so3lr
    python benchmarks/extract_throughput.py --models none --memory-model ani2x-aev --memory-n 10000 130831
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

from cpd_core.datasets import load_qm9
from cpd_core.extract import features
from cpd_core.pooling import invariant_pool
from cpd_core.models import load
from cpd_core.models.base import AtomsBatch


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def bare_forward(featurizer, numbers, positions, batch_size, device) -> float:
    """Seconds for the model call plus pooling on size-sorted batches already built and on the device."""
    order = np.argsort([len(z) for z in numbers], kind="stable")
    batches = [AtomsBatch.from_arrays([numbers[i] for i in order[s:s + batch_size]],
                                      [positions[i] for i in order[s:s + batch_size]], device=device)
               for s in range(0, len(order), batch_size)]
    _sync(device)
    start = time.perf_counter()
    with torch.no_grad():
        for b in batches:
            invariant_pool(featurizer(b), b.batch, b.n_structures)
    _sync(device)
    return time.perf_counter() - start


def throughput(names, n, batch_size, devices) -> None:
    qm9 = load_qm9(n=n, seed=0, targets=["gap"])
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    print(f"QM9 n={len(qm9)}, batch {batch_size}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads{gpu}")
    print(f"{'model':26s} {'device':6s} {'engine mol/s':>13s} {'bare mol/s':>11s} {'overhead':>9s}")
    for name in names:
        featurizer = load(name)
        ok = set(featurizer.elements)
        rows = [i for i, z in enumerate(qm9.numbers) if set(z.tolist()) <= ok]  # e.g. no F for HCNO models
        supported = qm9.select(rows)
        numbers, positions = supported.numbers, supported.positions
        for device in devices:
            featurizer.to(device, torch.float32)
            features(featurizer, supported.select(np.arange(64)), device=str(device), progress=False, cache=False)
            _sync(device)
            start = time.perf_counter()
            features(featurizer, supported, batch_size=batch_size, device=str(device), progress=False, cache=False)
            _sync(device)
            engine = time.perf_counter() - start
            bare = bare_forward(featurizer, numbers, positions, batch_size, device)
            print(f"{name:26s} {device.type:6s} {len(numbers) / engine:13.1f} {len(numbers) / bare:11.1f} "
                  f"{engine / bare - 1:9.1%}", flush=True)
        del featurizer


def _memory_child(model: str, n: int, batch_size: int, device: str) -> None:
    qm9 = load_qm9(n=None if n >= 130_831 else n, seed=0, targets=["gap"])
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    f = load(model, device=device)
    start = time.perf_counter()
    paths = features(f, qm9, batch_size=batch_size, device=device, progress=False, load=False)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"n": len(qm9), "seconds": seconds, "peak_mib": peak, "after_loading_qm9_mib": base,
                      "shards": len(paths)}))


def memory(model: str, sizes, batch_size: int, device: str) -> None:
    print(f"\npeak resident memory extracting {model} through the sharded cache (load=False), fresh process each:")
    print(f"{'molecules':>10s} {'seconds':>9s} {'mol/s':>8s} {'peak MiB':>9s} {'QM9 loaded MiB':>15s} {'shards':>7s}")
    for n in sizes:
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "CPD_CACHE_DIR": cache}  # features (and a parsed QM9) go to a temp cache
            # parse QM9 into that cache first, in its own process: the parse's peak is not the engine's
            subprocess.run([sys.executable, "-c", "from cpd_core.datasets import load_qm9; load_qm9(n=1)"],
                           env=env, check=True, capture_output=True)
            out = subprocess.run([sys.executable, __file__, "--child", model, str(n), str(batch_size), device],
                                 env=env, check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(f"{r['n']:10d} {r['seconds']:9.1f} {r['n'] / r['seconds']:8.0f} {r['peak_mib']:9.0f} "
              f"{r['after_loading_qm9_mib']:15.0f} {r['shards']:7d}", flush=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _memory_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
        return
    from cpd_core.experiments.model_gradient import default_models

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="QM9 molecules for the throughput table")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--models", nargs="+", default=None,
                        help="registry names (default: every offline model without a caveat); 'none' skips")
    parser.add_argument("--memory-model", default=None, help="model for the memory measurement")
    parser.add_argument("--memory-n", type=int, nargs="+", default=[10_000, 130_831])
    args = parser.parse_args()

    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    names = default_models() if args.models is None else [m for m in args.models if m != "none"]
    if names:
        throughput(names, args.n, args.batch_size, devices)
    if args.memory_model:
        memory(args.memory_model, args.memory_n, args.batch_size, "cuda" if torch.cuda.is_available() else "cpu")


if __name__ == "__main__":
    main()
