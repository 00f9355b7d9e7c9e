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

from cpd_core.decomposition import cpd, cpd_many, fold_jobs
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
    data = {s: planted(n=n, comp_share=comp_share, geom_share=s, seed=seed) for s in geom_shares}
    jobs = [(s, p) for s in geom_shares for p in probes]
    results = cpd_many([{"H": data[s].H, "C": data[s].C, "y": data[s].y, "probe": p} for s, p in jobs], seed=seed,
                       progress="planted signals (MLP, GBT folds)" if progress else None)
    for (share, probe), res in zip(jobs, results):
        rows.append({"geom_share": share, "r2_geom_true": data[share].r2_geom_true,
                     "r2_comp_true": data[share].r2_comp_true, **res.summary()})
        folds.append(res.folds.reset_index()[["fold", "r2_geom"]].assign(
            geom_share=share, r2_geom_true=data[share].r2_geom_true, probe=probe))
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
    results = cpd_many([{"probe": p} for p in probes], H=data.H, C=data.C, y=data.y, seed=seed,
                       progress="compositional target (MLP, GBT folds)" if progress else None)
    for probe, res in zip(probes, results):
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
    ``r2_geom_true``. The data sets are independent and seeded: they run on
    :func:`~cpd_core.decomposition.fold_jobs` processes with the same result.

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
    jobs = [(n, s, comp_share, geom_share, n_features, cv, level, n_boot) for n in n_values for s in range(seeds)]
    workers = min(fold_jobs(), len(jobs))
    if workers <= 1:
        outputs = map(_coverage_run, *zip(*jobs))
    else:    # the seeded data sets are independent: the same rows in any number of processes
        from joblib import Parallel, delayed

        outputs = Parallel(n_jobs=workers, backend="loky", return_as="generator", batch_size=8)(
            delayed(_coverage_run)(*job) for job in jobs)
    runs = pd.DataFrame(list(tqdm(outputs, total=len(jobs), desc="interval coverage", disable=not progress)))
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


def _coverage_run(n, seed, comp_share, geom_share, n_features, cv, level, n_boot) -> dict:
    """One data set of :func:`interval_coverage`: ridge CPD of ``planted(n, ..., seed)`` and whether its interval covers."""
    # Hundreds of small (d ≈ 100) eigendecompositions: one BLAS thread is fastest, and threads
    # that spin on a core another process holds slow each one down by two orders of magnitude.
    with threadpool_limits(limits=1, user_api="blas"):
        data = planted(n=n, comp_share=comp_share, geom_share=geom_share, n_features=n_features, seed=seed)
        res = cpd(data.H, data.C, data.y, probe="ridge", cv=cv, seed=seed, level=level, n_boot=n_boot)
    lo, hi = res.ci["r2_geom"]
    return {"n": n, "seed": seed, "d": data.H.shape[1], "r2_geom_true": data.r2_geom_true, "r2_geom": res.r2_geom,
            "lo": lo, "hi": hi, "covered": bool(lo <= data.r2_geom_true <= hi)}


def recovery_counts(summary: pd.DataFrame) -> pd.DataFrame:
    """Per probe, at how many planted shares the 95 % interval of R²_geom covers the truth (``covers``)
    or lies above it (``above``); ``summary`` as :func:`planted_recovery` returns it."""
    marked = summary.assign(covers=(summary["r2_geom_lo"] <= summary["r2_geom_true"])
                            & (summary["r2_geom_true"] <= summary["r2_geom_hi"]),
                            above=summary["r2_geom_lo"] > summary["r2_geom_true"])
    return marked.groupby("probe", sort=False)[["covers", "above"]].sum().astype(int)


def method_facts(recovery: pd.DataFrame, inflation: pd.DataFrame, coverage: pd.DataFrame) -> dict:
    """The numbers the Method chapter's prose quotes, from its three known-answer tables.

    Parameters
    ----------
    recovery, inflation, coverage : pandas.DataFrame
        The summaries of :func:`planted_recovery`, :func:`compositional_inflation` and
        :func:`interval_coverage` (its first and last sizes are quoted as ``small`` and ``large``).

    Returns
    -------
    dict of str to str or int
    """
    from cpd_core.report import format_interval

    ridge = recovery[recovery["probe"] == "ridge"]
    facts = {"n_mol": int(recovery["n"].iloc[0]),
             "max_gap": f"{(ridge['r2_geom'] - ridge['r2_geom_true']).abs().max():.3f}",
             "n_shares": int(recovery["geom_share"].nunique())}
    for probe, row in recovery_counts(recovery).iterrows():
        facts[f"covers_{probe}"], facts[f"above_{probe}"] = int(row["covers"]), int(row["above"])
    # where the ridge interval misses the truth, on which side and by how much
    below = ridge[ridge["r2_geom_hi"] < ridge["r2_geom_true"]]
    above = ridge[ridge["r2_geom_lo"] > ridge["r2_geom_true"]]
    misses = []
    if len(below):
        misses.append(f"at {len(below)} it lies below the truth, by at most "
                      f"{(below['r2_geom_true'] - below['r2_geom_hi']).max():.3f}: the small downward bias of a "
                      "fitted probe measured in the last section")
    if len(above):
        misses.append(f"at {len(above)} it lies above the truth, by at most "
                      f"{(above['r2_geom_lo'] - above['r2_geom_true']).max():.3f}")
    facts["ridge_misses"] = "; ".join(misses) if misses else "it misses at none"
    for probe, row in inflation.set_index("probe").iterrows():
        facts[f"inflation_{probe}"] = format_interval(row["r2_geom"], row["r2_geom_lo"], row["r2_geom_hi"])
    for label, row in (("small", coverage.iloc[0]), ("large", coverage.iloc[-1])):
        facts[f"cov_n_{label}"] = int(row["n"])
        facts[f"cov_{label}"] = format_interval(row["coverage"], row["coverage_lo"], row["coverage_hi"], 2)
        facts[f"cov_width_{label}"] = f"{row['width']:.3f}"
        facts[f"cov_bias_{label}"] = format_interval(row["bias"], row["bias_lo"], row["bias_hi"])
        facts[f"cov_error_sd_{label}"] = f"{row['error_sd']:.3f}"
        facts[f"cov_implied_se_{label}"] = f"{row['implied_se']:.3f}"
    facts["cov_seeds"] = int(coverage["seeds"].iloc[0])
    facts["cov_d"] = int(coverage["d"].iloc[0])
    return facts
