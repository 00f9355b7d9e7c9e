r"""Irreps routing: which channel of an equivariant model carries which property.

An equivariant network keeps per-atom features of several irrep orders: scalars (:math:`L = 0`),
vectors (:math:`L = 1`), rank-2 tensors (:math:`L = 2`) and higher. Their :math:`L \ge 1` blocks are
made rotation invariant before pooling two ways (:mod:`cpd_core.pooling`): the mean of per-atom
norms (``@atom-norm``) or the norm of the pooled vector (``@pooled-norm``). The paper reports that
MACE *routes* the dipole moment to its :math:`L = 1` channel (ridge :math:`R^2_\text{geom}` 0.59 from
:math:`L = 1` against 0.38 from :math:`L = 0`) and the HOMO-LUMO gap to :math:`L = 0` (0.76 against
0.34), and that ViSNet shows no such pattern.

Here, for each equivariant model, each channel kind (``L0``; ``L1@atom-norm``, ``L1@pooled-norm``,
``L2@…``) gets a nested choice of its most informative layer (:meth:`cpd_core.selection.BlockScan.choose`
among that kind's blocks, chosen on inner folds, scored on outer ones), and the channels are compared
paired on the same molecules and folds: :math:`\Delta_L = R^2_\text{geom}(L) - R^2_\text{geom}(L0)` with
its 95 % interval. *Routing* of a target to a channel is claimed only where that interval excludes
zero. Whether routing needs training is the difference of differences between a trained model and its
random-init twin, :math:`\Delta_L^\text{trained} - \Delta_L^\text{twin}`, also paired
(:func:`cpd_core.intervals.paired_combination`).

The scans are those of the models and task-alignment chapters (same probe sets, cached), extended to
other QM9 targets, to ask what the paper did not: does the pattern follow the *tensor rank* of the
target (the dipole is QM9's one vector target; HOMO, LUMO and the polarizability are scalars)?
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from cpd_core.experiments.layer_profiles import parse_block
from cpd_core.paper import paper_value

#: QM9 targets by tensor rank: the dipole moment is the one vector property (its norm is probed).
VECTOR_TARGETS = ("dipole",)


def channel(block: str) -> str | None:
    """The channel kind of a block: ``"L0"`` for a scalar block, ``"L1@atom-norm"`` etc. for an invariant of an
    :math:`L \\ge 1` block, ``None`` for a block outside the layer scheme.

    Examples
    --------
    >>> channel("layer2/L0"), channel("layer2/L1@pooled-norm"), channel("embedding/L0"), channel("aev/radial")
    ('L0', 'L1@pooled-norm', 'L0', None)
    """
    p = parse_block(block)
    if p["depth"] is None:
        return None
    return "L0" if p["L"] == 0 else f"L{p['L']}@{p['invariant']}"


def channels(blocks: Sequence[str]) -> dict[str, list[str]]:
    """Channel kind → its blocks (all layers), ``L0`` first, then by order and invariant."""
    out: dict[str, list[str]] = {}
    for b in blocks:
        c = channel(b)
        if c is not None:
            out.setdefault(c, []).append(b)
    return dict(sorted(out.items(), key=lambda kv: (kv[0] != "L0", kv[0])))


@dataclass
class RoutingRun:
    """What :func:`irreps_routing` computed.

    Attributes
    ----------
    channels : pandas.DataFrame
        One row per (model, seed, target, channel): nested ridge R²_geom with its interval, the layer
        chosen most often, and the model's card.
    contrasts : pandas.DataFrame
        One row per (model, seed, target, L ≥ 1 channel): ``delta`` = R²_geom(channel) − R²_geom(L0), paired,
        with ``delta_lo``/``delta_hi`` and ``resolved``.
    results : dict
        ``(model, seed, target, channel)`` → :class:`~cpd_core.CPDResult`.
    n : dict
        Probe set label → molecules probed.
    """

    channels: pd.DataFrame
    contrasts: pd.DataFrame
    results: dict = field(repr=False)
    n: dict


def route_blocks(blocks: dict, C, ys: dict, info: dict | None = None, cv: int = 5, cache: bool = True):
    """One model's channels and contrasts from its blocks: ``(channel rows, contrast rows, results)``.

    ``results`` maps ``(target, channel)`` to the nested :class:`~cpd_core.CPDResult`; ``info`` is copied
    into every row. ``None`` when the blocks have no L ≥ 1 channel. The scan is cached (``cache``), so
    blocks the models chapter scanned are read, not refit.
    """
    from cpd_core.intervals import compare
    from cpd_core.selection import scan_blocks

    kinds = channels(blocks)
    if len(kinds) < 2 or "L0" not in kinds:
        return None
    info = dict(info or {})
    scan = scan_blocks({b: blocks[b] for bs in kinds.values() for b in bs}, C, ys, cv=cv, seed=0, cache=cache)
    chan_rows, contrast_rows, results = [], [], {}
    for t in ys:
        for kind, among in kinds.items():
            choice = scan.choose(t, among=among)
            res = results[(t, kind)] = choice.result
            chan_rows.append({**info, "target": t, "channel": kind, "layer": parse_block(choice.block)["layer"],
                              "r2_geom": res.r2_geom, "r2_geom_lo": res.ci["r2_geom"][0],
                              "r2_geom_hi": res.ci["r2_geom"][1]})
        for kind in kinds:
            if kind != "L0":
                c = compare(results[(t, kind)], results[(t, "L0")])
                contrast_rows.append({**info, "target": t, "channel": kind, "delta": c.diff, "delta_lo": c.lo,
                                      "delta_hi": c.hi, "resolved": c.resolved})
    return chan_rows, contrast_rows, results


def route(models: Sequence[str], n: int | None = 500, seed: int = 0, rows=None,
          targets: Sequence[str] = ("gap", "dipole"), cv: int = 5, twin_seeds: Sequence[int] = (0,),
          molecules: str = "QM9 subset", device: str = "auto", progress: bool = False) -> RoutingRun:
    """Channels and their paired contrasts for ``models`` on one probe set.

    ``models``, ``n``, ``seed`` and ``rows`` as in :func:`~cpd_core.experiments.model_gradient.model_gradient`
    (the probe set, and so the cached scans, are shared with it when they are equal). Models without
    an :math:`L \\ge 1` channel are skipped.
    """
    from tqdm import tqdm

    from cpd_core.datasets.qm9 import check_targets
    from cpd_core.experiments.probe_set import probe_set
    from cpd_core.models import REGISTRY

    targets = check_targets(targets)
    ps = probe_set(models, n=n, seed=seed, rows=rows)
    ys = ps.targets(targets)
    chan_rows, contrast_rows, results = [], [], {}
    for name, s in tqdm(ps.runs(twin_seeds), desc="irreps routing", disable=not progress):
        card = REGISTRY[name]
        blocks = ps.blocks(name, s, device=device, progress=progress)
        info = {"molecules": molecules, "model": name, "seed": s, "family": card.family, "status": card.status,
                "twin_of": card.twin_of}
        got = route_blocks(blocks, ps.C, ys, info, cv=cv)
        if got is None:
            continue                                   # no L >= 1 channel: nothing to route
        chan_rows += got[0]
        contrast_rows += got[1]
        results.update({(name, s, t, kind): r for (t, kind), r in got[2].items()})
        del blocks
    return RoutingRun(pd.DataFrame(chan_rows), pd.DataFrame(contrast_rows), results, {molecules: len(ps.data)})


def irreps_routing(models: Sequence[str] | None = None, archs: Sequence[str] | None = None, n: int | None = 500,
                   seed: int = 0, targets: Sequence[str] = ("gap", "dipole"), cv: int = 5,
                   twin_seeds: Sequence[int] = (0,), device: str = "auto", progress: bool = False) -> RoutingRun:
    """Routing of the models chapter's equivariant models on its subset, and of the equivariant networks
    trained here on their held-out test split (``archs``, default every trained one; ``[]`` for none).

    ``models`` default to :func:`~cpd_core.experiments.model_gradient.default_models`; the probe set is
    built from all of them (the models chapter's molecules), and only those with an L ≥ 1 channel are
    reported.
    """
    from cpd_core.experiments.probe_set import chapter_sets

    runs = [route(ms, targets=targets, cv=cv, twin_seeds=twin_seeds, molecules=label, device=device,
                  progress=progress, **kw) for label, ms, kw in chapter_sets(models, archs, n=n, seed=seed)]
    return RoutingRun(pd.concat([r.channels for r in runs], ignore_index=True),
                      pd.concat([r.contrasts for r in runs], ignore_index=True),
                      {k: v for r in runs for k, v in r.results.items()}, {k: v for r in runs for k, v in r.n.items()})


def twin_pairs(run: RoutingRun) -> list[tuple[str, str]]:
    """(trained model, its random-init twin) of every pair both of which are in ``run``.

    A twin is paired with the model it is the twin of (its card's ``twin_of``) and, for the networks
    trained here, with every trained network of its architecture (gap- and U0-trained share one twin).
    """
    from cpd_core.experiments.task_alignment import _arch_supervision

    cards = run.channels.drop_duplicates("model").set_index("model")
    pairs = []
    for twin, row in cards[cards["status"] == "random-init"].iterrows():
        arch = _arch_supervision(twin)[0] if "-qm9-" in twin else None
        for model, other in cards[cards["status"] != "random-init"].iterrows():
            if model == row["twin_of"] or (arch and "-qm9-" in model and _arch_supervision(model)[0] == arch):
                pairs.append((model, twin))
    return pairs


def training_effect(run: RoutingRun, targets: Sequence[str] = ("dipole", "gap")) -> pd.DataFrame:
    r"""Does routing need training? :math:`\Delta_L^\text{trained} - \Delta_L^\text{twin}` per pair, paired.

    One row per (trained model, twin, target, L ≥ 1 channel both have): the trained model's
    contrast, the twin's (its first seed), and their difference with its 95 % interval (every
    replicate resamples the same molecules for all four results).
    """
    from cpd_core.intervals import paired_combination

    rows = []
    seed0 = int(run.channels["seed"].min()) if len(run.channels) else 0
    for model, twin in twin_pairs(run):
        for t in targets:
            for kind in sorted({k[3] for k in run.results if k[0] == model and k[2] == t and k[3] != "L0"}):
                keys = [(model, 0, t, kind), (model, 0, t, "L0"), (twin, seed0, t, kind), (twin, seed0, t, "L0")]
                if not all(k in run.results for k in keys):
                    continue
                res = [run.results[k] for k in keys]
                diff, lo, hi = paired_combination(res, [1, -1, -1, 1])
                rows.append({"model": model, "twin": twin, "target": t, "channel": kind,
                             "delta trained": res[0].r2_geom - res[1].r2_geom,
                             "delta twin": res[2].r2_geom - res[3].r2_geom,
                             "training": diff, "training_lo": lo, "training_hi": hi,
                             "resolved": lo > 0 or hi < 0})
    return pd.DataFrame(rows)


def routing_verdicts(run: RoutingRun) -> pd.DataFrame:
    r"""Per model, seed and L ≥ 1 channel: is the dipole routed to it, and the gap away from it?

    ``dipole → L`` when the dipole's contrast :math:`\Delta_L` has an interval above zero; ``gap → L0``
    when the gap's lies below zero; ``routing`` when both hold: the paper's pattern for MACE.
    """
    c = run.contrasts
    if c.empty:
        return pd.DataFrame(columns=["molecules", "model", "seed", "family", "status", "channel", "dipole delta",
                                     "gap delta", "dipole → L", "gap → L0", "routing"])
    rows = []
    for (model, seed, kind), grp in c.groupby(["model", "seed", "channel"], sort=False):
        by = grp.set_index("target")
        if not {"dipole", "gap"} <= set(by.index):
            continue
        dip, gap = by.loc["dipole"], by.loc["gap"]
        rows.append({"molecules": dip["molecules"], "model": model, "seed": seed, "family": dip["family"],
                     "status": dip["status"], "channel": kind, "dipole delta": _interval(dip), "gap delta": _interval(gap),
                     "dipole → L": bool(dip["delta_lo"] > 0), "gap → L0": bool(gap["delta_hi"] < 0),
                     "routing": bool(dip["delta_lo"] > 0 and gap["delta_hi"] < 0)})
    return pd.DataFrame(rows)


def rank_table(run: RoutingRun) -> pd.DataFrame:
    """Per model and L ≥ 1 channel (first seed): the contrast of every target, marked by tensor rank.

    A channel that follows the tensor rank of the target helps the vector target (the dipole) and
    none of the scalar ones. Cells are ``delta [lo, hi]``; ``vector only`` says whether the L ≥ 1 channel
    beats L0 (interval above zero) for the dipole and for no scalar target.
    """
    c = run.contrasts
    if c.empty:
        return pd.DataFrame()
    c = c[c["seed"] == c["seed"].min()]
    targets = list(dict.fromkeys(c["target"]))
    rows = []
    for (model, kind), grp in c.groupby(["model", "channel"], sort=False):
        by = grp.set_index("target")
        row = {"model": model, "status": by["status"].iloc[0], "channel": kind}
        for t in targets:
            row[f"{t} ({'vector' if t in VECTOR_TARGETS else 'scalar'})"] = _interval(by.loc[t]) if t in by.index else "—"
        helps = {t for t in by.index if by.loc[t, "delta_lo"] > 0}
        row["vector only"] = bool(helps) and helps <= set(VECTOR_TARGETS)
        rows.append(row)
    return pd.DataFrame(rows)


def _interval(row, key: str = "delta") -> str:
    return f"{row[key]:+.3f} [{row[key + '_lo']:+.3f}, {row[key + '_hi']:+.3f}]"


#: The paper's MACE numbers (ridge R²_geom by channel): (target, channel) → value.
PAPER_MACE = {(t, c): paper_value("r2_geom", f"MACE {c}", t, "ridge")
              for t, c in (("dipole", "L1"), ("dipole", "L0"), ("gap", "L0"), ("gap", "L1"))}


def routing_facts(run: RoutingRun) -> dict:
    """The numbers the routing chapter's prose quotes."""
    every = routing_verdicts(run)
    v = every[every["seed"] == every["seed"].min()] if len(every) else every
    eff = training_effect(run)
    ranks = rank_table(run)
    trained = v[v["status"] != "random-init"]
    twins = v[v["status"] == "random-init"]

    def models_where(frame, col):
        hit = list(dict.fromkeys(frame[frame[col]]["model"]))
        return ", ".join(hit) if hit else "none"

    def twins_where(col):
        """Twins with ``col`` in some channel, and in how many of their seeds."""
        tw = every[every["status"] == "random-init"]
        out = []
        for model, grp in tw.groupby("model", sort=False):
            per_seed = grp.groupby("seed")[col].any()
            if per_seed.any():
                out.append(f"{model} ({int(per_seed.sum())} of {len(per_seed)} seeds)")
        return ", ".join(out) if out else "none"

    facts = {"n_sets": "; ".join(f"{k}: {n:,} molecules" for k, n in run.n.items()),
             "n_models": int(v["model"].nunique()) if len(v) else 0,
             "n_trained": int(trained["model"].nunique()) if len(trained) else 0,
             "n_twins": int(twins["model"].nunique()) if len(twins) else 0,
             "routing_trained": models_where(trained, "routing"), "routing_twins": twins_where("routing"),
             "dipole_l1_trained": models_where(trained, "dipole → L"),
             "gap_l0_trained": models_where(trained, "gap → L0")}
    per_inv = {}
    for inv in ("atom-norm", "pooled-norm"):
        sub = v[v["channel"].str.endswith(inv) & (v["status"] != "random-init")]
        per_inv[inv] = models_where(sub, "routing")
    facts["routing_atom_norm"], facts["routing_pooled_norm"] = per_inv["atom-norm"], per_inv["pooled-norm"]
    needs = eff[(eff["target"] == "dipole") & eff["resolved"] & (eff["training"] > 0)] if len(eff) else eff
    facts["training_raises_dipole"] = ", ".join(dict.fromkeys(needs["model"])) if len(needs) else "none"
    facts["n_pairs"] = int(eff[["model", "twin"]].drop_duplicates().shape[0]) if len(eff) else 0
    if len(ranks) and "vector only" in ranks:
        tr = ranks[ranks["status"] != "random-init"]
        facts["vector_only"] = ", ".join(dict.fromkeys(tr[tr["vector only"]]["model"])) or "none"
        scalar_cols = [c for c in ranks.columns if c.endswith("(scalar)")]
        facts["scalar_targets"] = ", ".join(c.split(" ")[0] for c in scalar_cols) or "none"
    else:
        facts["vector_only"], facts["scalar_targets"] = "none", "none"
    return facts



#: The scorecard's routing claims: claim → (our model, target, sign of R²_geom(L1) − R²_geom(L0) in the claim).
SCORECARD_ROUTING = {"mace_routing_dipole": ("mace-qm9-U0", "dipole", 1), "mace_routing_gap": ("mace-qm9-U0", "gap", -1),
                     "visnet_no_routing": ("visnet-qm9-U0", "dipole", 1)}


def routing_measurements(run: RoutingRun) -> list:
    """The scorecard's numbers from this chapter (:mod:`cpd_core.scorecard`): for the energy-trained MACE and
    ViSNet trained here (the paper's models were trained on energies), the paired contrast between each
    :math:`L = 1` invariant and :math:`L = 0`, signed as the claim states it; both invariants are reported."""
    from cpd_core.scorecard import Measurement

    c = run.contrasts
    if c.empty:
        return []
    c = c[c["seed"] == c["seed"].min()]
    out = []
    for claim, (model, target, sign) in SCORECARD_ROUTING.items():
        rows = c[(c["model"] == model) & (c["target"] == target) & c["channel"].str.startswith("L1@")]
        for _, r in rows.iterrows():
            lo, hi = sorted((sign * r["delta_lo"], sign * r["delta_hi"]))
            out.append(Measurement(claim, float(sign * r["delta"]), float(lo), float(hi), n=int(run.n.get(r["molecules"], 0)),
                                   what=f"{model}, {target}, {r['channel']} vs L0, paired", comparable=False,
                                   reason=f"{model.split('-')[0]} trained here on QM9 U0 with a CPU budget, not the "
                                          "paper's network"))
    return out

__all__ = ["routing_measurements", "PAPER_MACE", "RoutingRun", "VECTOR_TARGETS", "channel", "channels", "irreps_routing", "rank_table",
           "route", "route_blocks", "routing_facts", "routing_verdicts", "training_effect", "twin_pairs"]
