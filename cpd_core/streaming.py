r"""Streaming CPD: R²_comp and ridge R²_geom from shards of rows, never holding the feature matrix.

:func:`cpd_core.cpd`'s closed-form ridge (:mod:`cpd_core.ridge`) needs the rows of the features for
three things only; everything else is a function of the per-fold Gram matrices. So the rows are read
in shards, in three passes, and memory holds :math:`O(K\,(d+k+t)^2)` numbers whatever the number of
rows :math:`n` (:math:`K` folds, :math:`d` features, :math:`k` composition columns, :math:`t` targets):

1. **Sufficient statistics** (:class:`FoldStats`, one pass): for each fold :math:`g` the Gram matrix
   :math:`G_g = X_g^\top X_g` of :math:`X = [H - C B_0,\ C,\ \mathbf 1,\ Y - \bar y_0]`, the triangular
   factor of its composition rows (TSQR: the R of a QR of stacked R factors is the R of the stacked
   rows), column sums of :math:`H^2`, and column minima and maxima of :math:`H`. :math:`B_0` and
   :math:`\bar y_0` come from the first shard: a pilot composition fit that only conditions the Gram
   matrices (every residual the probe sees is invariant to it, :mod:`cpd_core.ridge`). Statistics of
   shards are added (:meth:`FoldStats.merge`), so workers can each take some shards and the results
   be reduced (:mod:`cpd_core.distributed`).
2. **Training ranges** (with the default standardisation): the column range of the geometric
   residual on each training set, which decides the near-constant columns and clips held-out values
   (:class:`~cpd_core.probes.ClippedStandardScaler`). The penalty of each outer fold is then chosen by
   the inner folds' held-out error, a quadratic form of the Gram matrices, for every target at once.
3. **Held-out scores**: the (clipped) predictions of every held-out row for every penalty, reduced to
   squared errors; the composition baseline's likewise; and, if asked (``oof=True``), the held-out
   prediction of each row at its chosen penalty, which the intervals resample (:math:`O(n)` numbers per
   target, no longer flat).

The scores equal the in-memory :func:`cpd_core.cpd` ``(probe="ridge")`` to round-off (tested to 1e-8).
What is not supported here: ``fit_projection="all"``, ``select="loo"`` (both need the rows), and
training sets with fewer rows than kept columns (the kernel form needs the rows: use :func:`cpd_core.cpd`).

A shard is a :class:`Shard`: the global row numbers of its rows (the fold of a row is a function of its
number, so any order or partition of the rows gives the same result), features, composition and
targets. Every pass checks that each row was seen exactly once (count, sum and sum of squares of
the row numbers).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd
import scipy.linalg

from cpd_core.decomposition import CPDResult, fold_labels
from cpd_core.errors import InputError
from cpd_core.projection import _pivoted_qr, residual_in_place
from cpd_core.ridge import RidgeFolds, as_alpha_grid

#: How rows are assigned to folds: ``"kfold"`` scikit-learn's shuffled ``KFold`` over all n rows (the
#: folds of :func:`cpd_core.cpd`; n bytes of labels), ``"hash"`` a seeded hash of the row number
#: (nothing stored; folds differ from :func:`cpd_core.cpd`'s and are balanced only on average).
FOLDS = ("kfold", "hash")


class Shard(NamedTuple):
    """Some rows of the data set.

    Attributes
    ----------
    rows : numpy.ndarray of int, shape (m,)
        Global row numbers, ``0 … n-1``.
    H : numpy.ndarray, shape (m, d)
        Pooled features.
    C : numpy.ndarray, shape (m, k)
        Composition matrix (intercept included, as for :func:`cpd_core.cpd`).
    Y : numpy.ndarray, shape (m, t)
        Targets, one column per target.
    """

    rows: np.ndarray
    H: np.ndarray
    C: np.ndarray
    Y: np.ndarray


def shards_of(H, C, Y, size: int) -> list[Shard]:
    """In-memory arrays cut into consecutive shards of ``size`` rows (tests and small data).

    Examples
    --------
    >>> s = shards_of(np.zeros((5, 2)), np.ones((5, 1)), np.arange(5.0), size=2)
    >>> [x.rows.tolist() for x in s], s[0].Y.shape
    ([[0, 1], [2, 3], [4]], (2, 1))
    """
    H, C, Y = np.asarray(H), np.asarray(C), np.asarray(Y)
    Y = Y[:, None] if Y.ndim == 1 else Y
    n = len(H)
    return [Shard(np.arange(i, min(i + size, n)), H[i:i + size], C[i:i + size], Y[i:i + size])
            for i in range(0, n, size)]


def _splitmix(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser of unsigned 64-bit integers (wraps modulo 2^64)."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


class FoldMap:
    """The fold of each global row number (see :data:`FOLDS`).

    Examples
    --------
    >>> fm = FoldMap(6, cv=3, seed=0)
    >>> fm(np.arange(6)).tolist() == fold_labels(6, 3, 0).tolist()
    True
    >>> h = FoldMap(100_000, cv=5, seed=1, how="hash"); bool(np.bincount(h(np.arange(100_000))).min() > 19_000)
    True
    """

    def __init__(self, n: int, cv: int = 5, seed: int = 0, how: str = "kfold"):
        if how not in FOLDS:
            raise InputError(f"folds must be one of {FOLDS}, got {how!r}")
        if isinstance(cv, bool) or not isinstance(cv, (int, np.integer)) or cv < 2:
            raise InputError(f"cv must be an integer >= 2, got {cv}")
        if n < 2 * cv:
            raise InputError(f"{n} rows are too few for {cv}-fold CV (need at least {2 * cv})")
        self.n, self.cv, self.seed, self.how = int(n), int(cv), int(seed), how
        self._labels = fold_labels(n, cv, seed).astype(np.int8) if how == "kfold" else None

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        if self._labels is not None:
            return self._labels[rows].astype(np.int64)
        key = _splitmix(np.uint64(self.seed) ^ np.uint64(0xD1B54A32D192ED03))
        return (_splitmix(rows.astype(np.uint64) ^ key) % np.uint64(self.cv)).astype(np.int64)


@dataclass
class Layout:
    """The problem's shape (from the first shard), and, once the statistics are in, the all-rows
    composition coefficients ``B`` (k, d) and target means (t,) that every later pass uses."""

    n: int
    d: int
    k: int
    t: int
    B: np.ndarray | None = None
    y_shift: np.ndarray | None = None

    @classmethod
    def of(cls, shard: Shard, n: int) -> "Layout":
        _, H, C, Y = _checked(shard, None, n)
        return cls(n, H.shape[1], C.shape[1], Y.shape[1])

    @property
    def p(self) -> int:
        return self.k + 1 + self.d + self.t


def _checked(shard, layout: Layout | None, n: int):
    """The shard's arrays as float64 2-D arrays, shapes and values checked; errors name the shard's rows."""
    if not isinstance(shard, tuple) or len(shard) != 4:
        raise InputError("a shard is a Shard(rows, H, C, Y) (or a 4-tuple in that order)")
    rows = np.asarray(shard[0])
    H, C, Y = (np.asarray(a, dtype=np.float64) for a in shard[1:])
    Y = Y[:, None] if Y.ndim == 1 else Y
    where = f"shard of rows {rows[:1].tolist()}…{rows[-1:].tolist()}" if rows.size else "an empty shard"
    if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
        raise InputError(f"{where}: rows must be a 1-D array of integer row numbers")
    m = len(rows)
    if H.ndim != 2 or C.ndim != 2 or Y.ndim != 2 or not (len(H) == len(C) == len(Y) == m):
        raise InputError(f"{where}: rows, H, C and Y must have {m} rows each (H and C 2-D), got "
                         f"{H.shape}, {C.shape}, {Y.shape}")
    if m and (rows.min() < 0 or rows.max() >= n):
        raise InputError(f"{where}: row numbers must lie in 0 … {n - 1}")
    if layout is not None and (H.shape[1], C.shape[1], Y.shape[1]) != (layout.d, layout.k, layout.t):
        raise InputError(f"{where}: {H.shape[1]} features, {C.shape[1]} composition columns and {Y.shape[1]} "
                         f"targets, the first shard had {layout.d}, {layout.k} and {layout.t}")
    for name, a in (("H", H), ("C", C), ("Y", Y)):
        if not np.isfinite(a).all():
            bad = rows[~np.isfinite(a).all(axis=1)]
            raise InputError(f"{where}: {name} contains NaN or inf at rows {bad[:10].tolist()}")
    return rows, H, C, Y


class RowTally:
    """Count, sum and sum of squares (mod 2^64) of the row numbers seen: each row exactly once?"""

    def __init__(self):
        self.count, self.s1, self.s2 = 0, np.uint64(0), np.uint64(0)

    def add(self, rows: np.ndarray) -> None:
        r = rows.astype(np.uint64)
        with np.errstate(over="ignore"):
            self.count += len(r)
            self.s1 = np.uint64(self.s1 + r.sum(dtype=np.uint64))
            self.s2 = np.uint64(self.s2 + (r * r).sum(dtype=np.uint64))

    def merge(self, other: "RowTally") -> "RowTally":
        with np.errstate(over="ignore"):
            self.count += other.count
            self.s1, self.s2 = np.uint64(self.s1 + other.s1), np.uint64(self.s2 + other.s2)
        return self

    def check(self, n: int, what: str) -> None:
        r = np.arange(n, dtype=np.uint64)
        with np.errstate(over="ignore"):
            want = (r.sum(dtype=np.uint64), (r * r).sum(dtype=np.uint64))
        if self.count != n or (self.s1, self.s2) != want:
            raise InputError(f"{what}: the shards held {self.count} rows, not each of the {n} rows exactly once "
                             "(a shard lost or read twice?)")


def _by_fold(labels: np.ndarray):
    """(fold, positions) for each fold present, positions into the shard."""
    order = np.argsort(labels, kind="stable")
    folds, starts = np.unique(labels[order], return_index=True)
    ends = np.append(starts[1:], len(order))
    return [(int(g), order[s:e]) for g, s, e in zip(folds, starts, ends)]


@dataclass
class FoldStats:
    r"""Pass 1: per-fold sufficient statistics of the shards seen (see the module docstring).

    ``R[g]`` is the triangular factor of fold ``g``'s rows of :math:`[C,\ \mathbf 1,\ H,\ Y]`
    (Householder QR, merged by QR of the stacked factors): its Gram matrix without squaring the rows'
    condition, and, in its leading block, the R factor of the fold's composition rows."""

    R: list                           # per fold, (<= p, p)
    h_sq: np.ndarray                  # (K, d) column sums of H^2
    h_min: np.ndarray                 # (K, d)
    h_max: np.ndarray                 # (K, d)
    tally: RowTally = field(default_factory=RowTally)

    @classmethod
    def empty(cls, layout: Layout, cv: int) -> "FoldStats":
        d = layout.d
        return cls([np.zeros((0, layout.p)) for _ in range(cv)], np.zeros((cv, d)),
                   np.full((cv, d), np.inf), np.full((cv, d), -np.inf))

    def add(self, shard: Shard, layout: Layout, folds: "FoldMap") -> "FoldStats":
        rows, H, C, Y = _checked(shard, layout, layout.n)
        self.tally.add(rows)
        for g, pos in _by_fold(folds(rows)):
            Hg = H[pos]
            self.R[g] = _stack_r(self.R[g], np.hstack([C[pos], np.ones((len(pos), 1)), Hg, Y[pos]]))
            self.h_sq[g] += np.einsum("ij,ij->j", Hg, Hg)
            np.minimum(self.h_min[g], Hg.min(axis=0), out=self.h_min[g])
            np.maximum(self.h_max[g], Hg.max(axis=0), out=self.h_max[g])
        return self

    def merge(self, other: "FoldStats") -> "FoldStats":
        """Add the statistics of other shards (same layout and folds)."""
        self.R = [_stack_r(a, b) for a, b in zip(self.R, other.R)]
        self.h_sq += other.h_sq
        np.minimum(self.h_min, other.h_min, out=self.h_min)
        np.maximum(self.h_max, other.h_max, out=self.h_max)
        self.tally.merge(other.tally)
        return self

    def counts(self, layout: Layout) -> np.ndarray:
        """Rows per fold (the squared norm of the ones column)."""
        k = layout.k
        return np.array([int(round(float(R[:, k] @ R[:, k]))) for R in self.R], dtype=np.int64)

    def finish(self, layout: Layout) -> np.ndarray:
        r"""Fill ``layout.B`` (least squares of :math:`H` on :math:`C` over all rows, the basic solution of a
        pivoted QR as :func:`~cpd_core.projection.residual_in_place`) and ``layout.y_shift`` (the target
        means), and return the per-fold Gram matrices of :math:`[H - CB,\ C,\ \mathbf 1,\ Y - \bar y]`
        (:class:`~cpd_core.ridge.RidgeFolds`' layout), formed from the triangular factors."""
        k, d, t, n = layout.k, layout.d, layout.t, layout.n
        R_all = _stack_r(np.zeros((0, layout.p)), np.vstack(self.R))
        Q2, R2, piv, r = _pivoted_qr(R_all[:, :k], max(n, k) * np.finfo(np.float64).eps)
        B = np.zeros((k, d))
        if r:
            B[piv[:r]] = scipy.linalg.solve_triangular(R2[:r, :r], (Q2.T @ R_all[:, k + 1:k + 1 + d])[:r])
        sums = np.array([R[:, k] @ R[:, k + 1 + d:] for R in self.R]).sum(axis=0) if t else np.zeros(0)
        layout.B, layout.y_shift = B, sums / n
        # columns [C, 1, H, Y] -> [H - C B, C, 1, Y - y_mean]
        T = np.zeros((layout.p, layout.p))
        T[k + 1:k + 1 + d, :d] = np.eye(d)
        T[:k, :d] = -B
        T[:k + 1, d:d + k + 1] = np.eye(k + 1)
        T[k + 1 + d:, d + k + 1:] = np.eye(t)
        T[k, d + k + 1:] = -layout.y_shift
        G = np.empty((len(self.R), layout.p, layout.p))
        for g, R in enumerate(self.R):
            M = R @ T
            G[g] = M.T @ M
        return G


