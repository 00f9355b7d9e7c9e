"""Benchmark: extraction time against structures per forward pass (prints figures; not a test).

``cpd_core.extract.features`` (uncached) on a seeded QM9 subset for each model and batch size.
On a CPU, large batches of molecular graphs spill the caches (every model's per-edge tensors
grow with the batch): the default batch size per device kind (``cpd_core.extract.BATCH_SIZE``)
comes from this table. Measured on the project's 2-core CPU, 200 molecules, seconds
(256 / 64 / 16): SO3Net 17.3 / 12.6 / 10.4, SevenNet-0 8.0 / 6.3 / 5.2, CHGNet 6.5 / 4.6 / 4.2,
DimeNet++ 3.8 / 3.4 / 2.2, ViSNet 3.0 / 2.3 / 1.6 (SO3Net with matgl's own convolution: cpd_core's
contraction, since 2026-12-04, is 5-6x faster, ``benchmarks/so3_convolution.py``).

    python benchmarks/batch_size.py --n 200 --models so3net-ani1x sevennet-0 --batch-sizes 256 64 16
"""

from __future__ import annotations

import argparse
import time

from cpd_core.datasets import load_qm9
from cpd_core.extract import features
from cpd_core.models import load


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200, help="QM9 molecules (seeded subset)")
    p.add_argument("--models", nargs="+", default=["so3net-ani1x", "sevennet-0", "chgnet-0.3.0"])
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[256, 64, 16, 4])
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    data = load_qm9(n=args.n, seed=0)
    print(f"{'model':<22}" + "".join(f"{b:>9}" for b in args.batch_sizes) + "   (seconds)")
    for name in args.models:
        model = load(name, device=args.device)
        row = []
        for b in args.batch_sizes:
            start = time.perf_counter()
            features(model, data, device=args.device, batch_size=b, cache=False, progress=False,
                     skip_unsupported=True)
            row.append(time.perf_counter() - start)
        print(f"{name:<22}" + "".join(f"{t:>9.2f}" for t in row), flush=True)


if __name__ == "__main__":
    main()
