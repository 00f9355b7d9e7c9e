"""Closed-form ridge CPD against the row-wise scikit-learn route: time and R², on one machine.

Both routes score the same shuffled 5 folds, the same 20 penalties, and both feature sets:
raw features (R²_full) and the geometric residual with the composition projection fit on each
training fold (R²_geom).

- scikit-learn: ``cross_validate(make_pipeline([projection,] StandardScaler(), Ridge(alpha)))``
  once per penalty and feature set (200 fits);
- this project: ``cpd_core.cpd(H, C, y, probe="ridge", alphas=grid, clip=False)``, which scores
  every penalty on every fold from one pass over the rows (plain z-scoring, as StandardScaler), with
  the penalty chosen by inner folds (the default), by exact leave-one-out and by GCV.

It prints both times, their ratio, and the largest difference between the two routes' held-out R²
over folds × penalties × feature sets. The composition and target are QM9's own (all 130,831
molecules by default: element counts + intercept, HOMO-LUMO gap); the features are synthetic,
512 columns mixing composition, a few geometry-like latents and noise (``--features`` takes an
``.npy`` file of real pooled features with one row per QM9 molecule instead).

Usage::

    python benchmarks/probe_speed.py                 # 130,831 x 512, ~5-10 min on 2 CPU cores
    python benchmarks/probe_speed.py --n 20000       # a quick look
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.model_selection import KFold, cross_validate
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from cpd_core import composition_matrix, cpd
from cpd_core.datasets.qm9 import load_qm9
from cpd_core.projection import CompositionProjector


class TrainFoldProjection(TransformerMixin, BaseEstimator):
    """Columns ``[H | C]`` in, the residual of H after the composition fit on the rows seen in fit."""

    def __init__(self, d: int):
        self.d = d

    def fit(self, X, y=None):
        self.proj_ = CompositionProjector().fit(X[:, self.d:], X[:, :self.d])
        return self

    def transform(self, X):
        return self.proj_.transform(X[:, self.d:], X[:, :self.d])


def synthetic_features(C: np.ndarray, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    latents = rng.normal(size=(len(C), 8))
    return (C @ rng.normal(size=(C.shape[1], d)) * 0.3 + latents @ rng.normal(size=(8, d))
            + 0.5 * rng.normal(size=(len(C), d)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=None, help="QM9 molecules (default: all 130,831)")
    parser.add_argument("--d", type=int, default=512, help="synthetic feature columns")
    parser.add_argument("--features", help=".npy of real pooled features, one row per QM9 molecule")
    parser.add_argument("--alphas", type=int, default=20, help="penalties (log-spaced 1e-3 ... 1e5)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    qm9 = load_qm9(n=args.n, seed=args.seed, targets=["gap"])
    C = composition_matrix(qm9.numbers)
    y = qm9.targets["gap"].to_numpy()
    H = np.load(args.features)[: len(y)] if args.features else synthetic_features(C, args.d, args.seed)
    grid = np.logspace(-3, 5, args.alphas)
    folds = KFold(5, shuffle=True, random_state=args.seed)
    print(f"n = {len(y):,} molecules, d = {H.shape[1]} features, {len(grid)} penalties, 5 folds; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores")

    times = {}
    for select in ("folds", "loo", "gcv"):
        t0 = time.perf_counter()
        res = cpd(H, C, y, probe="ridge", cv=5, seed=args.seed, alphas=grid, clip=False, n_boot=1, select=select)
        times[select] = time.perf_counter() - t0
        if select == "folds":
            ours = res
        print(f"cpd_core closed form, {len(grid)} penalties, full + geom, penalty by {select:5}: "
              f"{times[select]:8.1f} s", flush=True)
    t0 = time.perf_counter()
    default = cpd(H, C, y, probe="ridge", cv=5, seed=args.seed)
    default.ci
    t_default = time.perf_counter() - t0
    print(f"cpd_core default (57 penalties, clipped, inner folds, 95% CI):  {t_default:8.1f} s", flush=True)

    HC = np.hstack([H, C])
    t0 = time.perf_counter()
    worst = 0.0
    for alpha in grid:
        for key, pipe in (("full", make_pipeline(StandardScaler(), Ridge(alpha=alpha))),
                          ("geom", make_pipeline(TrainFoldProjection(H.shape[1]), StandardScaler(),
                                                 Ridge(alpha=alpha)))):
            X = H if key == "full" else HC
            r2 = cross_validate(pipe, X, y, cv=folds, scoring="r2")["test_score"]
            mine = ours.curve[np.isclose(ours.curve["alpha"], alpha)].sort_values("fold")[f"r2_{key}"]
            worst = max(worst, float(np.max(np.abs(mine.to_numpy() - r2))))
    t_sk = time.perf_counter() - t0
    print(f"scikit-learn cross_validate per penalty (200 fits):      {t_sk:8.1f} s")
    print(f"speed-up: {t_sk / times['folds']:.0f}x (inner folds, the default), {t_sk / times['loo']:.0f}x (LOO), "
          f"{t_sk / times['gcv']:.0f}x (GCV)   "
          f"largest |R² difference| over folds x penalties x sets: {worst:.1e}")
    print(f"R²_geom (default) = {default.r2_geom:.4f}  95% CI [{default.ci['r2_geom'][0]:.4f}, "
          f"{default.ci['r2_geom'][1]:.4f}]")


if __name__ == "__main__":
    main()
