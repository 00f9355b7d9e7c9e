r"""Task alignment: the same architecture trained on the gap, trained on U0, and untrained.

The paper's second version trains MACE and PaiNN on QM9 and finds that what a network was
trained *for* decides how linearly accessible the gap is after composition removal (ridge
R²_geom for the gap: PaiNN gap-trained 0.53 vs energy-trained 0.31; MACE 0.44 vs 0.08). Here
every architecture of :mod:`cpd_core.models.trained` is probed three times — trained on the
gap, trained on U0 (the energy), and its random-init twin — under one training protocol
(:mod:`cpd_core.training`), so architecture is no longer confounded with training data.

The networks are probed only on molecules of their held-out test split. For each network the
most informative block per target is chosen on inner folds (nested, as in
:mod:`cpd_core.experiments.model_gradient`, whose :func:`~cpd_core.experiments.model_gradient.model_gradient`
does the work); every contrast is a paired difference with its 95 % interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cpd_core.errors import InputError
from cpd_core.models.trained import ARCHITECTURES, TRAINED_TARGETS, checkpoint_dir, read_manifest

#: Published test MAE (meV) on QM9 with ~110,000 training molecules: (value, bibliography key).
#: SchNet's numbers are those the DimeNet++ paper tabulates for it (cutoff 10 Å, as published).
PUBLISHED_MAE_MEV = {
    ("schnet", "gap"): (63.0, "gasteiger2020dimenetpp"),
    ("schnet", "U0"): (14.0, "gasteiger2020dimenetpp"),
    ("dimenet++", "gap"): (32.6, "gasteiger2020dimenetpp"),
    ("dimenet++", "U0"): (6.32, "gasteiger2020dimenetpp"),
    ("painn", "gap"): (45.7, "schutt2021painn"),
    ("painn", "U0"): (5.85, "schutt2021painn"),
}
#: How each registry twin was supervised, by the suffix of its name.
SUPERVISION = {"gap": "gap-trained", "U0": "U0-trained", "random": "random-init"}


def trained_archs(root=None) -> list[str]:
    """Architectures with both checkpoints (gap and U0) present, in registry order."""
    return [a for a in ARCHITECTURES
            if all((checkpoint_dir(a, t, root) / "model.pt").is_file() for t in TRAINED_TARGETS)]


def alignment_models(archs: Sequence[str] | None = None) -> list[str]:
    """Registry names of the three twins of each architecture (gap-, U0-trained, random-init).

    Examples
    --------
    >>> alignment_models(["painn"])
    ['painn-qm9-gap', 'painn-qm9-U0', 'painn-qm9-random']
    """
    archs = trained_archs() if archs is None else list(archs)
    unknown = [a for a in archs if a not in ARCHITECTURES]
    if unknown:
        raise InputError(f"unknown architecture(s) {unknown}; known: {list(ARCHITECTURES)}")
    return [f"{a}-qm9-{suffix}" for a in archs for suffix in SUPERVISION]


def _arch_supervision(model: str) -> tuple[str, str]:
    arch, _, suffix = model.rpartition("-qm9-")
    return arch, SUPERVISION[suffix]


def mae_table(archs: Sequence[str] | None = None, root=None) -> pd.DataFrame:
    """Each trained network's test MAE from its manifest, next to the published full-QM9 value.

    Returns
    -------
    pandas.DataFrame
        One row per (arch, target): ``test MAE (meV)``, ``published (meV)`` and the ratio,
        the training-set size and the number of test molecules, epochs, training minutes, why
        training stopped, parameters, device.
    """
    rows = []
    for arch in (trained_archs(root) if archs is None else archs):
        for target in TRAINED_TARGETS:
            m = read_manifest(arch, target, root)
            if not m:
                continue
            published, source = PUBLISHED_MAE_MEV.get((arch, target), (np.nan, ""))
            rows.append({"arch": arch, "target": target, "test MAE (meV)": m["result"]["test_mae_meV"],
                         "published (meV)": published, "ratio": m["result"]["test_mae_meV"] / published,
                         "source": source, "n_train": m["split"]["n_train"], "n_test": m["split"]["n_test"],
                         "epochs": m["result"]["epochs"], "minutes": m["result"]["train_minutes"],
                         "stopped by": m["result"]["stopped_by"], "parameters": m["n_parameters"],
                         "device": m["device"]})
    return pd.DataFrame(rows)


def training_histories(archs: Sequence[str] | None = None, root=None) -> pd.DataFrame:
    """Validation MAE after every epoch of every run (long format, for plots)."""
    frames = []
    for arch in (trained_archs(root) if archs is None else archs):
        for target in TRAINED_TARGETS:
            history = read_manifest(arch, target, root).get("history", [])
            frames.append(pd.DataFrame(history).assign(arch=arch, target=target))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def task_alignment(archs: Sequence[str] | None = None, n: int | None = 500, seed: int = 0,
                   targets: Sequence[str] = ("gap", "dipole"), probes: Sequence[str] = ("ridge", "mlp", "gbt"),
                   cv: int = 5, device: str = "auto", progress: bool = False, twin_seeds: Sequence[int] = (0, 1, 2)):
    """CPD of the gap-trained, U0-trained and random-init twins of each architecture on held-out molecules.

    The molecules are a seeded subset of ``n`` of the 10,831 QM9 molecules in the test part of the
    split the networks were trained under (:func:`cpd_core.training.probe_rows`): none was seen in
    training or early stopping (asserted). Returns :func:`~cpd_core.experiments.model_gradient.model_gradient`'s
    :class:`~cpd_core.experiments.model_gradient.GradientRun` with two columns added to ``summary``:
    ``arch`` and ``supervision``.
    """
    from cpd_core.experiments.model_gradient import model_gradient
    from cpd_core.training import assert_held_out, probe_rows

    models = alignment_models(archs)
    if not models:
        raise InputError("no trained QM9 network found; train them with scripts/train_qm9.sh (or `cpd train`)")
    rows = probe_rows(n=n, seed=seed)
    assert_held_out(rows)
    run = model_gradient(models, n=None, rows=rows, targets=targets, probes=probes, cv=cv, device=device,
                         progress=progress, twin_seeds=twin_seeds, routing=False)
    arch, supervision = zip(*run.summary["model"].map(_arch_supervision))
    run.summary.insert(1, "arch", list(arch))
    run.summary.insert(2, "supervision", list(supervision))
    return run


def alignment_table(summary: pd.DataFrame, probe: str = "ridge", score: str = "r2_geom") -> pd.DataFrame:
    """Wide table: one row per (arch, target), one column per supervision (first twin seed), real targets only.

    Examples
    --------
    >>> s = pd.DataFrame({"arch": ["a"] * 3, "target": ["gap"] * 3, "probe": ["ridge"] * 3,
    ...                   "supervision": ["gap-trained", "U0-trained", "random-init"], "r2_geom": [.5, .2, .1]})
    >>> alignment_table(s).round(2).to_dict("records")
    [{'arch': 'a', 'target': 'gap', 'gap-trained': 0.5, 'U0-trained': 0.2, 'random-init': 0.1}]
    """
    sub = summary[summary["probe"] == probe]
    if "control" in sub:
        sub = sub[~sub["control"].astype(bool) & (sub["seed"] == sub["seed"].min())]
    wide = sub.pivot_table(index=["arch", "target"], columns="supervision", values=score, sort=False)
    wide = wide.reindex(columns=[c for c in SUPERVISION.values() if c in wide.columns])
    wide.columns.name = None
    return wide.reset_index()


def alignment_contrasts(run, probe: str = "ridge") -> pd.DataFrame:
    """Paired differences per (arch, target): gap- minus U0-trained, and each trained twin minus the untrained one.

    Each difference comes with its 95 % interval (paired bootstrap over the same held-out molecules
    and folds, :func:`cpd_core.compare`) and whether that interval excludes zero. The untrained twin is
    its first seed; ``random-init spread`` gives the min–max of its R²_geom over all its seeds.
    """
    from cpd_core.intervals import compare

    s = run.summary
    s = s[(s["probe"] == probe) & ~s["control"].astype(bool)]
    rows = []
    for (arch, target), grp in s.groupby(["arch", "target"], sort=False):
        key = {sup: (f"{arch}-qm9-{suffix}", 0, target, probe) for suffix, sup in SUPERVISION.items()}
        if not all(k in run.results for k in key.values()):
            continue
        r = {sup: run.results[k] for sup, k in key.items()}
        twins = grp[grp["supervision"] == "random-init"]["r2_geom"]
        row = {"arch": arch, "target": target, **{sup: res.r2_geom for sup, res in r.items()},
               "random-init spread": f"{twins.min():.3f}–{twins.max():.3f} ({len(twins)} seeds)"}
        for name, a, b in (("gap − U0", "gap-trained", "U0-trained"), ("gap − random", "gap-trained", "random-init"),
                           ("U0 − random", "U0-trained", "random-init")):
            c = compare(r[a], r[b])
            row[name], row[f"{name} lo"], row[f"{name} hi"], row[f"{name} resolved"] = c.diff, c.lo, c.hi, c.resolved
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass
class EvolutionRun:
    """The gap-trained vs U0-trained contrast along training (:func:`training_evolution`).

    Attributes
    ----------
    points : pandas.DataFrame
        One row per (arch, trained on, snapshot): ``snapshot`` (1 … K; 0 is the random-init
        twin, the common start), ``step``, ``epochs``, ``minutes``, ``val MAE (meV)`` of that run
        on its own target, the nested ``block`` chosen most often, ``r2_geom`` with ``r2_geom_lo``
        and ``r2_geom_hi`` (95 %).
    contrasts : pandas.DataFrame
        One row per (arch, snapshot): gap-trained minus U0-trained R²_geom at the same fraction of
        the training budget, with its paired 95 % interval and whether it excludes zero.
    growth : pandas.DataFrame
        One row per arch: how much the contrast changed from the first snapshot to the last, a
        difference of differences with its paired 95 % interval (:func:`cpd_core.intervals.paired_combination`).
    n : int
        Held-out molecules probed.
    """

    points: pd.DataFrame
    contrasts: pd.DataFrame
    growth: pd.DataFrame
    n: int
    results: dict = field(repr=False, default_factory=dict)


def evolution_archs(root=None) -> list[str]:
    """Architectures whose gap and U0 runs both kept snapshots, the same number of them."""
    from cpd_core.models.trained import snapshot_paths

    out = []
    for arch in trained_archs(root):
        counts = [len(snapshot_paths(arch, t, root)) for t in TRAINED_TARGETS]
        if counts[0] and len(set(counts)) == 1:
            out.append(arch)
    return out


def spread_snapshots(k: int, m: int | None) -> list[int]:
    """``m`` of the snapshots ``1 … k``, evenly spread, the first and the last always among them (``None``: all).

    Examples
    --------
    >>> spread_snapshots(6, 3), spread_snapshots(6, None), spread_snapshots(6, 1), spread_snapshots(2, 5)
    ([1, 4, 6], [1, 2, 3, 4, 5, 6], [6], [1, 2])
    """
    if m is None or m >= k:
        return list(range(1, k + 1))
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
        raise InputError(f"snapshots must be a positive whole number or None (all), got {m!r}")
    if m == 1:
        return [k]
    return sorted({int(i) for i in np.rint(np.linspace(1, k, m))})


def training_evolution(archs: Sequence[str] | None = None, n: int | None = 500, seed: int = 0, target: str = "gap",
                       cv: int = 5, device: str = "auto", progress: bool = False, root=None,
                       snapshots: int | None = None) -> EvolutionRun:
    """Nested ridge R²_geom of ``target`` at every snapshot of the gap- and U0-trained runs of each architecture.

    The snapshots of ``cpd train --snapshots K`` sit at 1/K, 2/K, … of each run's budget, so
    snapshot ``i`` of the gap run and snapshot ``i`` of the U0 run have trained equally long; the
    random-init twin (seed 0) is the common starting point (snapshot 0). Every snapshot is probed
    on the same held-out molecules and folds as the others (:func:`cpd_core.training.probe_rows`;
    the block chosen on inner folds, :func:`cpd_core.best_block`), so the gap − U0 difference at
    each snapshot is a paired contrast with its 95 % interval (:func:`cpd_core.compare`).

    Parameters
    ----------
    archs : sequence of str, optional
        Default: :func:`evolution_archs` (those with snapshots of both runs).
    n, seed : int
        Held-out molecules (a seeded subset of the test split; ``None``: all 10,831).
    target : str
        The probed QM9 target.
    snapshots : int, optional
        Probe only this many of each run's snapshots, evenly spread, the first and the last among them
        (:func:`spread_snapshots`); ``None`` (default): every snapshot. Snapshots keep their numbers
        (``snapshot`` ``i`` of ``K``), so ``fraction of budget`` stays ``i / K``.
    """
    from tqdm import tqdm

    from cpd_core.datasets import load_qm9
    from cpd_core.extract import features
    from cpd_core.intervals import compare, paired_combination
    from cpd_core.models.lazy import load_lazy
    from cpd_core.models.trained import load_snapshot
    from cpd_core.selection import best_block
    from cpd_core.training import assert_held_out, probe_rows

    archs = evolution_archs(root) if archs is None else list(archs)
    if not archs:
        raise InputError("no architecture has snapshots of both its gap and U0 runs; train with "
                         "`scripts/train_qm9.sh cpu-evolution` (or `cpd train ... --snapshots K`)")
    rows = probe_rows(n=n, seed=seed)
    assert_held_out(rows)
    dataset = load_qm9(rows=rows, targets=[target])
    C, y = dataset.composition(), dataset.targets[target].to_numpy()

    def probe(featurizer):
        feats = features(featurizer, dataset, device=device, progress=False)
        return best_block(dict(feats), C, y, cv=cv, seed=seed, cache=True)

    points, results = [], {}
    jobs, total = [], {}
    for arch in archs:
        for t in TRAINED_TARGETS:
            snaps = sorted(read_manifest(arch, t, root)["snapshots"], key=lambda s: s["step"])
            total[arch] = len(snaps)
            jobs += [(arch, t, 0, None)] + [(arch, t, i, snaps[i - 1]) for i in spread_snapshots(len(snaps), snapshots)]
    start = {}
    for arch, t, i, snap in tqdm(jobs, desc="snapshots", disable=not progress):
        if snap is None:  # the random-init twin: the same start for both runs, probed once
            if arch not in start:
                start[arch] = probe(load_lazy(f"{arch}-qm9-random", device=device))
            choice, info = start[arch], {"step": 0, "epochs": 0.0, "minutes": 0.0, "val MAE (meV)": np.nan}
        else:
            choice = probe(load_snapshot(arch, t, snap["step"], root=root, device=device))
            info = {"step": snap["step"], "epochs": snap.get("epochs", snap["epoch"]), "minutes": snap["minutes"],
                    "val MAE (meV)": snap["val_mae_meV"]}
        results[(arch, t, i)] = choice.result
        lo, hi = choice.result.ci["r2_geom"]
        points.append({"arch": arch, "trained on": t, "snapshot": i, **info, "block": choice.block,
                       "r2_geom": choice.r2_geom, "r2_geom_lo": lo, "r2_geom_hi": hi})
    contrasts, growth = [], []
    for arch in archs:
        k, probed = total[arch], sorted({i for (a, _, i) in results if a == arch and i > 0})
        first = len(contrasts)
        for i in probed:
            c = compare(results[(arch, "gap", i)], results[(arch, "U0", i)])
            contrasts.append({"arch": arch, "snapshot": i, "fraction of budget": i / k, "gap − U0": c.diff,
                              "lo": c.lo, "hi": c.hi, "resolved": c.resolved})
        a, b = probed[0], probed[-1]
        ends = [results[(arch, "gap", b)], results[(arch, "U0", b)], results[(arch, "gap", a)], results[(arch, "U0", a)]]
        value, lo, hi = paired_combination(ends, [1, -1, -1, 1])
        growth.append({"arch": arch, "first": contrasts[first]["gap − U0"], "last": contrasts[-1]["gap − U0"],
                       "growth": value, "lo": lo, "hi": hi, "resolved": lo > 0 or hi < 0})
    return EvolutionRun(pd.DataFrame(points), pd.DataFrame(contrasts), pd.DataFrame(growth), len(dataset), results)


def alignment_facts(run, contrasts: pd.DataFrame, maes: pd.DataFrame, evolution: EvolutionRun | None = None) -> dict:
    """The numbers the chapter's prose quotes, from its run (:func:`task_alignment`), contrasts and MAE table.

    Returns
    -------
    dict of str to str or int
        Counts are ints; scores are formatted strings ("0.53", "+0.17 [+0.14, +0.22]"); ``"n/a"``
        for an architecture that was not run. With ``evolution``
        (:func:`training_evolution`), also the contrast at the first and the last snapshot per
        architecture (``<arch>_evo_first``, ``<arch>_evo_last``), its change between them with the
        paired interval (``<arch>_evo_growth``), and in how many architectures that change is
        resolved above zero (``evo_grew``) or below it (``evo_shrank``).

    Examples
    --------
    >>> c = pd.DataFrame({"arch": ["painn"], "target": ["gap"], "gap-trained": [0.5], "U0-trained": [0.3],
    ...                   "random-init": [0.1], "gap − U0": [0.2], "gap − U0 lo": [0.1], "gap − U0 hi": [0.3],
    ...                   "gap − U0 resolved": [True], "gap − random": [0.4], "gap − random resolved": [True],
    ...                   "U0 − random": [0.2], "U0 − random resolved": [False]})
    >>> run = type("Run", (), {"summary": pd.DataFrame({"n": [500]})})()
    >>> m = pd.DataFrame({"ratio": [2.0, 7.5], "n_train": [50000, 50000], "minutes": [20.1, 12.0],
    ...                   "device": ["CPU", "CPU"]})
    >>> f = alignment_facts(run, c, m)
    >>> f["gap_wins"], f["painn_diff"], f["mace_gap"], f["mae_ratio_max"]
    (1, '+0.20 [+0.10, +0.30]', 'n/a', '7.5')
    """
    def wins(rows, column):
        return int(((rows[column] > 0) & rows[f"{column} resolved"]).sum())

    gap_rows = contrasts[contrasts["target"] == "gap"].set_index("arch")
    dip_rows = contrasts[contrasts["target"] == "dipole"].set_index("arch")
    facts = {
        "n_mol": int(run.summary["n"].max()),
        "n_archs": len(gap_rows),
        "gap_wins": wins(gap_rows, "gap − U0"),
        "gap_unresolved": int((~gap_rows["gap − U0 resolved"].astype(bool)).sum()),
        "dip_gap_wins": wins(dip_rows, "gap − U0") if len(dip_rows) else 0,
        "u0_over_random": wins(gap_rows, "U0 − random"),
        "gap_over_random": wins(gap_rows, "gap − random"),
        "mean_gap_minus_u0": f"{gap_rows['gap − U0'].mean():.2f}",
        "mae_ratio_min": f"{maes['ratio'].min():.1f}",
        "mae_ratio_max": f"{maes['ratio'].max():.1f}",
        "n_train": f"{int(maes['n_train'].max()):,}",
        "minutes": f"{maes['minutes'].max():.0f}",
        "train_device": maes["device"].iloc[0],
    }
    for arch in ("painn", "mace"):
        here = arch in gap_rows.index
        for supervision in ("gap-trained", "U0-trained"):
            key = f"{arch}_{supervision.split('-')[0].lower()}"
            facts[key] = f"{gap_rows.loc[arch, supervision]:.2f}" if here else "n/a"
        facts[f"{arch}_diff"] = (f"{gap_rows.loc[arch, 'gap − U0']:+.2f} [{gap_rows.loc[arch, 'gap − U0 lo']:+.2f}, "
                                 f"{gap_rows.loc[arch, 'gap − U0 hi']:+.2f}]") if here else "n/a"
    if evolution is not None:
        ev = evolution.contrasts
        facts["evo_archs"] = ", ".join(dict.fromkeys(ev["arch"]))
        facts["evo_n"] = evolution.n
        for arch, grp in ev.groupby("arch", sort=False):
            grp = grp.sort_values("snapshot")
            first, last = grp.iloc[0], grp.iloc[-1]
            facts[f"{arch}_evo_first"] = f"{first['gap − U0']:+.2f} [{first['lo']:+.2f}, {first['hi']:+.2f}]"
            facts[f"{arch}_evo_last"] = f"{last['gap − U0']:+.2f} [{last['lo']:+.2f}, {last['hi']:+.2f}]"
            facts[f"{arch}_evo_resolved"] = f"{int(grp['resolved'].sum())} of {len(grp)}"
        growth = evolution.growth
        for _, row in growth.iterrows():
            facts[f"{row['arch']}_evo_growth"] = f"{row['growth']:+.2f} [{row['lo']:+.2f}, {row['hi']:+.2f}]"
        facts["evo_grew"] = int((growth["resolved"] & (growth["growth"] > 0)).sum())
        facts["evo_shrank"] = int((growth["resolved"] & (growth["growth"] < 0)).sum())
    return facts


def paper_comparison(summary: pd.DataFrame) -> pd.DataFrame:
    """The paper's task-alignment numbers (ridge R²_geom, gap) next to ours for the same architecture."""
    from cpd_core.paper import paper_value

    table = alignment_table(summary)
    gap = table[table["target"] == "gap"].set_index("arch")
    rows = []
    for arch, label in (("painn", "PaiNN"), ("mace", "MACE")):
        for supervision, paper_name in (("gap-trained", "gap-trained"), ("U0-trained", "energy-trained")):
            ours = gap.loc[arch, supervision] if arch in gap.index else np.nan
            rows.append({"model": f"{label} {supervision}",
                         "paper": paper_value("r2_geom", f"{label} {paper_name}", "gap", "ridge"), "ours": ours})
    return pd.DataFrame(rows)



