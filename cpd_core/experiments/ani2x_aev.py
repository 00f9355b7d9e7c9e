"""CPD of one representation on QM9: targets × probes beside control targets, ridge variants, paired comparisons.

The chapter's numbers come in three steps: :func:`representation_results` (one
:class:`~cpd_core.CPDResult` per target and probe, controls included), :func:`result_tables`
(the summary with 95 % intervals and the per-fold scores) and :func:`probe_comparisons` /
:func:`variant_comparisons` (paired differences on the same molecules and folds, so that a claim
"A > B" rests on an interval of A − B that excludes zero).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from cpd_core.datasets import Dataset
from cpd_core.datasets.qm9 import check_targets, load_qm9
from cpd_core.decomposition import CPDResult, cpd, cpd_many
from cpd_core.errors import InputError
from cpd_core.experiments.controls import MASS, control_targets, molecular_mass  # noqa: F401 (re-exported)
from cpd_core.intervals import compare

#: The compositional control named by earlier versions (molecular mass, exactly linear in counts).
CONTROL = MASS

#: How each penalty rule is named in the variants (``select`` of :func:`~cpd_core.cpd`).
RULES = {"inner CV": "folds", "LOO": "loo", "GCV": "gcv"}
#: The rule of :func:`~cpd_core.cpd`'s defaults.
DEFAULT_RULE = "inner CV"
SCALERS = {"clipped": {}, "plain": {"clip": False}}
PROJECTIONS = {"train folds": {}, "all rows": {"fit_projection": "all"}}


def variant_name(scaler: str = "clipped", projection: str = "train folds", rule: str = DEFAULT_RULE) -> str:
    """``"<scaler> · <projection> · <rule>"``, with ``" (default)"`` for :func:`~cpd_core.cpd`'s defaults.

    >>> variant_name(rule="GCV")
    'clipped · train folds · GCV'
    """
    name = f"{scaler} · {projection} · {rule}"
    return name + " (default)" if (scaler, projection, rule) == ("clipped", "train folds", DEFAULT_RULE) else name


#: The ridge variant every other one is compared with: :func:`~cpd_core.cpd`'s defaults (clipped
#: standardiser, projection fit on the training folds, penalty by inner folds).
DEFAULT_VARIANT = variant_name()

#: The same probe with the penalty chosen by exact leave-one-out (scikit-learn ``RidgeCV``'s rule).
LOO_VARIANT = variant_name(rule="LOO")

#: The same probe with the penalty chosen by generalised cross-validation, the free alternative.
GCV_VARIANT = variant_name(rule="GCV")

#: Ridge variants of :func:`ridge_variants`: name → keyword arguments of :func:`~cpd_core.cpd`.
RIDGE_VARIANTS = {variant_name(sc, pr, ru): {**SCALERS[sc], **PROJECTIONS[pr], "select": RULES[ru]}
                  for sc in SCALERS for pr in PROJECTIONS for ru in RULES}

#: variant name → (scaler, projection, rule)
VARIANT_PARTS = {variant_name(sc, pr, ru): (sc, pr, ru) for sc in SCALERS for pr in PROJECTIONS for ru in RULES}


def representation_results(qm9: Dataset, H: np.ndarray, targets: Sequence[str] = ("gap", "dipole"),
                           probes: Sequence[str] = ("ridge", "mlp", "gbt"), control: bool = True,
                           cv: int = 5, seed: int = 0, fit_projection: str = "train",
                           progress: bool = False) -> dict[tuple[str, str], CPDResult]:
    """CPD of features ``H`` of ``qm9`` for each target and probe, all on the same folds.

    With ``control``, the control targets of :func:`~cpd_core.experiments.controls.control_targets`
    follow the real ones: ``mass (control)`` (linear in counts: linear R²_geom must be ≈ 0),
    ``mass/atom (control)`` (nonlinear in counts: what a probe scores is composition, not geometry)
    and the first target shuffled over molecules (chance level at this n and d). A control's claim
    is its R²_geom: MLP and GBT fit its residual only (R²_full NaN), at half the cost. The folds of
    every refit probe run together (:func:`cpd_core.decomposition.cpd_many`).

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
    # a control's claim is its R²_geom: refit probes skip its raw features (R²_full NaN), half their cost
    results = cpd_many([{"y": ys[t], "probe": p, "full": t in targets} for t, p in jobs],
                       H=H, C=C, cv=cv, seed=seed, fit_projection=fit_projection,
                       progress="CPD probes (MLP, GBT folds)" if progress else None)
    return {(t, p if isinstance(p, str) else type(p).__name__): res for (t, p), res in zip(jobs, results)}


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
    ``all rows``; penalty chosen by ``inner CV`` (default, ``select="folds"``: held-out error over
    the training fold's own folds), exact ``LOO`` (``select="loo"``, the rule of scikit-learn's
    ``RidgeCV``) or ``GCV`` (``select="gcv"``: free, but it replaces every molecule's leverage by
    the mean and can pick far too small a penalty when a few molecules have leverage near 1, see
    :mod:`cpd_core.ridge`). All run the closed-form ridge of
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


