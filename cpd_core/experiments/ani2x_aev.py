"""CPD of one representation on QM9: targets × probes beside control targets, ridge variants, paired comparisons.

The chapter's numbers come in three steps: :func:`representation_results` (one
:class:`~cpd_core.CPDResult` per target and probe, controls included), :func:`result_tables`
(the summary with 95 % intervals and the per-fold scores) and :func:`probe_comparisons` /
:func:`variant_comparisons` (paired differences on the same molecules and folds, so that a claim
"A > B" rests on an interval of A − B that excludes zero).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from cpd_core.datasets import Dataset
from cpd_core.datasets.qm9 import check_targets, load_qm9
from cpd_core.decomposition import CPDResult, cpd
from cpd_core.errors import InputError
from cpd_core.experiments.controls import MASS, control_targets, molecular_mass  # noqa: F401 (re-exported)
from cpd_core.intervals import compare

#: The compositional control named by earlier versions (molecular mass, exactly linear in counts).
CONTROL = MASS

#: The ridge variant every other one is compared with: :func:`~cpd_core.cpd`'s defaults (clipped
#: standardiser, projection fit on the training folds, penalty by exact leave-one-out).
DEFAULT_VARIANT = "clipped · train folds · LOO (default)"

#: The same probe with the penalty chosen by generalised cross-validation, the free alternative.
GCV_VARIANT = "clipped · train folds · GCV"

#: Ridge variants of :func:`ridge_variants`: name → keyword arguments of :func:`~cpd_core.cpd`.
RIDGE_VARIANTS = {
    DEFAULT_VARIANT: {},
    GCV_VARIANT: {"select": "gcv"},
    "clipped · all rows · LOO": {"fit_projection": "all", "select": "loo"},
    "clipped · all rows · GCV": {"fit_projection": "all", "select": "gcv"},
    "plain · train folds · LOO": {"clip": False, "select": "loo"},
    "plain · train folds · GCV": {"clip": False, "select": "gcv"},
    "plain · all rows · LOO": {"clip": False, "fit_projection": "all", "select": "loo"},
    "plain · all rows · GCV": {"clip": False, "fit_projection": "all", "select": "gcv"},
}


def representation_results(qm9: Dataset, H: np.ndarray, targets: Sequence[str] = ("gap", "dipole"),
                           probes: Sequence[str] = ("ridge", "mlp", "gbt"), control: bool = True,
                           cv: int = 5, seed: int = 0, fit_projection: str = "train",
                           progress: bool = False) -> dict[tuple[str, str], CPDResult]:
    """CPD of features ``H`` of ``qm9`` for each target and probe, all on the same folds.

    With ``control``, the control targets of :func:`~cpd_core.experiments.controls.control_targets`
    follow the real ones: ``mass (control)`` (linear in counts: linear R²_geom must be ≈ 0),
    ``mass/atom (control)`` (nonlinear in counts: what a probe scores is composition, not geometry)
    and the first target shuffled over molecules (chance level at this n and d).

    Returns
    -------
    dict of (target, probe) to CPDResult
        In the order targets × probes; every result keeps its out-of-fold predictions, so two
        results of one target can be compared paired (:func:`probe_comparisons`).
    """
    missing = [t for t in check_targets(targets) if t not in qm9.targets]
    if missing:
        raise InputError(f"targets {missing} were not loaded; loaded: {list(qm9.targets.columns)}")
    C = qm9.composition()
    ys = {t: qm9.targets[t].to_numpy() for t in targets}
    if control:
        ys.update(control_targets(qm9.numbers, ys, seed=seed))
    jobs = [(t, p) for t in ys for p in probes]
    return {(t, p if isinstance(p, str) else type(p).__name__):
            cpd(H, C, ys[t], probe=p, cv=cv, seed=seed, fit_projection=fit_projection)
            for t, p in tqdm(jobs, desc="CPD probes", disable=not progress)}


def result_tables(results: Mapping, names: Sequence[str] = ("target", "probe")) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The summary and per-fold tables of a dict of results, as :func:`cpd_core.cpd_table` makes them.

    Parameters
    ----------
    results : mapping of key to CPDResult
        Keys are tuples (or single values) naming each result.
    names : sequence of str
        Column names of the key's parts.

    Returns
    -------
    summary : pandas.DataFrame
        One row per result: the key's columns, then :meth:`~cpd_core.CPDResult.summary` (each score
        with its interval, ``r2_*_lo`` and ``r2_*_hi``).
    folds : pandas.DataFrame
        Long format: ``fold``, ``score``, ``r2``, the key's columns and ``probe``.

    Examples
    --------
    >>> from cpd_core import cpd
    >>> from cpd_core.synthetic import planted
    >>> d = planted(n=300, seed=0)
    >>> summary, folds = result_tables({"a": cpd(d.H, d.C, d.y, cv=3)}, names=("variant",))
    >>> summary.columns[:5].tolist(), len(folds)
    (['variant', 'probe', 'r2_comp', 'r2_comp_lo', 'r2_comp_hi'], 9)
    """
    summary, folds = [], []
    for key, res in results.items():
        named = dict(zip(names, key if isinstance(key, tuple) else (key,)))
        summary.append({**named, **{k: v for k, v in res.summary().items() if k not in named}})
        long = res.folds[["r2_full", "r2_comp", "r2_geom"]].reset_index().melt(
            id_vars="fold", var_name="score", value_name="r2")
        folds.append(long.assign(**{**named, "probe": named.get("probe", res.probe)}))
    return pd.DataFrame(summary), pd.concat(folds, ignore_index=True)


