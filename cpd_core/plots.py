"""Figures of the book. Each takes the tables an experiment returned and returns a matplotlib Figure.

Every figure shows per-fold values beside the mean (a mean can hide a collapsed fold); the figures of
:func:`recovery_plot`, :func:`cpd_bars` and :func:`fold_strip` draw each reported score's 95 % interval
(:attr:`cpd_core.CPDResult.ci`) as its error bar.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

SCORE_LABELS = {"r2_comp": "R²_comp (linear in C)", "r2_full": "R²_full (raw features)",
                "r2_geom": "R²_geom (residual)"}
PROBE_ORDER = ["ridge", "mlp", "gbt"]


def _yerr(values, lo, hi) -> np.ndarray:
    """Asymmetric error-bar lengths ``[[v - lo], [hi - v]]`` of intervals around values (never negative)."""
    values, lo, hi = (np.asarray(a, dtype=float) for a in (values, lo, hi))
    return np.vstack([np.maximum(values - lo, 0), np.maximum(hi - values, 0)])


def _fold_values(folds: pd.DataFrame, score: str) -> pd.DataFrame:
    """Per-fold values of ``score`` in a column of that name, from a wide or a long (``score``, ``r2``) table."""
    if score in folds:
        return folds
    if {"score", "r2"} <= set(folds.columns):
        return folds[folds["score"] == score].rename(columns={"r2": score})
    raise KeyError(f"folds has neither a {score!r} column nor long-format 'score'/'r2' columns")


def recovery_plot(summary: pd.DataFrame, folds: pd.DataFrame) -> plt.Figure:
    """Recovered R²_geom against the planted value, per probe (identity = perfect recovery).

    Markers are fold means with their 95 % interval (``r2_geom_lo``, ``r2_geom_hi`` of the summary)
    as error bars; small dots are single folds. Probes are offset a little along x so their bars
    do not hide each other.
    """
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    low = min(folds["r2_geom"].min(), summary["r2_geom_lo"].min())
    high = max(folds["r2_geom"].max(), summary["r2_geom_hi"].max())
    lim = [min(-0.05, low - 0.05), max(1.0, high + 0.05)]
    ax.plot(lim, lim, color="0.6", lw=1, ls="--", label="recovered = planted")
    palette = dict(zip(PROBE_ORDER, sns.color_palette("colorblind", 3)))
    probes = list(dict.fromkeys(summary["probe"]))
    shift = {p: 0.012 * (i - (len(probes) - 1) / 2) for i, p in enumerate(probes)}
    for probe, grp in folds.groupby("probe", sort=False):
        ax.scatter(grp["r2_geom_true"] + shift.get(probe, 0), grp["r2_geom"], s=10, alpha=0.35,
                   color=palette.get(probe), linewidths=0)
    for probe, grp in summary.groupby("probe", sort=False):
        ax.errorbar(grp["r2_geom_true"] + shift[probe], grp["r2_geom"],
                    yerr=_yerr(grp["r2_geom"], grp["r2_geom_lo"], grp["r2_geom_hi"]), marker="o", ms=4,
                    capsize=3, color=palette.get(probe), label=f"{probe} (95 % interval)")
    ax.set(xlim=lim, ylim=lim, xlabel="planted geometric share (true linear R²_geom)",
           ylabel="recovered R²_geom (5-fold CV)")
    ax.legend(frameon=False, loc="upper left")
    fig.tight_layout()
    plt.close(fig)  # shown once, as the cell's value, whatever the backend hooks do
    return fig


def cpd_bars(summary: pd.DataFrame, folds: pd.DataFrame, title: str | None = None,
             floor: float = -0.5, max_cols: int = 3) -> plt.Figure:
    """R²_comp, R²_full and R²_geom per probe and target: bars are fold means, error bars their 95 % intervals.

    ``summary`` needs ``target``, ``probe`` and each score with its ``_lo`` and ``_hi`` columns
    (:meth:`~cpd_core.CPDResult.summary`); ``folds`` the per-fold scores (long format, as
    :func:`~cpd_core.cpd_table` returns), drawn as dots. The y axis stops at ``floor``: folds below
    it are drawn on the floor as triangles and counted in the panel title, bars and intervals are
    cut there. One panel per target, ``max_cols`` to a row.
    """
    targets = list(dict.fromkeys(summary["target"]))
    scores = list(SCORE_LABELS)
    colors = dict(zip(scores, sns.color_palette("colorblind", len(scores))))
    width = 0.8 / len(scores)
    rng = np.random.default_rng(0)
    ncols = min(len(targets), max_cols)
    nrows = -(-len(targets) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.5 * nrows + 0.5), sharey=True, squeeze=False)
    for ax in axes.flat[len(targets):]:
        ax.set_visible(False)
    for ax, target in zip(axes.flat, targets):
        sub = summary[summary["target"] == target].set_index("probe")
        probes = [p for p in PROBE_ORDER if p in sub.index] + [p for p in sub.index if p not in PROBE_ORDER]
        fsub = folds[folds["target"] == target]
        below = 0
        for k, score in enumerate(scores):
            x = np.arange(len(probes)) + (k - (len(scores) - 1) / 2) * width
            v = sub.loc[probes, score].to_numpy(dtype=float)
            lo = sub.loc[probes, f"{score}_lo"].to_numpy(dtype=float)
            hi = sub.loc[probes, f"{score}_hi"].to_numpy(dtype=float)
            ax.bar(x, np.maximum(v, floor), width, color=colors[score], alpha=0.8, label=SCORE_LABELS[score])
            ax.errorbar(x, np.maximum(v, floor), yerr=_yerr(np.maximum(v, floor), np.maximum(lo, floor),
                                                           np.maximum(hi, floor)),
                        fmt="none", ecolor="k", elinewidth=1.2, capsize=3)
            for xi, probe in zip(x, probes):
                r2 = fsub.loc[(fsub["probe"] == probe) & (fsub["score"] == score), "r2"].to_numpy(dtype=float)
                r2 = r2[~np.isnan(r2)]  # a score the probe was not fit for (R²_full of a residual-only probe)
                jitter = xi + rng.uniform(-0.25, 0.25, len(r2)) * width
                ok = r2 >= floor
                below += int((~ok).sum())
                ax.scatter(jitter[ok], r2[ok], s=7, color="0.25", alpha=0.7, zorder=3, linewidths=0)
                ax.scatter(jitter[~ok], np.full((~ok).sum(), floor), marker="v", s=16, color="0.25", zorder=3)
        ax.axhline(0, color="0.3", lw=0.8)
        ax.set_xticks(np.arange(len(probes)), probes)
        ax.set(title=f"{target}" + (f"  ({below} fold(s) < {floor})" if below else ""),
               xlabel="probe", ylabel="R² (5-fold CV)", ylim=(floor, 1.02))
    handles, labels = axes[0][0].get_legend_handles_labels()
    handles += [plt.Line2D([], [], color="k", marker="_", ms=8, lw=1.2, label="95 % interval"),
                plt.Line2D([], [], color="0.25", marker="o", ms=3, ls="none", label="single fold")]
    fig.legend(handles=handles, loc="lower center", ncol=5, frameon=False, bbox_to_anchor=(0.5, 0.0),
               fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.5 / (3.5 * nrows + 0.5), 1, 1))
    plt.close(fig)  # shown once, as the cell's value, whatever the backend hooks do
    return fig


def fold_strip(folds: pd.DataFrame, score: str = "r2_geom", by: str = "variant",
               summary: pd.DataFrame | None = None) -> plt.Figure:
    """Per-fold scores of each group (column ``by``); a symmetric-log axis once any value passes ±1, so collapsed folds stay visible.

    ``folds`` is wide (a ``score`` column) or long (``score`` and ``r2`` columns). With ``summary``
    (one row per group: column or index ``by``, ``score`` and its ``_lo``/``_hi`` interval) the
    red mark is the reported score with its 95 % interval as error bar; without it, the plain mean
    over folds.
    """
    folds = _fold_values(folds, score)
    order = list(dict.fromkeys(folds[by]))
    fig, ax = plt.subplots(figsize=(9.0, 0.55 * len(order) + 1.2))
    sns.stripplot(data=folds, y=by, x=score, ax=ax, size=6, color="C0", jitter=0.1, order=order)
    ypos = np.arange(len(order))
    if summary is not None:
        s = (summary.set_index(by) if by in summary else summary).loc[order]
        ax.errorbar(s[score], ypos, xerr=_yerr(s[score], s[f"{score}_lo"], s[f"{score}_hi"]), fmt="|", ms=20,
                    color="C3", capsize=4, elinewidth=1.5, label="score, 95 % interval")
    else:
        means = folds.groupby(by, sort=False)[score].mean().loc[order]
        ax.scatter(means.values, ypos, marker="|", s=300, color="C3", label="mean over folds")
    values = folds[score].to_numpy(dtype=float)
    if summary is not None:
        values = np.concatenate([values, s[f"{score}_lo"].to_numpy(dtype=float), s[f"{score}_hi"].to_numpy(dtype=float)])
    symlog = bool(np.nanmax(np.abs(values)) > 1.0)
    if symlog:
        ax.set_xscale("symlog", linthresh=1.0)
    ax.axvline(0, color="0.5", lw=0.8)
    ax.set(xlabel=f"{SCORE_LABELS.get(score, score)} per fold" + (" (symlog)" if symlog else ""), ylabel="")
    ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    plt.close(fig)  # shown once, as the cell's value, whatever the backend hooks do
    return fig


PROBE_MARKERS = {"ridge": "o", "mlp": "^", "gbt": "s"}


def gradient_plot(summary: pd.DataFrame, order: list[str] | None = None, floor: float = -0.5) -> plt.Figure:
    """R²_geom per model and probe (markers, 95 % intervals as bars) with R²_comp (grey bar), one panel per target.

    Models are grouped by architectural family (``order``: family names top to bottom,
    default as they come), each trained model above its random-init twin, whose label is
    grey. Scores below ``floor`` are drawn on it as open markers. Control targets and twin
    seeds after the first are left out (their tables are beside the figure in the book).
    """
    if "control" in summary:
        summary = summary[~summary["control"].astype(bool) & (summary["seed"] == summary["seed"].min())]
    order = order or list(dict.fromkeys(summary["family"]))
    models = (summary.drop_duplicates("model")
              .assign(_f=lambda d: d["family"].map({f: i for i, f in enumerate(order)}),
                      _t=lambda d: (d["status"] == "random-init").astype(int))
              .sort_values(["_f", "_t"], kind="stable"))
    names = list(models["model"])
    ypos = {m: i for i, m in enumerate(names)}
    targets = list(dict.fromkeys(summary["target"]))
    fig, axes = plt.subplots(1, len(targets), figsize=(4.6 * len(targets) + 1.6, 0.36 * len(names) + 1.6),
                             sharey=True, squeeze=False)
    palette = dict(zip(PROBE_ORDER, sns.color_palette("colorblind", 3)))
    for ax, target in zip(axes[0], targets):
        sub = summary[summary["target"] == target]
        comp = sub.drop_duplicates("model").set_index("model")["r2_comp"]
        ax.barh([ypos[m] for m in comp.index], comp.clip(lower=floor) - floor, left=floor, height=0.7,
                color="0.85", label="R²_comp (composition alone)")
        for k, (probe, grp) in enumerate(sub.groupby("probe", sort=False)):
            y = np.array([ypos[m] for m in grp["model"]]) + (k - 1) * 0.18
            x = grp["r2_geom"].to_numpy()
            low = x < floor
            if "r2_geom_lo" in grp:
                lo = np.maximum(grp["r2_geom_lo"].to_numpy(), floor)
                hi = np.maximum(grp["r2_geom_hi"].to_numpy(), floor)
                ax.errorbar(np.clip(x, floor, None), y, xerr=[np.clip(x, floor, None) - lo, hi - np.clip(x, floor, None)],
                            fmt="none", ecolor=palette.get(probe), elinewidth=1, capsize=2, zorder=2)
            ax.scatter(np.where(low, floor, x), y, marker=PROBE_MARKERS.get(probe, "o"), s=34, zorder=3,
                       color=palette.get(probe), label=f"R²_geom, {probe}")
            if low.any():
                ax.scatter(np.full(low.sum(), floor), y[low], marker=PROBE_MARKERS.get(probe, "o"), s=60,
                           facecolors="none", edgecolors="k", zorder=4)
        edges = models.reset_index(drop=True).groupby("family", sort=False).size().cumsum().to_numpy()[:-1]
        for e in edges:
            ax.axhline(e - 0.5, color="0.6", lw=0.6)
        ax.axvline(0, color="0.3", lw=0.8)
        ax.set(title=target, xlim=(floor, 1.0), xlabel="R² (5-fold CV, nested; bars: 95 % interval)")
    ax0 = axes[0][0]
    ax0.set_yticks(range(len(names)))
    ax0.set_yticklabels(names)
    for label, status in zip(ax0.get_yticklabels(), models["status"]):
        if status == "random-init":
            label.set_color("0.5")
    ax0.invert_yaxis()
    handles, labels = ax0.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, frameon=False, bbox_to_anchor=(0.5, -0.01))
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    plt.close(fig)  # shown once, as the cell's value, whatever the backend hooks do
    return fig


SUPERVISION_COLORS = {"gap-trained": "#0173b2", "U0-trained": "#de8f05", "random-init": "0.65"}


def alignment_plot(table: pd.DataFrame, paper: dict | None = None, floor: float = -0.5,
                   lo: pd.DataFrame | None = None, hi: pd.DataFrame | None = None) -> plt.Figure:
    """R²_geom per architecture and target for the gap-trained, U0-trained and random-init twins.

    ``table`` is :func:`cpd_core.experiments.task_alignment.alignment_table`; ``lo``/``hi`` the same
    table of the interval bounds (``score="r2_geom_lo"``/``"r2_geom_hi"``), drawn as error bars;
    ``paper`` maps ``(arch, supervision)`` to the paper's value for the gap, drawn as black
    diamonds. Bars stop at ``floor`` (their value is printed when they go below it).
    """
    targets = list(dict.fromkeys(table["target"]))
    columns = [c for c in SUPERVISION_COLORS if c in table.columns]
    fig, axes = plt.subplots(1, len(targets), figsize=(4.6 * len(targets), 3.8), sharey=True, squeeze=False)
    width = 0.8 / len(columns)
    for ax, target in zip(axes[0], targets):
        sub = table[table["target"] == target].reset_index(drop=True)
        x = np.arange(len(sub))
        for k, column in enumerate(columns):
            pos = x + (k - (len(columns) - 1) / 2) * width
            values = sub[column].to_numpy(dtype=float)
            ax.bar(pos, np.maximum(values, floor), width, color=SUPERVISION_COLORS[column], label=column)
            if lo is not None and hi is not None:
                key = ["arch", "target"]
                bounds = sub[key].merge(lo[key + [column]], on=key, how="left")[column].to_numpy(dtype=float), \
                    sub[key].merge(hi[key + [column]], on=key, how="left")[column].to_numpy(dtype=float)
                v = np.maximum(values, floor)
                ax.errorbar(pos, v, yerr=[np.clip(v - np.maximum(bounds[0], floor), 0, None),
                                          np.clip(np.maximum(bounds[1], floor) - v, 0, None)],
                            fmt="none", ecolor="black", elinewidth=0.8, capsize=2)
            for p, v in zip(pos, values):
                if v < floor:
                    ax.text(p, floor + 0.02, f"{v:.1f}", ha="center", va="bottom", fontsize=7, rotation=90)
            if paper and target == "gap":
                marks = [(p, paper[(a, column)]) for p, a in zip(pos, sub["arch"]) if (a, column) in paper]
                if marks:
                    ax.scatter(*zip(*marks), marker="D", color="black", s=22, zorder=3,
                               label="paper" if k == 0 else None)
        ax.axhline(0, color="0.3", lw=0.8)
        ax.set_xticks(x, sub["arch"])
        ax.set(title=target, ylim=(floor, 1.0))
    axes[0][0].set_ylabel("ridge R²_geom (5-fold CV, nested)")
    legend = {}
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    handles, labels = list(legend.values()), list(legend)
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), frameon=False, bbox_to_anchor=(0.5, 1.02))
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    plt.close(fig)
    return fig


def training_curves(histories: pd.DataFrame) -> plt.Figure:
    """Validation MAE (log scale) against training minutes, one line per architecture, per target."""
    targets = list(dict.fromkeys(histories["target"]))
    fig, axes = plt.subplots(1, len(targets), figsize=(4.6 * len(targets), 3.4), squeeze=False)
    palette = dict(zip(dict.fromkeys(histories["arch"]), sns.color_palette("colorblind")))
    for ax, target in zip(axes[0], targets):
        for arch, grp in histories[histories["target"] == target].groupby("arch", sort=False):
            ax.plot(grp["minutes"], grp["val_mae_meV"], marker="o", ms=3, color=palette[arch], label=arch)
        ax.set(yscale="log", title=target, xlabel="training time (min)", ylabel="validation MAE (meV)")
    axes[0][0].legend(frameon=False, fontsize=8)
    fig.tight_layout()
    plt.close(fig)
    return fig


def evolution_plot(run, target: str = "gap") -> plt.Figure:
    """Along training: R²_geom of ``target`` for the gap- and U0-trained runs (left), and their paired difference (right).

    ``run`` is a :class:`~cpd_core.experiments.task_alignment.EvolutionRun`. Left: nested ridge R²_geom
    against training minutes, solid for the gap-trained run, dashed for the U0-trained one, from the
    random-init twin (0 min); right: gap − U0 at each snapshot (equal fractions of the budget).
    Error bars are 95 % intervals.
    """
    points, contrasts = run.points, run.contrasts
    archs = list(dict.fromkeys(points["arch"]))
    palette = dict(zip(archs, sns.color_palette("colorblind")))
    fig, (left, right) = plt.subplots(1, 2, figsize=(10.4, 3.9))
    for arch in archs:
        for trained_on, style in (("gap", "-"), ("U0", "--")):
            grp = points[(points["arch"] == arch) & (points["trained on"] == trained_on)].sort_values("snapshot")
            left.errorbar(grp["minutes"], grp["r2_geom"], yerr=_yerr(grp["r2_geom"], grp["r2_geom_lo"], grp["r2_geom_hi"]),
                          ls=style, marker="o", ms=3, capsize=2, color=palette[arch],
                          label=f"{arch}, trained on {trained_on}")
        grp = contrasts[contrasts["arch"] == arch]
        right.errorbar(grp["fraction of budget"], grp["gap − U0"], yerr=_yerr(grp["gap − U0"], grp["lo"], grp["hi"]),
                       marker="o", ms=4, capsize=3, color=palette[arch], label=arch)
    left.set(xlabel="training time (min)", ylabel=f"R²_geom ({target}, ridge, nested)",
             title=f"{target} after composition removal, n = {run.n} held out")
    left.legend(frameon=False, fontsize=7)
    right.axhline(0, color="0.5", lw=0.8)
    right.set(xlabel="fraction of the training budget", ylabel="gap-trained − U0-trained R²_geom",
              title="task-alignment contrast (paired, 95 % CI)", xlim=(0, 1.05))
    right.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    plt.close(fig)
    return fig


#: Measures of a layer profile (:func:`cpd_core.experiments.layer_profiles.layer_profiles`) and their axis labels.
PROFILE_MEASURES = {"comp_share": "composition share\n(held-out, of feature variance)",
                    "readback": "element counts read back\n(ridge R², mean over elements)"}


def profile_plot(table: pd.DataFrame, targets=("gap", "dipole"), floor: float = -0.2) -> plt.Figure:
    """Layer profiles: one row of panels per model family, one column per measure, depth on x.

    Columns: ridge R²_geom of each target, the composition share of the features and the count
    read-back (:mod:`cpd_core.experiments.layer_profiles`), each with its 95 % interval as error bars.
    Trained models are coloured lines, random-init twins (first seed) grey and dashed, beside them.
    Values below ``floor`` are drawn on it.
    """
    t = table[table["seed"] == table["seed"].min()]
    measures = {f"r2_geom {x}": f"R²_geom, {x}\n(ridge, 5-fold CV)" for x in targets} | PROFILE_MEASURES
    families = list(dict.fromkeys(t["family"]))
    fig, axes = plt.subplots(len(families), len(measures), figsize=(2.7 * len(measures) + 0.6, 1.9 * len(families) + 0.9),
                             sharex="row", squeeze=False)
    colors = sns.color_palette("colorblind", 8)
    for r, family in enumerate(families):
        fam = t[t["family"] == family]
        trained = [m for m in dict.fromkeys(fam["model"]) if (fam[fam["model"] == m]["status"] != "random-init").all()]
        for c, (col, label) in enumerate(measures.items()):
            ax = axes[r][c]
            for model, grp in fam.groupby("model", sort=False):
                grp = grp.sort_values("depth")
                twin = (grp["status"] == "random-init").all()
                color = "0.55" if twin else colors[trained.index(model) % len(colors)]
                y = grp[col].clip(lower=floor)
                ax.errorbar(grp["depth"], y, yerr=_yerr(y, grp[col + "_lo"].clip(lower=floor), grp[col + "_hi"].clip(lower=floor)),
                            color=color, ls="--" if twin else "-", marker="o", ms=3, lw=1.2, capsize=2,
                            label=model if c == 0 else None)
            ax.axhline(0, color="0.7", lw=0.6)
            ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
            ax.set_ylim(floor if col.startswith("r2_geom") else -0.05, 1.02)
            if r == 0:
                ax.set_title(label, fontsize=9)
            if r == len(families) - 1:
                ax.set_xlabel("depth (0 = embedding / AEV)")
            if c == 0:
                ax.set_ylabel(family)
                ax.legend(fontsize=6.5, frameon=False, loc="best")
    fig.tight_layout()
    plt.close(fig)
    return fig


def routing_plot(channels: pd.DataFrame, targets=("dipole", "gap"), floor: float = -0.2) -> plt.Figure:
    """Nested ridge R²_geom per channel (L0, L1@atom-norm, …) of every equivariant model, one panel per target.

    Models on y (random-init twins' labels grey), channels as coloured markers with their 95 %
    intervals; first seed only. Values below ``floor`` are drawn on it.
    """
    ch = channels[channels["seed"] == channels["seed"].min()]
    targets = [x for x in targets if x in set(ch["target"])]
    names = list(dict.fromkeys(ch["model"]))
    kinds = sorted(dict.fromkeys(ch["channel"]), key=lambda k: (k != "L0", k))
    palette = dict(zip(kinds, sns.color_palette("colorblind", len(kinds))))
    ypos = {m: i for i, m in enumerate(names)}
    fig, axes = plt.subplots(1, len(targets), figsize=(4.4 * len(targets) + 2.2, 0.42 * len(names) + 1.8),
                             sharey=True, squeeze=False)
    for ax, target in zip(axes[0], targets):
        sub = ch[ch["target"] == target]
        for k, kind in enumerate(kinds):
            grp = sub[sub["channel"] == kind]
            if grp.empty:
                continue
            y = np.array([ypos[m] for m in grp["model"]]) + (k - (len(kinds) - 1) / 2) * 0.8 / len(kinds)
            x = grp["r2_geom"].clip(lower=floor)
            ax.errorbar(x, y, xerr=_yerr(x, grp["r2_geom_lo"].clip(lower=floor), grp["r2_geom_hi"].clip(lower=floor)),
                        fmt="o", ms=3.5, color=palette[kind], elinewidth=1, capsize=1.5, label=kind)
        ax.axvline(0, color="0.3", lw=0.8)
        ax.set(title=target, xlim=(floor, 1.0), xlabel="R²_geom (ridge, nested layer; bars: 95 % interval)")
    ax0 = axes[0][0]
    ax0.set_yticks(range(len(names)))
    ax0.set_yticklabels(names)
    status = ch.drop_duplicates("model").set_index("model")["status"]
    for label in ax0.get_yticklabels():
        if status.get(label.get_text()) == "random-init":
            label.set_color("0.5")
    ax0.invert_yaxis()
    handles, labels = ax0.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(kinds), 5), frameon=False, bbox_to_anchor=(0.5, -0.01))
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    plt.close(fig)
    return fig