def rule_comparisons(variants: Mapping[str, CPDResult], score: str = "r2_geom") -> pd.DataFrame:
    """The penalty rule alone: each variant minus the default rule's variant with the same scaler and
    projection, paired (columns as :func:`probe_comparisons`, plus ``scaler``, ``projection``,
    ``rule`` and the median penalty each side chose, ``alpha_a`` and ``alpha_b``, for the score's
    probe)."""
    key = "alpha_full" if score == "r2_full" else "alpha_geom"
    rows = []
    for name, res in variants.items():
        scaler, projection, rule = VARIANT_PARTS[name]
        partner = variant_name(scaler, projection, DEFAULT_RULE)
        if rule == DEFAULT_RULE or partner not in variants:
            continue
        rows.append({"scaler": scaler, "projection": projection, "rule": rule,
                     **_comparison_row(name, res, partner, variants[partner], score),
                     "alpha_a": float(res.folds[key].median()), "alpha_b": float(variants[partner].folds[key].median())})
    return pd.DataFrame(rows)


def paper_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Our ridge and MLP R²_geom of the gap (with intervals and the worst fold) beside the paper's ANI-2x values."""
    from cpd_core.paper import paper_value

    ours = summary.set_index(["target", "probe"])
    table = pd.DataFrame([
        {"target": "gap", "probe": probe, "paper R²_geom": paper_value("r2_geom", "ANI-2x", "gap", probe),
         "ours R²_geom": ours.loc[("gap", probe), "r2_geom"], "ours R²_geom_lo": ours.loc[("gap", probe), "r2_geom_lo"],
         "ours R²_geom_hi": ours.loc[("gap", probe), "r2_geom_hi"],
         "ours worst fold": ours.loc[("gap", probe), "r2_geom_worst_fold"]}
        for probe in ("ridge", "mlp") if ("gap", probe) in ours.index
    ])
    table["paper inside our interval"] = table["paper R²_geom"].between(table["ours R²_geom_lo"],
                                                                        table["ours R²_geom_hi"])
    return table


@dataclass
class AEVRun:
    """Everything the ANI-2x chapter shows, from one :func:`aev_chapter` call.

    Attributes
    ----------
    n, n_varying : int
        Molecules, and AEV columns not constant over them.
    results : dict
        (target, probe) → CPDResult, controls included (:func:`representation_results`).
    summary, folds : pandas.DataFrame
        :func:`result_tables` of ``results``.
    probes_vs_ridge : pandas.DataFrame
        :func:`probe_comparisons`.
    variants : dict
        Ridge variant → CPDResult on the gap (:func:`ridge_variants`).
    variant_summary, variant_folds, variant_diffs : pandas.DataFrame
        Their tables, and every variant minus the default (:func:`variant_comparisons`).
    rules : pandas.DataFrame
        The penalty rule alone on R²_geom of the gap (:func:`rule_comparisons`).
    rules_full : pandas.DataFrame
        The penalty rule on R²_full, per target (clipped, train folds): :func:`rule_comparisons`
        with ``score="r2_full"`` and a ``target`` column.
    rule_variants : dict
        target → {variant → CPDResult} behind ``rules_full``.
    paper : pandas.DataFrame
        :func:`paper_table`.
    """

    n: int
    n_varying: int
    results: dict
    summary: pd.DataFrame
    folds: pd.DataFrame
    probes_vs_ridge: pd.DataFrame
    variants: dict
    variant_summary: pd.DataFrame
    variant_folds: pd.DataFrame
    variant_diffs: pd.DataFrame
    rules: pd.DataFrame
    rules_full: pd.DataFrame
    rule_variants: dict
    paper: pd.DataFrame


