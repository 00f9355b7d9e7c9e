r"""Intervals on CPD scores, and paired differences between two results.

A CPD score is the mean over folds of the held-out :math:`R^2` of fitted probes. Its interval here
is a **bootstrap over molecules of the out-of-fold predictions, stratified by fold**: replicate
:math:`b` draws, within each fold :math:`f`, :math:`n_f` of its molecules with replacement and
recomputes

.. math::

    R^2_b = \frac1K \sum_f \Big(1 - \frac{\sum_{i \in f_b} (y_i - \hat y_i)^2}
                                      {\sum_{i \in f_b} (y_i - \bar y_{f_b})^2}\Big),

the statistic as reported; the interval is the 2.5 and 97.5 percentiles of the replicates. It
measures how much the score would move with other held-out molecules from the same distribution,
for the probes as fitted; it does not refit them (the variance of refitting on another training set
is not in it). Its coverage of a planted :math:`R^2_\text{geom}` on synthetic data is measured in
``tests/test_intervals.py`` and reported in the Method chapter.

Two results on the same molecules and folds (a model and its twin; L=1 vs L=0 blocks; two probes)
are compared *paired*: the same resampled molecules score both, so what they share cancels
(:func:`compare`). A claim that A beats B needs that paired interval to exclude zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cpd_core.errors import InputError

#: Out-of-fold prediction of each score.
PREDICTION_OF = {"r2_full": "full", "r2_comp": "comp", "r2_geom": "geom"}


def bootstrap_r2(y: np.ndarray, fold_of: np.ndarray, predictions: list[np.ndarray], n_boot: int = 1000,
                 seed: int = 0, chunk: int = 100) -> np.ndarray:
    """Fold-mean held-out R² of each prediction vector on ``n_boot`` fold-stratified resamples.

    Parameters
    ----------
    y : numpy.ndarray, shape (n,)
    fold_of : numpy.ndarray of int, shape (n,)
        Held-out fold of each row.
    predictions : list of numpy.ndarray, shape (n,) each
        Out-of-fold predictions; every one is scored on the *same* resamples (paired).
    n_boot, seed : int
    chunk : int
        Replicates drawn at once (memory: ``chunk × n`` indices).

    Returns
    -------
    numpy.ndarray, shape (n_boot, len(predictions))

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = rng.normal(size=400); p = y + 0.5 * rng.normal(size=400)
    >>> reps = bootstrap_r2(y, np.arange(400) % 4, [p], n_boot=200)
    >>> reps.shape, bool(0.6 < np.median(reps) < 0.9)
    ((200, 1), True)
    """
    if n_boot < 1:
        raise InputError(f"n_boot must be >= 1, got {n_boot}")
    y = np.asarray(y, dtype=np.float64)
    P = np.column_stack([np.asarray(p, dtype=np.float64) for p in predictions])
    rng = np.random.default_rng(seed)
    folds = [np.flatnonzero(fold_of == f) for f in np.unique(fold_of)]
    out = np.zeros((n_boot, P.shape[1]))
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        for idx in folds:
            pick = idx[rng.integers(0, len(idx), size=(b, len(idx)))]      # (b, n_f)
            yb = y[pick]
            sst = np.sum((yb - yb.mean(axis=1, keepdims=True)) ** 2, axis=1)
            sst = np.where(sst > 0, sst, np.nan)
            for j in range(P.shape[1]):
                sse = np.sum((yb - P[pick, j]) ** 2, axis=1)
                out[start:start + b, j] += 1.0 - sse / sst
    return out / len(folds)


def percentile_interval(replicates: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` percentile interval of bootstrap replicates (NaN replicates ignored)."""
    tail = 100 * (1 - level) / 2
    if np.isnan(replicates).all():
        return float("nan"), float("nan")       # a score that was not computed (e.g. R²_full skipped)
    lo, hi = np.nanpercentile(replicates, [tail, 100 - tail])
    return float(lo), float(hi)


def bootstrap_scores(result, n_boot: int = 1000, seed: int = 0) -> dict[str, np.ndarray]:
    """Bootstrap replicates of ``r2_full``, ``r2_comp`` and ``r2_geom`` of a :class:`~cpd_core.CPDResult`."""
    if result.y is None or not result.oof:
        raise InputError("this result keeps no out-of-fold predictions; rerun cpd()")
    keys = list(PREDICTION_OF)
    reps = bootstrap_r2(result.y, result.fold_of, [result.oof[PREDICTION_OF[k]] for k in keys], n_boot, seed)
    return {k: reps[:, i] for i, k in enumerate(keys)}


def _signed(x: float) -> str:
    """A signed difference of R²: three decimals, or whole numbers with separators beyond ±10 (a collapse)."""
    return f"{x:+,.0f}" if abs(x) >= 10 else f"{x:+.3f}"