def alignment_measurements(run, contrasts: pd.DataFrame, maes: pd.DataFrame) -> list:
    """The scorecard's numbers from this chapter (:mod:`cpd_core.scorecard`): the ranges of gap R²_geom over the
    trained networks, and PaiNN's and MACE's gap-trained − U0-trained contrasts with paired intervals."""
    from cpd_core.scorecard import Measurement

    s = run.summary
    s = s[(s["probe"] == "ridge") & ~s["control"].astype(bool) & (s["target"] == "gap")]
    n = int(s["n"].max()) if len(s) else 0
    budget = (f"trained here on {maes['device'].iloc[0]} for at most {maes['minutes'].max():.0f} min "
              f"(test MAE {maes['ratio'].min():.1f}–{maes['ratio'].max():.1f}× the published)") if len(maes) else ""
    out = []
    for claim, sups in (("trained_range", ("gap-trained", "U0-trained")), ("gap_trained_range", ("gap-trained",))):
        sub = s[s["supervision"].isin(sups)]
        if len(sub):
            lo, hi = float(sub["r2_geom"].min()), float(sub["r2_geom"].max())
            out.append(Measurement(claim, lo, lo, hi, n=n, reason=budget,
                                   what=f"{sub['arch'].nunique()} architectures, {' and '.join(sups)}, nested ridge"))
    gap = contrasts[contrasts["target"] == "gap"].set_index("arch")
    for claim, arch in (("painn_alignment", "painn"), ("mace_alignment", "mace")):
        if arch in gap.index:
            r = gap.loc[arch]
            out.append(Measurement(claim, float(r["gap − U0"]), float(r["gap − U0 lo"]), float(r["gap − U0 hi"]), n=n,
                                   what=f"{arch} gap-trained − U0-trained, paired", reason=budget))
    return out

__all__ = ["alignment_measurements", "EvolutionRun", "PUBLISHED_MAE_MEV", "SUPERVISION", "alignment_contrasts", "alignment_facts", "alignment_models",
           "alignment_table", "evolution_archs", "mae_table", "paper_comparison", "task_alignment", "trained_archs",
           "spread_snapshots", "training_evolution", "training_histories"]