def aev_chapter(qm9: Dataset, H: np.ndarray, targets: Sequence[str] = ("gap", "dipole"), cv: int = 5,
                seed: int = 0, probes: Sequence[str] = ("ridge", "mlp", "gbt"), progress: bool = False) -> AEVRun:
    """The ANI-2x chapter's computations: probes × targets with controls, ridge variants on the gap,
    the penalty rules on every target, the paper's values; all on the same folds."""
    results = representation_results(qm9, H, targets=targets, probes=probes, cv=cv, seed=seed, progress=progress)
    summary, folds = result_tables(results)
    variants = ridge_variants(qm9, H, target="gap", cv=cv, seed=seed)
    variant_summary, variant_folds = result_tables(variants, names=("variant",))
    rule_set = [DEFAULT_VARIANT, LOO_VARIANT, GCV_VARIANT]
    rule_variants = {t: ({k: variants[k] for k in rule_set} if t == "gap" else
                         ridge_variants(qm9, H, target=t, cv=cv, seed=seed, variants=rule_set)) for t in targets}
    rules_full = pd.concat([rule_comparisons(v, score="r2_full").assign(target=t) for t, v in rule_variants.items()],
                           ignore_index=True)
    return AEVRun(n=len(qm9), n_varying=int((np.asarray(H).std(axis=0) > 0).sum()), results=results,
                  summary=summary, folds=folds, probes_vs_ridge=probe_comparisons(results), variants=variants,
                  variant_summary=variant_summary, variant_folds=variant_folds,
                  variant_diffs=variant_comparisons(variants), rules=rule_comparisons(variants),
                  rules_full=rules_full, rule_variants=rule_variants, paper=paper_table(summary))


def _verdict(table: pd.DataFrame, name_a: str, name_b: str, **where) -> str:
    from cpd_core.intervals import Comparison

    rows = table.loc[(table[list(where)] == pd.Series(where)).all(axis=1)]
    if rows.empty:
        raise InputError(f"no comparison where {where}")
    row = rows.iloc[0]
    return Comparison(row["score"], row["value_a"], row["value_b"], row["diff"], row["diff_lo"], row["diff_hi"],
                      0.95, row["n"]).verdict(name_a, name_b)


