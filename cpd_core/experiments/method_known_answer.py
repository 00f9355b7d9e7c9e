r"""Known-answer checks of CPD on synthetic data (:mod:`cpd_core.synthetic`).

Three checks for the Method chapter: the planted geometric share is recovered
(:func:`planted_recovery`), a purely compositional target scores zero with a linear probe
(:func:`compositional_inflation`), and the 95 % interval of ridge :math:`R^2_\text{geom}` covers the
planted value as often as it claims — or how much less often (:func:`interval_coverage`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from cpd_core.decomposition import cpd
from cpd_core.synthetic import planted

PROBES = ("ridge", "mlp", "gbt")


def planted_recovery(geom_shares: Sequence[float] = (0.0, 0.2, 0.4, 0.6), comp_share: float = 0.3,
                     n: int = 2000, probes: Sequence[str] = PROBES, seed: int = 0,
                     progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """R²_geom recovered by each probe against the planted (true) geometric share.

    Returns
    -------
    summary : pandas.DataFrame
        One row per (planted share, probe): ``r2_geom_true``, ``r2_comp_true``
        and the CPD summary with its 95 % intervals (:meth:`~cpd_core.CPDResult.summary`).
    folds : pandas.DataFrame
        Per-fold R²_geom, long format.
    """
    rows, folds = [], []
    jobs = [(s, p) for s in geom_shares for p in probes]
    for share, probe in tqdm(jobs, desc="planted signals", disable=not progress):
        data = planted(n=n, comp_share=comp_share, geom_share=share, seed=seed)
        res = cpd(data.H, data.C, data.y, probe=probe, seed=seed)
        rows.append({"geom_share": share, "r2_geom_true": data.r2_geom_true,
                     "r2_comp_true": data.r2_comp_true, **res.summary()})
        folds.append(res.folds.reset_index()[["fold", "r2_geom"]].assign(
            geom_share=share, r2_geom_true=data.r2_geom_true, probe=probe))
    return pd.DataFrame(rows), pd.concat(folds, ignore_index=True)


def compositional_inflation(n: int = 2000, probes: Sequence[str] = PROBES, seed: int = 0,
                            progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """CPD of a purely compositional target (true linear R²_geom = 0) with every probe.

    A probe that scores R²_geom well above 0 here reads composition from
    nonlinear remnants the linear projection cannot remove: its R²_geom is
    inflated, not geometric.
    """
    data = planted(n=n, comp_share=1.0, geom_share=0.0, seed=seed)
    rows, folds = [], []
    for probe in tqdm(probes, desc="compositional target", disable=not progress):
        res = cpd(data.H, data.C, data.y, probe=probe, seed=seed)
        rows.append(res.summary())
        folds.append(res.folds.reset_index()[["fold", "r2_geom"]].assign(probe=probe))
    return pd.DataFrame(rows), pd.concat(folds, ignore_index=True)


def wilson_interval(hits: int, trials: int, level: float = 0.95) -> tuple[float, float]:
    r"""Wilson score interval of a binomial proportion :math:`\hat p = k / m`.

    .. math::

        \frac{\hat p + z^2/2m \pm z\sqrt{\hat p(1-\hat p)/m + z^2/4m^2}}{1 + z^2/m},
        \qquad z = \Phi^{-1}\big(\tfrac{1+\text{level}}{2}\big).

    Examples
    --------
    >>> lo, hi = wilson_interval(88, 100)
    >>> round(lo, 3), round(hi, 3)
    (0.802, 0.930)
    """
    z = stats.norm.ppf((1 + level) / 2)
    p = hits / trials
    centre = (p + z ** 2 / (2 * trials)) / (1 + z ** 2 / trials)
    half = z * np.sqrt(p * (1 - p) / trials + z ** 2 / (4 * trials ** 2)) / (1 + z ** 2 / trials)
    return float(centre - half), float(centre + half)


def interval_coverage(n_values: Sequence[int] = (500, 2000), seeds: int = 100, comp_share: float = 0.3,
                      geom_share: float = 0.4, n_features: int = 64, cv: int = 5, level: float = 0.95,
                      n_boot: int = 1000, progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    r"""How often the interval of ridge R²_geom covers the planted value, over seeded data sets.

    For each ``n`` and seed :math:`s = 0, \dots, \text{seeds} - 1`, draws
    ``planted(n, comp_share, geom_share, n_features, seed=s)``, runs ridge CPD with the same seed
    and records whether :attr:`~cpd_core.CPDResult.ci` of ``r2_geom`` contains the sample's
    ``r2_geom_true``.

    Returns
    -------
    summary : pandas.DataFrame
        One row per ``n``: ``seeds``, ``d`` (feature columns), means of ``r2_geom_true`` and
        ``r2_geom``; ``bias`` = mean of estimate − truth with its ``level`` interval
        (``bias_lo``, ``bias_hi``: mean ± t·sd/√seeds); ``error_sd``, the standard deviation of
        estimate − truth over seeds; ``implied_se`` = mean width / (2 z), the standard error the
        interval implies (equal to ``error_sd`` for an interval of the right width);
        ``width`` (mean); ``coverage`` with its Wilson interval (``coverage_lo``, ``coverage_hi``).
    runs : pandas.DataFrame
        One row per (n, seed): ``r2_geom_true``, ``r2_geom``, ``lo``, ``hi``, ``covered``.

    Examples
    --------
    >>> summary, runs = interval_coverage(n_values=(400,), seeds=4, n_features=8, n_boot=200)
    >>> len(runs), summary.loc[0, ["seeds", "d"]].tolist()
    (4, [4, 33])
    """
    runs = []
    jobs = [(n, s) for n in n_values for s in range(seeds)]
    # Hundreds of small (d ≈ 100) eigendecompositions: one BLAS thread is fastest, and threads
    # that spin on a core another process holds slow each one down by two orders of magnitude.
    with threadpool_limits(limits=1, user_api="blas"):
        for n, s in tqdm(jobs, desc="interval coverage", disable=not progress):
            data = planted(n=n, comp_share=comp_share, geom_share=geom_share, n_features=n_features, seed=s)
            res = cpd(data.H, data.C, data.y, probe="ridge", cv=cv, seed=s, level=level, n_boot=n_boot)
            lo, hi = res.ci["r2_geom"]
            runs.append({"n": n, "seed": s, "d": data.H.shape[1], "r2_geom_true": data.r2_geom_true,
                         "r2_geom": res.r2_geom, "lo": lo, "hi": hi,
                         "covered": bool(lo <= data.r2_geom_true <= hi)})
    runs = pd.DataFrame(runs)
    z = stats.norm.ppf((1 + level) / 2)
    rows = []
    for n, grp in runs.groupby("n", sort=False):
        m = len(grp)
        err = grp["r2_geom"] - grp["r2_geom_true"]
        half = stats.t.ppf((1 + level) / 2, m - 1) * err.std(ddof=1) / np.sqrt(m) if m > 1 else np.nan
        width = grp["hi"] - grp["lo"]
        cov_lo, cov_hi = wilson_interval(int(grp["covered"].sum()), m, level)
        rows.append({"n": n, "seeds": m, "d": int(grp["d"].iloc[0]),
                     "r2_geom_true": grp["r2_geom_true"].mean(), "r2_geom": grp["r2_geom"].mean(),
                     "bias": err.mean(), "bias_lo": err.mean() - half, "bias_hi": err.mean() + half,
                     "error_sd": err.std(ddof=1), "implied_se": width.mean() / (2 * z), "width": width.mean(),
                     "coverage": grp["covered"].mean(), "coverage_lo": cov_lo, "coverage_hi": cov_hi})
    return pd.DataFrame(rows), runs