@dataclass(frozen=True)
class Comparison:
    """Paired difference of one score between two CPD results on the same molecules and folds.

    Attributes
    ----------
    score : str
    a, b : float
        The two scores.
    diff : float
        ``a - b``.
    lo, hi : float
        ``level`` interval of the difference (paired bootstrap).
    level : float
    n : int
        Molecules.
    """

    score: str
    a: float
    b: float
    diff: float
    lo: float
    hi: float
    level: float
    n: int

    @property
    def resolved(self) -> bool:
        """Whether the interval of the difference excludes zero."""
        return self.lo > 0 or self.hi < 0

    def verdict(self, name_a: str = "A", name_b: str = "B") -> str:
        """A sentence: which is higher, that both are identical, or that this scale does not resolve it.

        Examples
        --------
        >>> Comparison("r2_geom", 0.5, 0.3, 0.2, 0.1, 0.3, 0.95, 500).verdict("x", "y")
        'x > y by 0.200 (95 % interval of x − y: [+0.100, +0.300], n = 500)'
        >>> Comparison("r2_geom", 0.3, -2644.4, 2644.7, 1210.3, 5120.9, 0.95, 500).verdict("x", "y")
        'x > y by 2,645 (95 % interval of x − y: [+1,210, +5,121], n = 500)'
        >>> Comparison("r2_geom", 0.3, 0.3, 0.0, 0.0, 0.0, 0.95, 500).verdict("x", "y")
        'x and y: identical held-out predictions on all n = 500 (difference 0)'
        """
        if self.diff == 0 and self.lo == 0 and self.hi == 0:
            return f"{name_a} and {name_b}: identical held-out predictions on all n = {self.n} (difference 0)"
        if not self.resolved:
            return f"{name_a} vs {name_b}: not resolved at n = {self.n} (difference {_signed(self.diff)}, " \
                   f"{100 * self.level:.0f} % interval [{_signed(self.lo)}, {_signed(self.hi)}])"
        higher, lower = (name_a, name_b) if self.diff > 0 else (name_b, name_a)
        return f"{higher} > {lower} by {_signed(abs(self.diff))[1:]} ({100 * self.level:.0f} % interval of " \
               f"{name_a} − {name_b}: [{_signed(self.lo)}, {_signed(self.hi)}], n = {self.n})"

    def as_dict(self) -> dict:
        return {"score": self.score, "a": self.a, "b": self.b, "diff": self.diff, "diff_lo": self.lo,
                "diff_hi": self.hi, "resolved": self.resolved, "n": self.n}


def compare(a, b, score: str = "r2_geom", level: float | None = None, n_boot: int | None = None,
            seed: int | None = None) -> Comparison:
    """Paired difference ``a − b`` of one score of two :class:`~cpd_core.CPDResult` with its interval.

    Both results must be on the same molecules (equal ``y``) and folds (equal ``fold_of``):
    run :func:`cpd_core.cpd` with the same ``cv`` and ``seed`` on the same rows. Each bootstrap
    replicate resamples the same molecules for both.

    Examples
    --------
    >>> from cpd_core import cpd
    >>> from cpd_core.synthetic import planted
    >>> d = planted(n=600, comp_share=0.3, geom_share=0.5, seed=0)
    >>> rich, poor = cpd(d.H, d.C, d.y, cv=3), cpd(d.H[:, :30], d.C, d.y, cv=3)
    >>> c = compare(rich, poor)
    >>> c.resolved, c.diff > 0
    (True, True)
    """
    diff, lo, hi = paired_combination([a, b], [1, -1], score, level, n_boot, seed)
    return Comparison(score, getattr(a, score), getattr(b, score), diff, lo, hi,
                      a.level if level is None else level, len(a.y))


def paired_combination(results: list, weights: list[float], score: str = "r2_geom", level: float | None = None,
                       n_boot: int | None = None, seed: int | None = None) -> tuple[float, float, float]:
    r"""A weighted sum :math:`\sum_k w_k R^2_k` of one score of several results on the same molecules and folds, with its interval.

    A difference of differences, for instance how much a contrast grew between two checkpoints,
    :math:`(a_2 - b_2) - (a_1 - b_1)`, is ``weights=[1, -1, -1, 1]`` on ``[a2, b2, a1, b1]``: every
    bootstrap replicate resamples the same molecules for all of them (paired), as :func:`compare` does
    for two.

    Returns
    -------
    (value, lo, hi) : tuple of float

    Examples
    --------
    >>> from cpd_core import cpd
    >>> from cpd_core.synthetic import planted
    >>> d = planted(n=600, comp_share=0.3, geom_share=0.5, seed=0)
    >>> rich, poor = cpd(d.H, d.C, d.y, cv=3), cpd(d.H[:, :30], d.C, d.y, cv=3)
    >>> value, lo, hi = paired_combination([rich, poor], [1, -1])
    >>> c = compare(rich, poor)
    >>> bool(np.isclose(value, c.diff) and np.isclose(lo, c.lo) and np.isclose(hi, c.hi))
    True
    """
    if score not in PREDICTION_OF:
        raise InputError(f"score must be one of {list(PREDICTION_OF)}, got {score!r}")
    if len(results) != len(weights) or not results:
        raise InputError(f"{len(results)} results for {len(weights)} weights")
    first = results[0]
    for r in results:
        if r.y is None or not r.oof:
            raise InputError("a result without out-of-fold predictions cannot be compared; rerun cpd()")
        if r.y.shape != first.y.shape or not np.array_equal(r.y, first.y):
            raise InputError("the results are not on the same molecules and target (y differs)")
        if not np.array_equal(r.fold_of, first.fold_of):
            raise InputError("the results use different folds: run them with the same cv and seed")
    level = first.level if level is None else level
    n_boot = first.n_boot if n_boot is None else n_boot
    seed = first.seed if seed is None else seed
    key = PREDICTION_OF[score]
    w = np.asarray(weights, dtype=np.float64)
    reps = bootstrap_r2(first.y, first.fold_of, [r.oof[key] for r in results], n_boot, seed) @ w
    lo, hi = percentile_interval(reps, level)
    return float(sum(wk * getattr(r, score) for wk, r in zip(w, results))), lo, hi


__all__ = ["Comparison", "bootstrap_r2", "bootstrap_scores", "compare", "paired_combination", "percentile_interval"]