def representation_cpd(qm9: Dataset, H: np.ndarray, targets: Sequence[str] = ("gap", "dipole"),
                       probes: Sequence[str] = ("ridge", "mlp", "gbt"), control: bool = True,
                       cv: int = 5, seed: int = 0, fit_projection: str = "train", progress: bool = False):
    """CPD table of features ``H`` of ``qm9`` for each target and probe (controls with ``control``).

    :func:`representation_results` then :func:`result_tables`; use those two to keep the results
    for paired comparisons.

    Returns
    -------
    summary, folds : pandas.DataFrame
        As :func:`cpd_core.cpd_table`.
    """
    return result_tables(representation_results(qm9, H, targets, probes, control, cv, seed, fit_projection,
                                                 progress))


def ridge_variants(qm9: Dataset, H: np.ndarray, target: str = "gap", cv: int = 5, seed: int = 0,
                   variants: Sequence[str] | None = None) -> dict[str, CPDResult]:
    """Ridge CPD of one target under the choices that move it: standardisation, projection, penalty rule.

    Variants (:data:`RIDGE_VARIANTS`), named ``"<scaler> · <projection> · <rule>"``: scaler
    ``clipped`` (:class:`~cpd_core.probes.ClippedStandardScaler`, the default) or ``plain``
    (``clip=False``: z-scoring with training statistics, held-out values unbounded, as
    scikit-learn's ``StandardScaler``); projection fit on the ``train folds`` (default) or on
    ``all rows``; penalty chosen by exact ``LOO`` (default, ``select="loo"``, the rule of
    scikit-learn's ``RidgeCV``) or ``GCV`` (``select="gcv"``: free, but it replaces every
    molecule's leverage by the mean and can pick far too small a penalty when a few molecules
    have leverage near 1, see :mod:`cpd_core.ridge`). All run the closed-form ridge of
    :func:`~cpd_core.cpd` on the same folds. ``variants`` picks some of them by name (default: all).

    Returns
    -------
    dict of str to CPDResult
        Variant → result (tables: ``result_tables(..., names=("variant",))``; paired differences
        from the default: :func:`variant_comparisons`).
    """
    check_targets([target])
    names = list(RIDGE_VARIANTS) if variants is None else list(variants)
    unknown = [v for v in names if v not in RIDGE_VARIANTS]
    if unknown:
        raise InputError(f"unknown ridge variants {unknown}; known: {list(RIDGE_VARIANTS)}")
    if target not in qm9.targets:
        raise InputError(f"target {target!r} was not loaded; loaded: {list(qm9.targets.columns)}")
    C = qm9.composition()
    y = qm9.targets[target].to_numpy()
    return {name: cpd(H, C, y, probe="ridge", cv=cv, seed=seed, **RIDGE_VARIANTS[name]) for name in names}


def _comparison_row(a: str, res_a: CPDResult, b: str, res_b: CPDResult, score: str) -> dict:
    c = compare(res_a, res_b, score=score)
    return {"a": a, "b": b, "score": score, "value_a": c.a, "value_b": c.b, "diff": c.diff,
            "diff_lo": c.lo, "diff_hi": c.hi, "resolved": c.resolved, "n": c.n, "verdict": c.verdict(a, b)}


def probe_comparisons(results: Mapping[tuple[str, str], CPDResult], baseline: str = "ridge",
                      score: str = "r2_geom") -> pd.DataFrame:
    """Paired difference of every probe from ``baseline``, per target (:func:`cpd_core.compare`).

    Parameters
    ----------
    results : mapping of (target, probe) to CPDResult
        As :func:`representation_results` returns.
    baseline : str
        The probe every other one is compared with.
    score : {"r2_geom", "r2_full", "r2_comp"}

    Returns
    -------
    pandas.DataFrame
        One row per (target, probe ≠ baseline): ``target``, ``a`` (the probe), ``b`` (the baseline),
        ``score``, ``value_a``, ``value_b``, ``diff`` = a − b with its interval ``diff_lo``,
        ``diff_hi``, ``resolved`` (the interval excludes zero), ``n`` and a ``verdict`` sentence.
    """
    rows = [{"target": target, **_comparison_row(probe, res, baseline, results[(target, baseline)], score)}
            for (target, probe), res in results.items() if probe != baseline and (target, baseline) in results]
    return pd.DataFrame(rows)


def variant_comparisons(results: Mapping[str, CPDResult], baseline: str = DEFAULT_VARIANT,
                        score: str = "r2_geom") -> pd.DataFrame:
    """Paired difference of every ridge variant from ``baseline`` (columns as :func:`probe_comparisons`)."""
    return pd.DataFrame([_comparison_row(name, res, baseline, results[baseline], score)
                         for name, res in results.items() if name != baseline])


__all__ = ["CONTROL", "DEFAULT_VARIANT", "GCV_VARIANT", "RIDGE_VARIANTS", "molecular_mass", "probe_comparisons",
           "representation_cpd", "representation_results", "result_tables", "ridge_variants",
           "variant_comparisons"]
