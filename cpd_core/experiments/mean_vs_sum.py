r"""Mean or sum pooling: what a counts basis removes from each.

A model's per-atom features :math:`h_a` are pooled per structure :math:`s` of :math:`N_s` atoms either
as a mean, :math:`\bar h_s = \frac1{N_s}\sum_{a \in s} h_a`, or as a sum, :math:`S_s = N_s \bar h_s`.
Write each atom's features as what its element alone gives plus the rest,
:math:`h_a = w_{e(a)} + g_a`. Then

.. math::

    S_s = \sum_e n_{se}\, w_e + \sum_a g_a, \qquad
    \bar h_s = \sum_e \frac{n_{se}}{N_s}\, w_e + \frac1{N_s}\sum_a g_a .

The element part of a sum is *linear in the counts* :math:`n_{se}`, so projecting out the span of
counts and an intercept removes it exactly. The element part of a mean is linear in the *fractions*
:math:`n_{se}/N_s`, which are not in that span: the projection leaves it in the residual, where a
probe can read composition (the mean atomic mass, linear in fractions, is the control that shows it).
Conversely the geometric part of a sum grows with molecular size, which the counts do explain, so the
projection also removes the size-driven share of :math:`\sum_a g_a`. Which pooling isolates geometry
better is thus an empirical question per model and target; this chapter answers it with paired
intervals.

Sum-pooled features come from the cached mean-pooled ones (:func:`cpd_core.extract.sum_from_mean`): no
second extraction. For each pooling the block is chosen nested (:func:`cpd_core.scan_blocks`), and
the two poolings are compared paired on the same molecules and folds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from cpd_core.errors import InputError

POOLINGS = ("mean", "sum")


@dataclass
class PoolingRun:
    """What :func:`mean_vs_sum` computed.

    Attributes
    ----------
    summary : pandas.DataFrame
        One row per (model, target, pooling): the nested ridge CPD at the block chosen (``block``:
        most often), R²_full, R²_comp and R²_geom with 95 % intervals, and the composition share of the
        chosen block's features (:func:`~cpd_core.experiments.layer_profiles.composition_share`).
    contrasts : pandas.DataFrame
        One row per (model, target): R²_geom(sum) − R²_geom(mean), paired, with its interval;
        ``resolved`` when the interval excludes zero and does not lie within ±0.0005 (a difference that
        prints as +0.000 is round-off between two near-identical fits).
    results : dict
        ``(model, target, pooling)`` → :class:`~cpd_core.CPDResult`.
    n : int
        Molecules probed.
    """

    summary: pd.DataFrame
    contrasts: pd.DataFrame
    results: dict = field(repr=False)
    n: int


def compare_poolings(pooled: dict, C, ys: dict, info: dict | None = None, cv: int = 5, cache: bool = True):
    """Nested ridge CPD of one model's blocks under each pooling, and the paired contrast sum − mean.

    Parameters
    ----------
    pooled : dict
        ``{"mean": blocks, "sum": blocks}``, each block name → features on the same structures.
    C, ys, cv
        Composition matrix, target name → values, folds (seed 0).
    info : dict, optional
        Copied into every row (model name and card).

    Returns
    -------
    (rows, contrasts, results)
        Rows of :attr:`PoolingRun.summary` and :attr:`PoolingRun.contrasts`, and ``(target, pooling)`` →
        :class:`~cpd_core.CPDResult`.
    """
    from cpd_core.experiments.layer_profiles import composition_share
    from cpd_core.intervals import compare
    from cpd_core.selection import scan_blocks

    missing = [p for p in POOLINGS if p not in pooled]
    if missing:
        raise InputError(f"blocks under {missing} pooling are missing")
    info = dict(info or {})
    rows, contrasts, results = [], [], {}
    for pooling in POOLINGS:
        blocks = pooled[pooling]
        scan = scan_blocks(blocks, C, ys, cv=cv, seed=0, cache=cache)
        for t in ys:
            choice = scan.choose(t)
            res = results[(t, pooling)] = choice.result
            share = composition_share(blocks[choice.block], C, res.fold_of)
            summary = res.summary()
            rows.append({**info, "target": t, "pooling": pooling, "block": choice.block,
                         **{k: summary[k] for k in ("r2_full", "r2_full_lo", "r2_full_hi", "r2_comp",
                                                    "r2_geom", "r2_geom_lo", "r2_geom_hi")},
                         "comp_share": share[0], "comp_share_lo": share[1], "comp_share_hi": share[2]})
    for t in ys:
        c = compare(results[(t, "sum")], results[(t, "mean")])
        # equal at the printed precision (the same block and a near-constant fit under both poolings differ by
        # round-off, which a paired interval can still exclude zero from): not a resolved difference
        same = max(abs(c.lo), abs(c.hi)) < 5e-4
        contrasts.append({**info, "target": t, "mean": c.b, "sum": c.a, "sum − mean": c.diff,
                          "sum − mean_lo": c.lo, "sum − mean_hi": c.hi, "resolved": c.resolved and not same})
    return rows, contrasts, results


def mean_vs_sum(models: Sequence[str] | None = None, n: int | None = 500, seed: int = 0,
                targets: Sequence[str] = ("gap", "dipole"), controls: bool = True, cv: int = 5,
                device: str = "auto", progress: bool = False) -> PoolingRun:
    """Nested ridge CPD of each model under mean and under sum pooling, on the models chapter's molecules.

    Parameters
    ----------
    models : sequence of str, optional
        Registry names (default :func:`~cpd_core.experiments.model_gradient.default_models`); random-init
        twins with their first seed. The probe set is the models chapter's for the same models, ``n``
        and ``seed``, so the mean-pooled scans are read from its cache.
    targets : sequence of str
        QM9 targets; with ``controls`` the mean atomic mass (:data:`~cpd_core.experiments.controls.MASS_PER_ATOM`,
        linear in fractions) and the molecular mass (linear in counts) are added.
    """
    from tqdm import tqdm

    from cpd_core.datasets.qm9 import check_targets
    from cpd_core.experiments.controls import MASS_PER_ATOM, control_targets
    from cpd_core.experiments.model_gradient import default_models
    from cpd_core.experiments.probe_set import probe_set
    from cpd_core.models import REGISTRY

    targets = check_targets(targets)
    models = default_models() if models is None else list(models)
    ps = probe_set(models, n=n, seed=seed)
    ys = ps.targets(targets)
    if controls:
        every = control_targets(ps.data.numbers, ys, seed=seed)
        ys.update({k: v for k, v in every.items() if k in (MASS_PER_ATOM, "mass (control)")})
    rows, contrasts, results = [], [], {}
    for name, s in tqdm(ps.runs((0,)), desc="mean vs sum", disable=not progress):
        card = REGISTRY[name]
        info = {"model": name, "family": card.family, "status": card.status}
        pooled = {p: ps.blocks(name, s, device=device, progress=progress, pooling=p) for p in POOLINGS}
        r, c, res = compare_poolings(pooled, ps.C, ys, info, cv=cv)
        rows += r
        contrasts += c
        results.update({(name, t, p): v for (t, p), v in res.items()})
        del pooled
    if not rows:
        raise InputError("no model was run")
    return PoolingRun(pd.DataFrame(rows), pd.DataFrame(contrasts), results, len(ps.data))


def pooling_table(run: PoolingRun, score: str = "r2_geom") -> pd.DataFrame:
    """Wide table: one row per (model, target), ``score`` [interval] under mean and under sum, and the paired contrast."""
    s = run.summary
    rows = []
    for (model, target), grp in s.groupby(["model", "target"], sort=False):
        by = grp.set_index("pooling")
        row = {"model": model, "status": by["status"].iloc[0], "target": target}
        for p in POOLINGS:
            row[p] = f"{by.loc[p, score]:.3f} [{by.loc[p, score + '_lo']:.3f}, {by.loc[p, score + '_hi']:.3f}]"
        c = run.contrasts[(run.contrasts["model"] == model) & (run.contrasts["target"] == target)].iloc[0]
        if score == "r2_geom":
            row["sum − mean"] = f"{c['sum − mean']:+.3f} [{c['sum − mean_lo']:+.3f}, {c['sum − mean_hi']:+.3f}]"
            row["resolved"] = bool(c["resolved"])
        rows.append(row)
    return pd.DataFrame(rows)


def sign_changes(run: PoolingRun, min_size: float = 0.05) -> pd.DataFrame:
    """(model, target) whose R²_geom has opposite signs under the two poolings, each interval excluding zero.

    A score counts as signed only beyond ``min_size``: a probe with nothing to read scores a few
    thousandths below zero in cross-validation (the training mean is not the held-out one), and its
    interval can exclude zero without meaning anything.
    """
    s = run.summary
    rows = []
    for (model, target), grp in s.groupby(["model", "target"], sort=False):
        by = grp.set_index("pooling")
        signs = {p: (1 if by.loc[p, "r2_geom_lo"] > 0 and by.loc[p, "r2_geom"] > min_size else
                     -1 if by.loc[p, "r2_geom_hi"] < 0 and by.loc[p, "r2_geom"] < -min_size else 0) for p in POOLINGS}
        if signs["mean"] * signs["sum"] < 0:
            rows.append({"model": model, "target": target, "mean": by.loc["mean", "r2_geom"], "sum": by.loc["sum", "r2_geom"]})
    return pd.DataFrame(rows, columns=["model", "target", "mean", "sum"])


def pooling_facts(run: PoolingRun) -> dict:
    """The numbers the mean-vs-sum chapter's prose quotes."""
    from cpd_core.experiments.controls import MASS_PER_ATOM

    c, s = run.contrasts, run.summary

    def where(frame):
        names = [f"{m} ({t})" for m, t in zip(frame["model"], frame["target"])]
        return ", ".join(names) if names else "none"

    real = c[~c["target"].str.contains("control")]
    mpa = s[s["target"] == MASS_PER_ATOM].set_index(["model", "pooling"]) if MASS_PER_ATOM in set(s["target"]) else None
    share = s.groupby("pooling")["comp_share"]
    facts = {"n_mol": run.n, "n_models": int(s["model"].nunique()),
             "sum_better": where(real[real["resolved"] & (real["sum − mean"] > 0)]),
             "mean_better": where(real[real["resolved"] & (real["sum − mean"] < 0)]),
             "n_unresolved": int((~real["resolved"]).sum()), "n_pairs": len(real),
             "sign_changes": where(sign_changes(run)),
             "share_mean": f"{share.median()['mean']:.2f}", "share_sum": f"{share.median()['sum']:.2f}"}
    if mpa is not None:
        mean_read = mpa.xs("mean", level="pooling")
        sum_read = mpa.xs("sum", level="pooling")
        facts["mpa_mean_read"] = int((mean_read["r2_geom_lo"] > 0).sum())
        facts["mpa_sum_read"] = int((sum_read["r2_geom_lo"] > 0).sum())
        facts["mpa_mean_max"] = f"{mean_read['r2_geom'].max():.2f}"
        facts["mpa_sum_max"] = f"{sum_read['r2_geom'].max():.2f}"
        if facts["mpa_mean_read"] > facts["mpa_sum_read"]:
            facts["mpa_read"] = ("more often under mean pooling, as the algebra predicts: the counts projection "
                                 "leaves the fraction part of a mean in the residual")
        elif facts["mpa_mean_read"] == facts["mpa_sum_read"] == 0:
            facts["mpa_read"] = ("under neither pooling with an interval above zero: the fraction part the algebra "
                                 "leaves in a mean-pooled residual is too small for a linear probe to resolve at this n")
        else:
            facts["mpa_read"] = ("no more often under mean pooling than under sum pooling, against the algebra's "
                                 "expectation: see the table")
    ani = s[(s["model"] == "ani2x") & (s["target"] == "gap")].set_index("pooling")
    if len(ani) == 2:
        signs = {p: ("positive" if ani.loc[p, "r2_geom_lo"] > 0 else "negative" if ani.loc[p, "r2_geom_hi"] < 0
                     else "not resolved from zero") for p in POOLINGS}
        sign = (f"{signs['mean']} under both" if signs["mean"] == signs["sum"]
                else f"{signs['mean']} under mean and {signs['sum']} under sum pooling")
        facts["ani2x_gap"] = ("; ".join(f"{p} {ani.loc[p, 'r2_geom']:.3f} [{ani.loc[p, 'r2_geom_lo']:.3f}, "
                                        f"{ani.loc[p, 'r2_geom_hi']:.3f}]" for p in POOLINGS) + f": {sign}")
    else:
        facts["ani2x_gap"] = "not run here"
    return facts


__all__ = ["POOLINGS", "PoolingRun", "compare_poolings", "mean_vs_sum", "pooling_facts", "pooling_table", "sign_changes"]