def _stack_r(R: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """R factor of ``[R; rows]`` (TSQR step): what a QR of all the rows seen gives, up to row signs."""
    M = np.vstack([R, rows])
    return M if len(M) <= M.shape[1] else np.linalg.qr(M, mode="r")


class StreamedFolds(RidgeFolds):
    """:class:`~cpd_core.ridge.RidgeFolds` of one target built from :class:`FoldStats` instead of rows.

    The row-wise steps are replaced: the training composition's QR comes from the per-fold R
    factors, training ranges from pass 2, inner-fold errors from the Gram matrices; held-out rows
    are scored by :func:`stream_cpd`'s third pass (:meth:`plan` gives it the weights).
    """

    def __init__(self, stats: FoldStats, G: np.ndarray, layout: Layout, target: int, counts: np.ndarray,
                 bounds: dict, memo: dict, standardize: bool = True, clip: bool = True, rtol: float = 1e-8):
        d, k = layout.d, layout.k
        self.n, self.d, self.k = layout.n, d, k
        self.standardize, self.clip, self.rtol = standardize, clip, rtol
        self.n_folds = len(counts)
        self.fit_projection = "train"
        self.B = layout.B
        self.h_mean = sum(R[:, k] @ R[:, k + 1:k + 1 + d] for R in stats.R) / layout.n
        self.h_sq = stats.h_sq
        self.full_lo, self.full_hi = stats.h_min - self.h_mean, stats.h_max - self.h_mean
        idx = np.r_[0:d + k + 1, d + k + 1 + target]
        self.G = G[:, idx][:, :, idx]
        self._sl = (slice(0, d), slice(d, d + k + 1), d + k + 1)
        self.y_mean = float(layout.y_shift[target])
        # R factors of each fold's composition rows (the leading columns of a factor of fewer than p rows,
        # which _stack_r leaves as rows, are rows of C too)
        self._R = [_stack_r(np.zeros((0, k)), R[:, :k]) for R in stats.R]
        self._counts, self._bounds = counts, bounds
        self._memo, self._buf = memo, None

    def _train_qr(self, train):
        n_T = int(self._counts[list(train)].sum())
        M = np.vstack([self._R[g] for g in train])
        if len(M) == 0:
            M = np.zeros((1, self.k))
        _, R, piv, r = _pivoted_qr(M, max(n_T, self.k) * np.finfo(np.float64).eps)
        return R, piv, r

    def _train_bounds(self, train, E, full: bool):
        if full:
            return super()._train_bounds(train, E, full)
        if tuple(train) not in self._bounds:  # no standardisation: the range is not used
            return np.full(self.d, np.nan), np.full(self.d, np.nan)
        return self._bounds[tuple(train)]

    def _positions(self, folds):
        raise InputError("a training set has fewer rows than kept columns: the kernel form needs the rows; "
                         "use cpd_core.cpd in memory (at such n the features fit in memory)")

    def _standardized(self, idx, E, keep_idx, mu_k, sig_k):
        self._positions(None)

    def fit(self, *args, **kwargs):
        raise InputError("StreamedFolds holds no rows: held-out rows are scored by cpd_core.streaming.stream_cpd")

    def _inner_folds(self, prep, train, Sy, grid) -> np.ndarray:
        r""":meth:`RidgeFolds._inner_folds` from the Gram matrices: the held-out error of inner fold
        :math:`g`, :math:`e = y_0 - \hat y = X_g u - c`, is a quadratic form of :math:`G_g`."""
        h, a, yi = self._sl
        E, keep_idx, S = prep["E"], prep["keep_idx"], prep["S"]
        one = a.stop - 1
        if max(S[one, one] - self.G[g][one, one] for g in train) < keep_idx.size:
            self._positions(None)
        Ek = E[:, keep_idx]
        total, count = np.zeros(len(grid)), 0.0
        for g in train:
            Wk, c = self._inner_weights(prep, g, Sy, grid)
            u = np.zeros((yi + 1, len(grid)))
            u[keep_idx] = -Wk
            u[a] = Ek @ Wk
            u[yi] = 1.0
            Gg = self.G[g]
            sse = np.einsum("ij,ij->j", u, Gg @ u) - 2 * c * (Gg[one] @ u) + Gg[one, one] * c ** 2
            total += np.maximum(sse, 0.0)
            count += Gg[one, one]
        return total / count

    def plan(self, train, grid, geom: bool, select: str = "folds") -> dict:
        """Everything :meth:`RidgeFolds.fit` computes before it touches the held-out rows."""
        prep = self._prepared(list(train), geom)
        h, a, yi = self._sl
        train = list(train)
        Sy = self.G[train][:, :, yi].sum(axis=0)
        n_T = prep["n_T"]
        y_bar = Sy[a][-1] / n_T
        keep_idx, n_a = prep["keep_idx"], len(grid)
        if keep_idx.size == 0:
            return {"prep": prep, "y_bar": y_bar, "Wz": np.zeros((0, n_a)), "chosen": 0,
                    "crit": np.full(n_a, (Sy[yi] - n_T * y_bar ** 2) / n_T)}
        E, mu_k, sig_k, s, V = prep["E"], prep["mu_k"], prep["sig_k"], prep["s"], prep["V"]
        Ry = Sy[h] - E.T @ Sy[a]
        q = V.T @ ((Ry[keep_idx] - n_T * mu_k * y_bar) / sig_k)
        filt = 1.0 / (s[:, None] + grid[None, :])
        Wz = V @ (q[:, None] * filt)
        if select == "folds" and len(train) > 1:
            crit = self._inner_folds(prep, train, Sy, grid)
        elif n_a == 1:
            crit = np.zeros(1)
        else:  # gcv
            yc2 = max(Sy[yi] - n_T * y_bar ** 2, 0.0)
            rss = yc2 - np.sum((q ** 2)[:, None] * (s[:, None] + 2 * grid) * filt ** 2, axis=0)
            df = 1.0 + np.sum(s[:, None] * filt, axis=0)
            crit = (np.maximum(rss, 0.0) / n_T) / (1.0 - df / n_T) ** 2
        return {"prep": prep, "y_bar": y_bar, "Wz": Wz, "crit": crit, "chosen": int(np.argmin(crit))}


def _source(shards) -> Callable[[], Iterable]:
    """``shards`` as a function that iterates over them afresh (each pass reads them again)."""
    if callable(shards):
        return shards
    if isinstance(shards, (list, tuple)):
        return lambda: iter(shards)
    raise InputError("shards must be a list of Shard or a function returning an iterable of them "
                     "(an iterator can be read only once; every pass reads the shards again)")


def _comp_coef(G_raw: np.ndarray, folds: StreamedFolds, layout: Layout, train) -> np.ndarray:
    """Least-squares coefficients (k, t) of the raw targets on the training composition
    (:class:`~cpd_core.projection.CompositionProjector`'s basic solution, from the training QR of
    ``folds`` and the Gram matrices of ``[C, 1, H, Y]``, with one step of refinement)."""
    k = layout.k
    S = G_raw[list(train)].sum(axis=0)
    c, y = slice(0, k), slice(k + 1 + layout.d, None)
    CtY, CtC = S[c, y], S[c, c]
    R, piv, r = folds._train_qr(train)
    coef = np.zeros((k, layout.t))
    if r:
        Rr, p = R[:r, :r], piv[:r]

        def solve(rhs):
            return scipy.linalg.solve_triangular(Rr, scipy.linalg.solve_triangular(Rr, rhs, trans="T"))

        b = solve(CtY[p])
        b += solve(CtY[p] - CtC[np.ix_(p, p)] @ b)
        coef[p] = b
    return coef


def stream_cpd(shards, n: int, targets: Sequence[str] | None = None, cv: int = 5, seed: int = 0,
               alphas=None, select: str = "folds", standardize: bool = True, clip: bool = True,
               folds: str = "kfold", oof: bool = False, level: float = 0.95, n_boot: int = 1000,
               progress: bool = False, reduce: Callable | None = None) -> dict[str, CPDResult]:
    r"""Ridge CPD of every target from shards of rows (:func:`cpd_core.cpd` with ``probe="ridge"``).

    Parameters
    ----------
    shards : list of Shard, or callable
        The rows, in any order and partition; a callable returns a fresh iterable of shards for each
        pass (e.g. reading them from a Zarr store, :func:`cpd_core.distributed.zarr_shards`).
    n : int
        Number of rows in all: row numbers are ``0 … n-1``.
    targets : sequence of str, optional
        Names of the columns of ``Y`` (default ``y0, y1, …``).
    cv, seed, alphas, select, standardize, clip, level, n_boot
        As in :func:`cpd_core.cpd` (``select`` "folds" or "gcv").
    folds : {"kfold", "hash"}
        :data:`FOLDS`: ``"kfold"`` gives :func:`cpd_core.cpd`'s folds.
    oof : bool
        Keep each row's held-out predictions (and the targets): :math:`O(n)` memory per target, and
        the results get intervals (:attr:`CPDResult.ci`). Without, ``ci`` raises.
    progress : bool
        A progress bar per pass.
    reduce : callable, optional
        ``reduce(pass_name, fn, empty)`` computes one pass over all shards and returns the merged
        result; default: in this process, shard after shard. :mod:`cpd_core.distributed` passes one
        that maps the shards over Dask workers.

    Returns
    -------
    dict of str to CPDResult
        Per target; ``probe`` "ridge", ``oof`` and ``y`` only with ``oof=True``.

    Examples
    --------
    >>> from cpd_core.synthetic import planted
    >>> from cpd_core import cpd
    >>> d = planted(n=600, seed=0)
    >>> res = stream_cpd(shards_of(d.H, d.C, d.y, size=128), n=600, targets=["y"])["y"]
    >>> ref = cpd(d.H, d.C, d.y)
    >>> bool(abs(res.r2_geom - ref.r2_geom) < 1e-8), bool(abs(res.r2_comp - ref.r2_comp) < 1e-8)
    (True, True)
    """
    from tqdm import tqdm

    if select not in ("folds", "gcv"):
        raise InputError(f"streaming CPD selects the penalty by 'folds' or 'gcv', got {select!r} "
                         "(leave-one-out needs the rows: cpd_core.cpd)")
    if not 0 < level < 1:
        raise InputError(f"level must be in (0, 1), got {level}")
    grid = as_alpha_grid(alphas)
    fm = FoldMap(n, cv, seed, folds)
    source = _source(shards)
    first = next(iter(source()), None)
    if first is None:
        raise InputError("no shards: nothing to probe")
    layout = Layout.of(first, n)
    names = list(targets) if targets is not None else [f"y{i}" for i in range(layout.t)]
    if len(names) != layout.t:
        raise InputError(f"{len(names)} target names for {layout.t} target columns")

    def local(name, fn, empty):
        acc = empty()
        for shard in tqdm(source(), desc=f"streaming CPD: {name}", unit="shard", disable=not progress):
            acc = merge(acc, fn(shard))
        return acc

    run = reduce or local

    # pass 1: sufficient statistics
    stats = run("statistics", lambda s: FoldStats.empty(layout, cv).add(s, layout, fm),
                lambda: FoldStats.empty(layout, cv))
    stats.tally.check(n, "statistics pass")
    counts = stats.counts(layout)
    G = stats.finish(layout)                                  # fills layout.B and layout.y_shift
    G_raw = np.array([R.T @ R for R in stats.R])
    one = layout.d + layout.k
    for t, name in enumerate(names):
        if G[:, one + 1 + t, one + 1 + t].sum() <= 1e-24 * n * max(layout.y_shift[t] ** 2, 1.0):
            raise InputError(f"target {name!r} is constant: R² is undefined")
    splits = [[g for g in range(cv) if g != f] for f in range(cv)]
    memo: dict = {}
    folds_of = [StreamedFolds(stats, G, layout, t, counts, {}, memo, standardize, clip) for t in range(layout.t)]
    geo = [folds_of[0].geom_coef(tr) for tr in splits]            # (E, inside) per outer fold

    # pass 2: training ranges of the geometric residual
    if standardize:
        def ranges(shard):
            rows, H, C, Y = _checked(shard, layout, n)
            out = _Ranges.empty(cv, layout.d)
            out.tally.add(rows)
            for g, pos in _by_fold(fm(rows)):
                H0 = H[pos] - C[pos] @ layout.B
                A = np.column_stack([C[pos], np.ones(len(pos))])
                for f in range(cv):
                    if f != g:
                        R = H0 - A @ geo[f][0]
                        np.minimum(out.lo[f], R.min(axis=0), out=out.lo[f])
                        np.maximum(out.hi[f], R.max(axis=0), out=out.hi[f])
            return out

        rng = run("training ranges", ranges, lambda: _Ranges.empty(cv, layout.d))
        rng.tally.check(n, "training-range pass")
        for f, tr in enumerate(splits):
            folds_of[0]._bounds[tuple(tr)] = (rng.lo[f], rng.hi[f])
        for sf in folds_of[1:]:
            sf._bounds = folds_of[0]._bounds

    plans = {(t, f, key): folds_of[t].plan(splits[f], grid, geom=(key == "geom"), select=select)
             for t in range(layout.t) for f in range(cv) for key in ("full", "geom")}
    comp = [_comp_coef(G_raw, folds_of[0], layout, tr) for tr in splits]

    # pass 3: held-out scores
    def score(shard):
        rows, H, C, Y = _checked(shard, layout, n)
        out = _Scores.empty(cv, layout.t, len(grid))
        out.tally.add(rows)
        for f, pos in _by_fold(fm(rows)):
            Cf, Yf = C[pos], Y[pos]
            A = np.column_stack([Cf, np.ones(len(pos))])
            H0 = H[pos] - Cf @ layout.B
            Y0 = Yf - layout.y_shift
            kept = {"rows": rows[pos]}
            pc = Cf @ comp[f]
            out.sse_comp[f] += ((Yf - pc) ** 2).sum(axis=0)
            if oof:
                kept["comp"], kept["y"] = pc, Yf
            for key in ("full", "geom"):
                P0 = plans[(0, f, key)]["prep"]
                keep_idx = P0["keep_idx"]
                if keep_idx.size:
                    R = H0 - A @ P0["E"]
                    Z = (R if keep_idx.size == layout.d else R[:, keep_idx]) - P0["mu_k"]
                    Z /= P0["sig_k"]
                    if standardize and clip:
                        lo, hi = P0["lo"][keep_idx], P0["hi"][keep_idx]
                        np.clip(Z, (lo - P0["mu_k"]) / P0["sig_k"], (hi - P0["mu_k"]) / P0["sig_k"], out=Z)
                    ZW = Z @ np.hstack([plans[(t, f, key)]["Wz"] for t in range(layout.t)])
                preds = []
                for t in range(layout.t):
                    pl = plans[(t, f, key)]
                    P = pl["y_bar"] + (ZW[:, t * len(grid):(t + 1) * len(grid)] if keep_idx.size
                                       else np.zeros((len(pos), len(grid))))
                    out.sse[key][f, t] += ((Y0[:, t:t + 1] - P) ** 2).sum(axis=0)
                    preds.append(P[:, pl["chosen"]] + layout.y_shift[t])
                if oof:
                    kept[key] = np.column_stack(preds)
            if oof:
                out.kept.append(kept)
        return out

    scores = run("held-out scores", score, lambda: _Scores.empty(cv, layout.t, len(grid)))
    scores.tally.check(n, "held-out pass")

    rank = _pivoted_qr(np.vstack(folds_of[0]._R), max(n, layout.k) * np.finfo(np.float64).eps)[3]
    if oof:
        fold_of = fm(np.arange(n))
        arrays = {key: np.empty((n, layout.t)) for key in ("y", "comp", "full", "geom")}
        for kept in scores.kept:
            for key in arrays:
                arrays[key][kept["rows"]] = kept[key]
    results = {}
    yi = lambda t: layout.d + layout.k + 1 + t  # noqa: E731
    for t, name in enumerate(names):
        rows, curves = [], []
        for f in range(cv):
            Gf = G[f]
            sst = Gf[yi(t), yi(t)] - Gf[one, yi(t)] ** 2 / Gf[one, one]
            row, curve = {"fold": f}, {"fold": f, "alpha": grid}
            for key in ("full", "geom"):
                r2 = 1.0 - scores.sse[key][f, t] / sst
                chosen = plans[(t, f, key)]["chosen"]
                row[f"r2_{key}"], row[f"alpha_{key}"] = float(r2[chosen]), float(grid[chosen])
                curve[f"r2_{key}"] = r2
            row["r2_comp"] = float(1.0 - scores.sse_comp[f, t] / sst)
            rows.append(row)
            curves.append(pd.DataFrame(curve))
        table = pd.DataFrame(rows).set_index("fold")[["r2_full", "r2_comp", "r2_geom", "alpha_full", "alpha_geom"]]
        results[name] = CPDResult(
            r2_full=float(table["r2_full"].mean()), r2_comp=float(table["r2_comp"].mean()),
            r2_geom=float(table["r2_geom"].mean()), folds=table, probe="ridge", cv=int(cv), seed=seed,
            fit_projection="train", n_samples=n, n_features=layout.d, composition_rank=rank,
            y=arrays["y"][:, t].copy() if oof else None, fold_of=fold_of if oof else None,
            oof={key: arrays[key][:, t].copy() for key in ("comp", "full", "geom")} if oof else {},
            curve=pd.concat(curves, ignore_index=True), level=level, n_boot=n_boot)
    return results


@dataclass
class _Ranges:
    lo: np.ndarray
    hi: np.ndarray
    tally: RowTally = field(default_factory=RowTally)

    @classmethod
    def empty(cls, cv, d):
        return cls(np.full((cv, d), np.inf), np.full((cv, d), -np.inf))

    def merge(self, other):
        np.minimum(self.lo, other.lo, out=self.lo)
        np.maximum(self.hi, other.hi, out=self.hi)
        self.tally.merge(other.tally)
        return self


@dataclass
class _Scores:
    sse: dict
    sse_comp: np.ndarray
    kept: list
    tally: RowTally = field(default_factory=RowTally)

    @classmethod
    def empty(cls, cv, t, n_a):
        return cls({key: np.zeros((cv, t, n_a)) for key in ("full", "geom")}, np.zeros((cv, t)), [])

    def merge(self, other):
        for key in self.sse:
            self.sse[key] += other.sse[key]
        self.sse_comp += other.sse_comp
        self.kept.extend(other.kept)
        self.tally.merge(other.tally)
        return self


def merge(a, b):
    """Merge two partial results of the same pass (statistics, ranges or scores)."""
    return a.merge(b)


__all__ = ["FOLDS", "FoldMap", "FoldStats", "Layout", "RowTally", "Shard", "StreamedFolds", "merge", "shards_of",
           "stream_cpd"]