def aev_facts(run: AEVRun) -> dict:
    """The numbers the ANI-2x chapter's prose quotes, from its :func:`aev_chapter` run.

    Returns
    -------
    dict of str to str or int
        Scores as ``"value [lo, hi]"`` (95 % intervals), penalties with 3 significant digits, and
        sentences from paired intervals (:meth:`cpd_core.Comparison.verdict`) for every claim that
        one setting scores higher than another.
    """
    from cpd_core.experiments.controls import MASS_PER_ATOM, SHUFFLED
    from cpd_core.paper import paper_value
    from cpd_core.report import format_interval, sign_word

    ours = run.summary.set_index(["target", "probe"])
    vs = run.variant_summary.set_index("variant")
    first = run.summary["target"].iloc[0]

    def score(target, probe, key="r2_geom"):
        row = ours.loc[(target, probe)]
        return format_interval(row[key], row[f"{key}_lo"], row[f"{key}_hi"])

    def variant_score(name, key="r2_geom"):
        return format_interval(*(vs.loc[name, k] for k in (key, f"{key}_lo", f"{key}_hi")))

    def alpha(name):
        return f"{vs.loc[name, 'alpha_geom_median']:.3g}"

    def rule_verdict(rule, scaler="clipped", projection="train folds", table=None, **where):
        table = run.rules if table is None else table
        return _verdict(table, rule, DEFAULT_RULE, rule=rule, scaler=scaler, projection=projection, **where)

    def where_paper(probe):
        row = run.paper.set_index("probe").loc[probe]
        return "inside our interval" if row["paper inside our interval"] else "outside our interval"

    plain, plain_gcv = variant_name("plain"), variant_name("plain", rule="GCV")
    allrows, allrows_gcv = variant_name(projection="all rows"), variant_name(projection="all rows", rule="GCV")
    full = run.rules_full.set_index(["target", "rule"])
    shuffled = SHUFFLED.format(first)
    controls = [MASS, MASS_PER_ATOM, shuffled]
    ridge_controls = ours.loc[[(c, "ridge") for c in controls]]
    nonlinear_chance = ours.loc[[(shuffled, p) for p in ("mlp", "gbt")]]
    dipole = "dipole" in run.rule_variants
    facts = {
        "n_mol": run.n,
        "n_varying": run.n_varying,
        "paper_ridge_gap": f"{paper_value('r2_geom', 'ANI-2x', 'gap', 'ridge'):+.3f}",
        "paper_mlp_gap": f"{paper_value('r2_geom', 'ANI-2x', 'gap', 'mlp'):+.3f}",
        "paper_ridge_where": where_paper("ridge"),
        "paper_mlp_where": where_paper("mlp"),
        "paper_inflation": f"{paper_value('r2_geom_tree_inflation_low', 'compositional target', '-', 'gbt'):.2f}–"
                           f"{paper_value('r2_geom_tree_inflation_high', 'compositional target', '-', 'gbt'):.2f}",
        "ridge_gap": score("gap", "ridge"),
        "ridge_gap_sign": sign_word(ours.loc[("gap", "ridge"), "r2_geom"]),
        "ridge_gap_width": f"{np.subtract(*ours.loc[('gap', 'ridge'), ['r2_geom_hi', 'r2_geom_lo']]):.3f}",
        "ridge_gap_loo": variant_score(LOO_VARIANT),
        "loo_vs_default_gap": rule_verdict("LOO"),
        "ridge_gap_gcv": variant_score(GCV_VARIANT),
        "gcv_vs_default_gap": rule_verdict("GCV"),
        "default_alpha": alpha(DEFAULT_VARIANT),
        "loo_alpha": alpha(LOO_VARIANT),
        "gcv_alpha": alpha(GCV_VARIANT),
        "allrows_gcv": variant_score(allrows_gcv),
        "allrows_gcv_alpha": f"{vs.loc[allrows_gcv, 'alpha_geom_median']:.2g}",
        "allrows_default": variant_score(allrows),
        "allrows_default_alpha": alpha(allrows),
        "allrows_loo": variant_score(variant_name(projection="all rows", rule="LOO")),
        "gcv_vs_default_allrows": rule_verdict("GCV", projection="all rows"),
        "loo_vs_default_allrows": rule_verdict("LOO", projection="all rows"),
        "allrows_vs_train": _verdict(run.variant_diffs, "all rows", "train folds", a=allrows),
        "mlp_gap": score("gap", "mlp"),
        "mlp_gap_std": f"{ours.loc[('gap', 'mlp'), 'r2_geom_std']:.3f}",
        "mlp_vs_ridge_gap": _verdict(run.probes_vs_ridge, "MLP", "ridge", target="gap", a="mlp"),
        "gbt_gap": score("gap", "gbt"),
        "gbt_vs_ridge_gap": _verdict(run.probes_vs_ridge, "GBT", "ridge", target="gap", a="gbt"),
        "gcv_vs_default_full_gap": rule_verdict("GCV", table=run.rules_full, target="gap"),
        "plain_geom": variant_score(plain),
        "plain_worst": f"{vs.loc[plain, 'r2_geom_worst_fold']:.3g}",
        "plain_full": variant_score(plain, "r2_full"),
        "plain_gcv_geom": variant_score(plain_gcv),
        "plain_gcv_worst": f"{vs.loc[plain_gcv, 'r2_geom_worst_fold']:.3g}",
        "gcv_vs_default_plain": rule_verdict("GCV", scaler="plain"),
        "mass_ridge": score(MASS, "ridge"),
        "mass_mlp": score(MASS, "mlp"),
        "mass_gbt": score(MASS, "gbt"),
        "per_atom_comp": score(MASS_PER_ATOM, "ridge", "r2_comp"),
        "per_atom_ridge": score(MASS_PER_ATOM, "ridge"),
        "per_atom_mlp": score(MASS_PER_ATOM, "mlp"),
        "per_atom_gbt": score(MASS_PER_ATOM, "gbt"),
        "shuffled_ridge": score(shuffled, "ridge"),
        "shuffled_mlp": score(shuffled, "mlp"),
        "shuffled_gbt": score(shuffled, "gbt"),
        "ridge_control_max": f"{ridge_controls[['r2_geom_lo', 'r2_geom_hi']].abs().to_numpy().max():.3f}",
        "nonlinear_chance": ("lies below zero (both intervals exclude it)" if (nonlinear_chance["r2_geom_hi"] < 0).all()
                             else "is not resolved from zero for every nonlinear probe at this n"),
    }
    if dipole:
        gcv_dipole = run.rule_variants["dipole"][GCV_VARIANT]
        facts.update({
            "ridge_dipole": score("dipole", "ridge"),
            "mlp_dipole": score("dipole", "mlp"),
            "gbt_dipole": score("dipole", "gbt"),
            "ridge_dipole_full": score("dipole", "ridge", "r2_full"),
            "mlp_vs_ridge_dipole": _verdict(run.probes_vs_ridge, "MLP", "ridge", target="dipole", a="mlp"),
            "gbt_vs_ridge_dipole": _verdict(run.probes_vs_ridge, "GBT", "ridge", target="dipole", a="gbt"),
            "gcv_dipole_full": format_interval(gcv_dipole.r2_full, *gcv_dipole.ci["r2_full"]),
            "gcv_alpha_full_dipole": f"{full.loc[('dipole', 'GCV'), 'alpha_a']:.3g}",
            "default_alpha_full_dipole": f"{full.loc[('dipole', 'GCV'), 'alpha_b']:.3g}",
            "gcv_vs_default_full_dipole": rule_verdict("GCV", table=run.rules_full, target="dipole"),
        })
    return facts



