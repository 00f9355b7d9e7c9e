"""Benchmark: SO3Net extraction with matgl's SO3Convolution against cpd_core's contraction (prints figures; not a test).

``cpd_core.models.matgl`` swaps every SO3Net convolution for :func:`cpd_core.models.matgl.so3_convolution`
(the same sum, grouped by the filter's degree: batched 9 x 9 matmuls instead of an E x 83 x F array).
This script extracts the same QM9 molecules (uncached) both ways and prints the wall time of each and the
largest difference between their blocks, relative to the block's largest value. Measured on the
project's 2-core CPU, 500 molecules, batches of 16, two torch threads: 18.4 s with matgl's sum, 3.5 s
with the contraction; 8e-7 relative (float32).

    python benchmarks/so3_convolution.py --n 500 [--model so3net-random] [--device cuda]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main(argv=None):
    from matgl.layers._so3 import SO3Convolution

    from cpd_core.datasets import load_qm9
    from cpd_core.extract import features
    from cpd_core.models import load

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=500, help="QM9 molecules (seeded subset)")
    p.add_argument("--model", default="so3net-ani1x", help="an SO3Net model of the registry")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    data = load_qm9(n=args.n, seed=0)
    model = load(args.model, device=args.device)
    convs = [m for m in model.module.modules() if isinstance(m, SO3Convolution)]
    if not convs:
        raise SystemExit(f"{args.model} has no SO3Convolution")
    fast_class = type(convs[0])
    out, times = {}, {}
    for label, cls in (("cpd_core contraction", fast_class), ("matgl's sum", SO3Convolution)):
        for conv in convs:
            conv.__class__ = cls
        features(model, data, device=args.device, cache=False, skip_unsupported=True, progress=False)  # warm-up
        start = time.perf_counter()
        out[label] = dict(features(model, data, device=args.device, cache=False, skip_unsupported=True,
                                   progress=False))
        times[label] = time.perf_counter() - start
    a, b = out.values()
    rel = max(float(np.abs(a[k] - b[k]).max() / max(np.abs(b[k]).max(), 1e-30)) for k in b)
    print(f"{args.model}, {args.n} QM9 molecules, {args.device}:")
    for label, t in times.items():
        print(f"  {label:22s} {t:7.2f} s")
    slow, fast = times["matgl's sum"], times["cpd_core contraction"]
    print(f"  speed-up {slow / fast:.1f}x; "
          f"largest block difference {rel:.1e} of the block's largest value")


if __name__ == "__main__":
    main()
