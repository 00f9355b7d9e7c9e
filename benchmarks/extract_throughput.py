"""Benchmark: feature-extraction throughput and the engine's overhead (prints figures; not a test).

For each registered featurizer: molecules per second through ``cpd_core.extract.pooled_features``
on QM9, and the same batches through the bare featurizer call plus pooling, so the engine's
overhead (padding, sorting, copies) can be read off. Runs on CPU, and on CUDA when present.

    python benchmarks/extract_throughput.py --n 5000
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from cpd_core.datasets import load_qm9
from cpd_core.extract import pool_atoms, pooled_features
from cpd_core.models import REGISTRY, load


def bare_forward(featurizer, numbers, positions, batch_size, device):
    """The featurizer on pre-padded, pre-sorted batches already on the device: the floor to compare with."""
    order = np.argsort([len(z) for z in numbers], kind="stable")
    batches = []
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        width = max(len(numbers[i]) for i in idx)
        z = torch.zeros((len(idx), width), dtype=torch.int64)
        r = torch.zeros((len(idx), width, 3))
        for row, i in enumerate(idx):
            z[row, :len(numbers[i])] = torch.as_tensor(numbers[i])
            r[row, :len(numbers[i])] = torch.as_tensor(positions[i], dtype=torch.float32)
        batches.append((z.to(device), r.to(device)))
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.no_grad():
        for z, r in batches:
            mask = z > 0
            for feats in featurizer(z, r, mask).values():
                pool_atoms(feats, mask)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="QM9 molecules")
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()

    qm9 = load_qm9(n=args.n, seed=0, targets=["gap"])
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(f"QM9 n={len(qm9)}, batch {args.batch_size}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads")
    print(f"{'model':14s} {'device':6s} {'engine mol/s':>13s} {'bare mol/s':>11s} {'overhead':>9s}")
    for name in REGISTRY:
        featurizer = load(name)
        for device in devices:
            pooled_features(featurizer, qm9.numbers[:64], qm9.positions[:64], device=str(device),
                            progress=False)  # warm-up
            start = time.perf_counter()
            pooled_features(featurizer, qm9.numbers, qm9.positions, batch_size=args.batch_size,
                            device=str(device), progress=False)
            engine = time.perf_counter() - start
            bare = bare_forward(featurizer, qm9.numbers, qm9.positions, args.batch_size, device)
            print(f"{name:14s} {device.type:6s} {len(qm9) / engine:13.0f} {len(qm9) / bare:11.0f} "
                  f"{engine / bare - 1:9.1%}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory of this process: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