def aev_measurements(run: AEVRun) -> list:
    """The scorecard's numbers from this chapter (:mod:`cpd_core.scorecard`): ANI-2x's gap R²_geom under ridge
    and under the MLP, our protocol, with 95 % intervals."""
    from cpd_core.scorecard import Measurement

    ours = run.summary.set_index(["target", "probe"])
    out = []
    for claim, probe in (("ani_gap_ridge", "ridge"), ("ani_gap_mlp", "mlp")):
        if ("gap", probe) not in ours.index:
            continue
        row = ours.loc[("gap", probe)]
        out.append(Measurement(claim, float(row["r2_geom"]), float(row["r2_geom_lo"]), float(row["r2_geom_hi"]),
                               n=int(run.n), what=f"ANI-2x AEV, {probe}, our protocol (clipped scaler, "
                                                  "training-fold projection, nested penalty)"))
    return out

__all__ = ["aev_measurements", "AEVRun", "CONTROL", "DEFAULT_RULE", "DEFAULT_VARIANT", "GCV_VARIANT", "LOO_VARIANT", "RIDGE_VARIANTS",
           "aev_chapter", "aev_facts", "molecular_mass", "paper_table", "probe_comparisons", "representation_cpd",
           "representation_results", "result_tables", "ridge_variants", "rule_comparisons", "variant_comparisons",
           "variant_name"]
