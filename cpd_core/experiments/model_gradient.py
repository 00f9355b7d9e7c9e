r"""The disentanglement gradient: CPD of every registered model on QM9, at its most informative block.

For each model (:mod:`cpd_core.models`) the pooled features of every block (layer × irrep ×
invariant, see :mod:`cpd_core.extract`) are candidates; the most informative block for a target
is chosen on inner folds of each training fold and scored on the outer fold
(:func:`cpd_core.best_block`), so the reported :math:`R^2_\text{geom}` carries no winner's curse.
The naive maximum over blocks is kept beside it, labelled. The nonlinear probes (MLP, GBT) run on
each outer fold's chosen block, on the geometric residual only (their R²_full is not reported: NaN).
Every block is scored once for all targets, controls included (:func:`cpd_core.scan_blocks`), and the
routing comparison chooses among subsets of that scan. Random-init twins are drawn with several seeds, and control
targets (:mod:`cpd_core.experiments.controls`) are probed for every model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from cpd_core.datasets.qm9 import check_targets
from cpd_core.decomposition import run_pending
from cpd_core.errors import InputError
from cpd_core.experiments.controls import control_targets
from cpd_core.experiments.probe_set import SHARED_TARGETS
from cpd_core.intervals import compare
from cpd_core.selection import scan_blocks


#: Named model sets of :func:`default_models`.
MODEL_SETS = ("offline", "with-partner", "book")

#: The book scale's molecular models: what the CPU build runs in its time budget (the offline models
#: without a caveat when matgl's M3GNet and TensorNet checkpoints were still unusable; their fix,
#: :func:`cpd_core.models.matgl.legacy_conventions`, adds them, and their twins, at the full scale).
BOOK_SET = ("ani2x-aev", "ani2x", "ani2x-random", "sevennet-0", "sevennet-0-random", "so3lr", "so3lr-random",
            "chgnet-0.3.0", "chgnet-0.3.0-random", "so3net-ani1x", "so3net-random")


def default_models(which: str = "offline") -> list[str]:
    """Registered models whose weights can be had offline and that carry no caveat, in registry order.

    The networks trained here on QM9 (:mod:`cpd_core.models.trained`) and their twins have a
    chapter of their own (:mod:`cpd_core.experiments.task_alignment`) and are left out.

    Parameters
    ----------
    which : {"offline", "with-partner", "book"}
        ``"offline"``: all of them. ``"book"``: those of :data:`BOOK_SET` (the book scale's CPU set).
        ``"with-partner"``: without the random-init twins whose trained
        model is not among them (the MACE-MP-0 and MACE-OFF shapes, whose weights need a download):
        such a twin is no control for any claim made offline, and on a CPU its extraction is most
        of the chapter's time (the book scale runs this set; the full scale the other).
    """
    from cpd_core.models import REGISTRY
    from cpd_core.models.trained import REGISTRY_CARDS as trained_here

    if which not in MODEL_SETS:
        raise InputError(f"unknown model set {which!r}; choose one of {MODEL_SETS} or list the models")
    names = [name for name, card in REGISTRY.items() if card.offline and not card.caveat and name not in trained_here]
    if which == "book":
        names = [n for n in names if n in BOOK_SET]
    if which == "with-partner":
        names = [n for n in names if REGISTRY[n].status != "random-init" or REGISTRY[n].twin_of in names]
    return names


def best_blocks(scan: pd.DataFrame) -> dict[str, str]:
    """Target → the block with the highest ridge R²_geom in ``scan`` (the naive choice).

    Examples
    --------
    >>> scan = pd.DataFrame({"block": ["a", "b", "a", "b"], "target": ["gap", "gap", "mu", "mu"],
    ...                      "r2_geom": [0.1, 0.5, 0.7, 0.2]})
    >>> best_blocks(scan)
    {'gap': 'b', 'mu': 'a'}
    """
    idx = scan.groupby("target", sort=False)["r2_geom"].idxmax()
    return {t: scan.loc[i, "block"] for t, i in idx.items()}


#: Kinds of block for the routing comparison: scalar blocks and the two invariants of L >= 1 blocks.
KINDS = ("L0", "atom-norm", "pooled-norm")


def block_kind(block: str) -> str:
    """``"atom-norm"`` / ``"pooled-norm"`` for invariants of L ≥ 1 blocks, else ``"L0"``.

    Examples
    --------
    >>> block_kind("layer2/L1@pooled-norm"), block_kind("layer2/L0"), block_kind("aev")
    ('pooled-norm', 'L0', 'L0')
    """
    for kind in KINDS[1:]:
        if block.endswith("@" + kind):
            return kind
    return "L0"


@dataclass
class GradientRun:
    """What :func:`model_gradient` computed.

    Attributes
    ----------
    summary : pandas.DataFrame
        One row per (model, seed, target, probe): the nested CPD result (block chosen on inner
        folds, :func:`cpd_core.best_block`) with 95 % intervals, the block chosen most often
        (``block``), how the choice went (``chosen``), the naive maximum beside it
        (``naive_block``, ``naive_r2_geom``) and the model's card. Control targets
        (:mod:`cpd_core.experiments.controls`) have ``control`` set.
    scan : pandas.DataFrame
        Every block's outer-fold mean ridge R²_geom per (model, seed, target): the naive view.
    results : dict
        ``(model, seed, target, probe)`` → :class:`~cpd_core.CPDResult`, for paired comparisons.
    routing : pandas.DataFrame
        Equivariant models: nested ridge R²_geom when the block is chosen among L0 blocks only,
        among ``atom-norm`` or among ``pooled-norm`` invariants only, with paired differences.
    dropped : list
        QM9 ids left out because some model does not support their elements.
    ids : numpy.ndarray
        QM9 ids of the molecules probed.
    """

    summary: pd.DataFrame
    scan: pd.DataFrame
    results: dict = field(repr=False)
    routing: pd.DataFrame
    dropped: list
    ids: np.ndarray = field(default=None, repr=False)


def _model_rows(name, seed, blocks, C, ys, probes, cv, control_names, nonlinear, controls=True, prescan=None):
    """Nested CPD of one model's blocks for every target; controls (with ridge only) if ``controls``,
    the probes other than ridge if ``nonlinear``; the targets of ``prescan`` scanned along (into the
    cache) but not reported.

    Returns the rows, the naive scan, the results and the :class:`~cpd_core.selection.BlockScan`
    (every target's blocks scored once, shared with :func:`_routing`)."""
    rows, scans, results = [], [], {}
    ys = {t: y for t, y in ys.items() if controls or t not in control_names}
    block_scan = scan_blocks(blocks, C, {**(prescan or {}), **ys}, cv=cv, seed=0, cache=True)
    choices = {t: block_scan.choose(t) for t in ys}
    # the nonlinear probes' folds of every target run together; their R²_full is not reported
    nonlinear_jobs = [(t, p) for t in ys if nonlinear and t not in control_names for p in probes if p != "ridge"]
    done = dict(zip(nonlinear_jobs, run_pending([choices[t].pending(p, seed=0, full=False) for t, p in nonlinear_jobs])))
    for target, choice in choices.items():
        info = {"target": target, "block": choice.block, "naive_block": choice.naive_block,
                "naive_r2_geom": choice.naive_r2_geom, "control": target in control_names,
                "chosen": ", ".join(f"{b} ×{k}" for b, k in choice.counts.items())}
        scans.append(choice.scan.reset_index().assign(target=target))
        for probe, res in [("ridge", choice.result)] + [(p, done[(target, p)]) for p in probes if (target, p) in done]:
            results[(name, seed, target, probe)] = res
            rows.append({**res.summary(), "probe": probe, **info})
    return rows, pd.concat(scans, ignore_index=True), results, block_scan


def _routing(name, block_scan, targets):
    """Nested ridge R²_geom with the block chosen within each kind, and paired differences.

    The choices come from ``block_scan`` (:func:`_model_rows`' scan of every block): a nested
    choice among a subset of blocks needs no further fit."""
    kinds = {k: [b for b in block_scan.names if block_kind(b) == k] for k in KINDS}
    if not kinds["pooled-norm"]:
        return []
    rows = []
    for target in targets:
        res = {k: block_scan.choose(target, among=v).result for k, v in kinds.items() if v}
        row = {"model": name, "target": target}
        for k, r in res.items():
            row[k], (row[f"{k}_lo"], row[f"{k}_hi"]) = r.r2_geom, r.ci["r2_geom"]
        for other in ("L0", "atom-norm"):
            if other in res:
                c = compare(res["pooled-norm"], res[other])
                row[f"pooled − {other}"], row[f"pooled − {other}_lo"], row[f"pooled − {other}_hi"] = c.diff, c.lo, c.hi
        rows.append(row)
    return rows


def model_gradient(models: Sequence[str] | None = None, n: int | None = 1000, seed: int = 0,
                   targets: Sequence[str] = ("gap", "dipole"), probes: Sequence[str] = ("ridge", "mlp", "gbt"),
                   cv: int = 5, device: str = "auto", progress: bool = False, twin_seeds: Sequence[int] = (0, 1, 2),
                   controls: bool = True, rows=None, routing: bool = True, nonlinear_twins: bool = True,
                   prescan: Sequence[str] | None = SHARED_TARGETS, **extract_kwargs) -> GradientRun:
    """Nested CPD of each model on a seeded QM9 subset, with intervals, controls and twin seeds.

    Every model is probed on the same molecules: those whose elements all the models support
    (e.g. without fluorine when a model covers H, C, N, O only). For each model and target the
    block is chosen on inner folds (:func:`cpd_core.best_block`), ridge is scored nested, and
    the other probes run on each outer fold's chosen block. Random-init twins are drawn with each
    of ``twin_seeds`` (nonlinear probes on the first seed only, the control of the trained model's;
    not at all with ``nonlinear_twins=False``, which saves their cost when no claim needs them).
    With ``controls``, the control
    targets of :func:`~cpd_core.experiments.controls.control_targets` (mass, mass/atom, the first
    target shuffled) are probed with ridge for every model (first seed of a twin).

    Parameters
    ----------
    models : sequence of str, optional
        Registry names; default :func:`default_models`.
    n, seed : int
        QM9 subset (``n=None``: all 130,831 molecules, or all of ``rows``); the seed draws it.
        Folds and bootstrap use seed 0 within the subset.
    rows : array_like of int, optional
        QM9 row positions to draw from (e.g. a held-out test split, :func:`cpd_core.training.probe_rows`).
    targets, probes, cv, device, progress
        As elsewhere; ``extract_kwargs`` go to :func:`cpd_core.extract.features`.
    prescan : sequence of str, optional
        Targets whose block scans are computed along with ``targets`` and kept in the cache, not
        reported (default :data:`~cpd_core.experiments.probe_set.SHARED_TARGETS`, what the later
        chapters read for the same models and molecules): the targets share each block's
        eigendecompositions, so a scan of three more costs about a third more here and saves the
        later chapter a second pass over every block.

    Returns
    -------
    GradientRun
    """
    from tqdm import tqdm

    from cpd_core.experiments.probe_set import probe_set
    from cpd_core.models import REGISTRY

    targets = check_targets(targets)
    ps = probe_set(default_models() if models is None else models, n=n, seed=seed, rows=rows)
    C = ps.C
    ys = ps.targets(targets)
    control_ys = control_targets(ps.data.numbers, ys, seed=seed) if controls else {}
    extra = [t for t in check_targets(prescan or []) if t not in ys]
    prescan_ys = ps.targets(extra) if extra else {}

    # one model's features in memory at a time, extracted on the whole subset (the cache other chapters share)
    summaries, scans, results, routes = [], [], {}, []
    for name, s in tqdm(ps.runs(twin_seeds), desc="CPD per model", disable=not progress):
        card = REGISTRY[name]
        blocks = ps.blocks(name, s, device=device, progress=progress, **extract_kwargs)
        first_seed = card.status != "random-init" or s == twin_seeds[0]  # controls: once per model
        rows_, scan, res, block_scan = _model_rows(name, s, blocks, C, {**ys, **control_ys}, probes, cv, set(control_ys),
                                                   nonlinear=first_seed and (nonlinear_twins or card.status != "random-init"),
                                                   controls=first_seed, prescan=prescan_ys)
        info = {"model": name, "seed": s, "family": card.family, "status": card.status, "twin_of": card.twin_of,
                "domain": card.domain, "parameters": ps.n_parameters[name]}
        summaries.append(pd.DataFrame(rows_).assign(**info))
        scans.append(scan.assign(model=name, seed=s))
        results.update(res)
        if routing and s == 0:
            routes += _routing(name, block_scan, list(ys))
        del blocks, block_scan
    summary = pd.concat(summaries, ignore_index=True)
    front = ["model", "seed", "family", "status", "twin_of", "domain", "parameters", "target", "control", "block",
             "probe"]
    summary = summary[front + [c for c in summary.columns if c not in front]]
    scan = pd.concat(scans, ignore_index=True)
    scan = scan[["model", "seed", "target"] + [c for c in scan.columns if c not in ("model", "seed", "target")]]
    return GradientRun(summary, scan, results, pd.DataFrame(routes), ps.dropped, ps.data.ids)


def _main(summary: pd.DataFrame) -> pd.DataFrame:
    """Rows of real targets (no controls), first twin seed."""
    return summary[~summary["control"].astype(bool) & (summary["seed"] == summary["seed"].min())]


def family_order(summary: pd.DataFrame, target: str = "gap", probe: str = "ridge") -> list[str]:
    """Families by the best R²_geom of their trained (not random-init) models, highest first."""
    main = _main(summary)
    trained = main[(main["status"] != "random-init") & (main["target"] == target) & (main["probe"] == probe)]
    best = trained.groupby("family")["r2_geom"].max().sort_values(ascending=False)
    rest = [f for f in dict.fromkeys(summary["family"]) if f not in best.index]
    return list(best.index) + rest


def gradient_table(summary: pd.DataFrame, probe: str = "ridge") -> pd.DataFrame:
    """Wide table: one row per model (family order), R²_comp and nested R²_geom [95 % interval] per target."""
    sub = _main(summary)
    sub = sub[sub["probe"] == probe]
    wide = sub.pivot_table(index="model", columns="target",
                           values=["r2_comp", "r2_geom", "r2_geom_lo", "r2_geom_hi"], sort=False)
    wide.columns = [f"{score} {target}" for score, target in wide.columns]
    info = sub.drop_duplicates("model").set_index("model")[["family", "status", "parameters"]]
    order = family_order(summary, probe=probe)
    table = info.join(wide)
    table["_f"] = table["family"].map({f: i for i, f in enumerate(order)})
    table["_t"] = (table["status"] == "random-init").astype(int)
    table = table.sort_values(["_f", "_t"], kind="stable").drop(columns=["_f", "_t"])
    cols = ["family", "status", "parameters"] + [f"{k} {t}" for t in dict.fromkeys(sub["target"])
                                                 for k in ("r2_comp", "r2_geom", "r2_geom_lo", "r2_geom_hi")]
    return table[cols]


def controls_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Nested ridge R²_geom [95 % interval] of every control target, one row per model (first seed)."""
    sub = summary[summary["control"].astype(bool) & (summary["seed"] == summary["seed"].min())]
    wide = sub.pivot_table(index="model", columns="target", values=["r2_geom", "r2_geom_lo", "r2_geom_hi"],
                           sort=False)
    wide.columns = [f"{score} {target}" for score, target in wide.columns]
    cols = [f"{k} {t}" for t in dict.fromkeys(sub["target"]) for k in ("r2_geom", "r2_geom_lo", "r2_geom_hi")]
    return wide[cols]


def pick(summary: pd.DataFrame, model: str, target: str, probe: str, score: str = "r2_geom", seed: int = 0) -> float:
    """One number of a :func:`model_gradient` summary (for the book's prose)."""
    row = summary[(summary["model"] == model) & (summary["target"] == target) & (summary["probe"] == probe)
                  & (summary["seed"] == seed)]
    if len(row) != 1:
        raise KeyError(f"no single row for {model}/{target}/{probe}/seed {seed}")
    return float(row[score].iloc[0])


def twin_gaps(run: GradientRun, probe: str = "ridge") -> pd.DataFrame:
    """Nested R²_geom of each trained model minus that of its random-init twin, per target, paired.

    ``learned`` and its interval compare with the twin's first seed (same molecules, same folds,
    paired bootstrap); ``twin mean``, ``twin min``/``twin max`` summarise the twin over its seeds,
    and ``resolved (all seeds)`` says whether the paired interval excludes zero against every seed.
    """
    summary = run.summary
    sub = summary[(summary["probe"] == probe) & ~summary["control"].astype(bool)]
    twins = sub[sub["status"] == "random-init"]
    rows = []
    for _, t in sub[sub["status"] != "random-init"].drop_duplicates(["model", "target"]).iterrows():
        mine = twins[(twins["twin_of"] == t["model"]) & (twins["target"] == t["target"])]
        if mine.empty:
            continue
        seeds = sorted(mine["seed"])
        twin_name = mine["model"].iloc[0]
        cs = [compare(run.results[(t["model"], 0, t["target"], probe)],
                      run.results[(twin_name, s, t["target"], probe)]) for s in seeds]
        rows.append({"model": t["model"], "target": t["target"], "trained": t["r2_geom"],
                     "twin mean": mine["r2_geom"].mean(), "twin min": mine["r2_geom"].min(),
                     "twin max": mine["r2_geom"].max(), "twin seeds": len(seeds),
                     "learned": cs[0].diff, "learned_lo": cs[0].lo, "learned_hi": cs[0].hi,
                     "resolved (all seeds)": all(c.resolved and c.diff > 0 for c in cs)})
    return pd.DataFrame(rows)


#: The paper's models beside ours: (paper model, paper probe, our model, what ours is).
PAPER_PAIRS = (("MACE", "ridge", "so3lr", "so3lr (stand-in for MACE-OFF)"),
               ("MACE-MP-0", "ridge", "sevennet-0", "sevennet-0 (stand-in for MACE-MP-0)"),
               ("ANI-2x", "ridge", "ani2x", "ani2x (hidden layers, real weights)"),
               ("ANI-2x", "mlp", "ani2x", "ani2x, MLP probe"))


def _ours(summary: pd.DataFrame, model: str, probe: str = "ridge") -> float:
    """Our R²_geom for the gap (NaN where that model or probe was not run)."""
    try:
        return pick(summary, model, "gap", probe)
    except KeyError:
        return float("nan")


def _score_text(value: float) -> str:
    """A score for the prose: three decimals, or "not run here" (the model or probe was left out of this run)."""
    return "not run here" if np.isnan(value) else f"{value:.3f}"


def paper_comparison(summary: pd.DataFrame) -> pd.DataFrame:
    """The paper's R²_geom (gap) for its models next to ours for the model standing in for each (NaN: not run)."""
    from cpd_core.paper import paper_value

    return pd.DataFrame([{"paper model": name + (f" ({probe.upper()})" if probe != "ridge" else ""),
                          "paper R²_geom (gap)": paper_value("r2_geom", name, "gap", probe),
                          "our model": label, "ours": _ours(summary, model, probe)}
                         for name, probe, model, label in PAPER_PAIRS])


def _interval(row, key: str = "r2_geom") -> str:
    return f"{row[key]:.3f} [{row[key + '_lo']:.3f}, {row[key + '_hi']:.3f}]"


def gradient_facts(run: GradientRun, n_seeds: int) -> dict:
    """The numbers the models chapter's prose quotes, from its :func:`model_gradient` run.

    Returns
    -------
    dict of str to str or int
        Counts are ints, scores formatted strings with their 95 % intervals where the prose gives
        them; ``best_vs_worst`` and ``mpa_read`` are sentences built from paired intervals.
    """
    from cpd_core.intervals import compare

    summary = run.summary
    main = _main(summary)
    ridge_gap = main[(main["probe"] == "ridge") & (main["target"] == "gap")].set_index("model")
    trained_gap = ridge_gap[ridge_gap["status"] != "random-init"]
    twin_gap = ridge_gap[ridge_gap["status"] == "random-init"]["r2_geom"]
    gbt = main[(main["probe"] == "gbt") & (main["status"] != "random-init")]["r2_geom"]
    gbt_twin = main[(main["probe"] == "gbt") & (main["status"] == "random-init")]["r2_geom"]
    ctrl = controls_table(summary)
    learned = twin_gaps(run)
    gap_learned = learned[learned["target"] == "gap"]
    best, worst = trained_gap["r2_geom"].idxmax(), trained_gap["r2_geom"].idxmin()
    ridge = main["probe"] == "ridge"
    facts = {
        "n_mol": int(summary["n"].max()),
        "n_dropped": len(run.dropped),
        "dropped": (f"{len(run.dropped):,} more left out: each holds an element one of the models does not cover"
                    if run.dropped else "none left out: every model covers every element of the subset"),
        "n_models": summary["model"].nunique(),
        "n_twins": int((summary.drop_duplicates("model")["status"] == "random-init").sum()),
        "n_seeds": n_seeds,
        "best_model": best, "best_gap": _interval(trained_gap.loc[best]),
        "worst_model": worst, "worst_gap": _interval(trained_gap.loc[worst]),
        "twin_best_model": twin_gap.idxmax(), "twin_best": f"{twin_gap.max():.3f}",
        "learned_pos": int((gap_learned["learned_lo"] > 0).sum()),
        "learned_all": int(gap_learned["resolved (all seeds)"].sum()),
        "learned_n": len(gap_learned),
        "naive_bias": f"{(main['naive_r2_geom'] - main['r2_geom'])[ridge].mean():.3f}",
        "so3lr_gap": _score_text(_ours(summary, 'so3lr')),
        "sevennet_gap": _score_text(_ours(summary, 'sevennet-0')),
        "ani2x_gap": _score_text(_ours(summary, 'ani2x')),
        "ani2x_mlp": _score_text(_ours(summary, 'ani2x', 'mlp')),
        "gbt_min": f"{gbt.min():.2f}" if len(gbt) else "n/a",
        "gbt_max": f"{gbt.max():.2f}" if len(gbt) else "n/a",
        "gbt_twin_min": f"{gbt_twin.min():.2f}" if len(gbt_twin) else "n/a",
        "gbt_twin_max": f"{gbt_twin.max():.2f}" if len(gbt_twin) else "n/a",
        "trees": (f"Gradient-boosted trees score {gbt.min():.2f}–{gbt.max():.2f} across the trained models, and "
                  f"{gbt_twin.min():.2f}–{gbt_twin.max():.2f} on their random-init twins (seed 0); after the method "
                  "chapter's control, these are upper bounds inflated by composition read back through nonlinear "
                  "remnants, not measures of geometry"
                  if len(gbt) and len(gbt_twin) else
                  "Gradient-boosted trees were not run at this scale (`scale = \"full\"` runs them; on the book's "
                  "molecules the ANI-2x and probe-sensitivity chapters show what trees read)"),
        "mass_max": f"{ctrl['r2_geom mass (control)'].max():.3f}",
        "mpa_min": f"{ctrl['r2_geom mass/atom (control)'].min():.2f}",
        "mpa_max": f"{ctrl['r2_geom mass/atom (control)'].max():.2f}",
        "shuffled_max": f"{ctrl['r2_geom gap (shuffled)'].max():.3f}",
    }
    routing = run.routing
    dip = routing[routing["target"] == "dipole"] if len(routing) else routing
    facts["pooled_wins_dipole"] = int((dip["pooled − atom-norm_lo"] > 0).sum()) if len(dip) else 0
    facts["pooled_beats_l0_dipole"] = int((dip["pooled − L0_lo"] > 0).sum()) if len(dip) else 0
    facts["n_equivariant"] = len(dip)
    facts["best_vs_worst"] = compare(run.results[(best, 0, "gap", "ridge")],
                                     run.results[(worst, 0, "gap", "ridge")]).verdict(best, worst)
    mpa_lo = ctrl["r2_geom_lo mass/atom (control)"]
    facts["mpa_read"] = (f"is read with an interval above zero by {int((mpa_lo > 0).sum())} of {len(mpa_lo)} models: "
                         "mean pooling leaves composition that a projection of counts does not remove"
                         if (mpa_lo > 0).any() else
                         "is not read by any model's ridge probe at this n (no interval above zero): here the "
                         "fractions that mean pooling creates do not leak into the linear R²_geom")
    return facts



#: The scorecard's stand-ins (:data:`PAPER_PAIRS`): claim → (our model, why it is not the paper's).
SCORECARD_STAND_INS = {
    "mace_gap_ridge": ("so3lr", "stand-in: SO3LR for MACE-OFF, whose weights need a download"),
    "mace_mp0_gap": ("sevennet-0", "stand-in: SevenNet-0 (NequIP, MPtrj) for MACE-MP-0, whose weights need a "
                                   "download"),
}


def gradient_measurements(run: GradientRun) -> list:
    """The scorecard's numbers from this chapter (:mod:`cpd_core.scorecard`): the stand-ins' gap R²_geom
    (not comparable: other models), and the gradient's direction as the paired difference between the
    stand-in for MACE and ANI-2x's descriptor (nested ridge, same molecules and folds)."""
    from cpd_core.scorecard import Measurement

    def res(model):
        return run.results.get((model, 0, "gap", "ridge"))

    n = int(run.summary["n"].max())
    out = []
    for claim, (model, reason) in SCORECARD_STAND_INS.items():
        r = res(model)
        if r is not None:
            out.append(Measurement(claim, float(r.r2_geom), *map(float, r.ci["r2_geom"]), n=n,
                                   what=f"{model}, gap, nested ridge", comparable=False, reason=reason))
    top, bottom = res(SCORECARD_STAND_INS["mace_gap_ridge"][0]), res("ani2x-aev")
    if top is not None and bottom is not None:
        c = compare(top, bottom)
        out.append(Measurement("model_ordering", float(c.diff), float(c.lo), float(c.hi), n=n,
                               what=f"{SCORECARD_STAND_INS['mace_gap_ridge'][0]} − ani2x-aev, gap, paired",
                               comparable=False, reason="stand-in for MACE (SO3LR); the direction is shown"))
    return out

__all__ = ["gradient_measurements", "GradientRun", "MODEL_SETS", "PAPER_PAIRS", "gradient_facts", "paper_comparison", "KINDS", "best_blocks", "block_kind", "controls_table", "default_models",
           "family_order", "gradient_table", "model_gradient", "pick", "twin_gaps"]
