"""Figures of the book. Each takes the tables an experiment returned and returns a matplotlib Figure.

Every figure shows per-fold values beside the mean: a mean can hide a collapsed fold.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

SCORE_LABELS = {"r2_comp": "R²_comp (linear in C)", "r2_full": "R²_full (raw features)",
                "r2_geom": "R²_geom (residual)"}
PROBE_ORDER = ["ridge", "mlp", "gbt"]


def recovery_plot(summary: pd.DataFrame, folds: pd.DataFrame) -> plt.Figure:
    """Recovered R²_geom against the planted value, per probe (identity = perfect recovery)."""
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    lim = [min(-0.05, folds["r2_geom"].min() - 0.05), max(1.0, folds["r2_geom"].max() + 0.05)]
    ax.plot(lim, lim, color="0.6", lw=1, ls="--", label="recovered = planted")
    palette = dict(zip(PROBE_ORDER, sns.color_palette("colorblind", 3)))
    for probe, grp in folds.groupby("probe", sort=False):
        ax.scatter(grp["r2_geom_true"], grp["r2_geom"], s=12, alpha=0.5, color=palette.get(probe))
    for probe, grp in summary.groupby("probe", sort=False):
        ax.plot(grp["r2_geom_true"], grp["r2_geom"], marker="o", color=palette.get(probe), label=probe)
    ax.set(xlim=lim, ylim=lim, xlabel="planted geometric share (true linear R²_geom)",
           ylabel="recovered R²_geom (5-fold CV)")
    ax.legend(frameon=False, loc="upper left")
    fig.tight_layout()
    plt.close(fig)  # shown once, as the cell's value, whatever the backend hooks do
    return fig


def cpd_bars(summary: pd.DataFrame, folds: pd.DataFrame, title: str | None = None,
             floor: float = -0.5) -> plt.Figure:
    """R²_comp, R²_full and R²_geom per probe and target; bars are fold means, dots are folds.

    The y axis stops at ``floor``; folds below it are drawn on the floor as
    triangles and counted in the panel title.
    """
    targets = list(dict.fromkeys(summary["target"]))
    fig, axes = plt.subplots(1, len(targets), figsize=(4.2 * len(targets), 3.8), sharey=True, squeeze=False)
    long = summary.melt(id_vars=["target", "probe"], value_vars=list(SCORE_LABELS),
                        var_name="score", value_name="r2")
    for ax, target in zip(axes[0], targets):
        sub = long[long["target"] == target]
        fsub = folds[folds["target"] == target].copy()
        sns.barplot(data=sub, x="probe", y="r2", hue="score", hue_order=list(SCORE_LABELS), ax=ax,
                    order=[p for p in PROBE_ORDER if p in set(sub["probe"])], palette="colorblind",
                    errorbar=None, alpha=0.8)
        low = fsub["r2"] < floor
        fsub["r2"] = fsub["r2"].clip(lower=floor)
        sns.stripplot(data=fsub, x="probe", y="r2", hue="score", hue_order=list(SCORE_LABELS), dodge=True,
                      ax=ax, order=[p for p in PROBE_ORDER if p in set(sub["probe"])], palette="dark:k", size=3,
                      legend=False)
        ax.axhline(0, color="0.3", lw=0.8)
        ax.set(title=f"{target}" + (f"  ({int(low.sum())} fold(s) < {floor})" if low.any() else ""),
               xlabel="probe", ylabel="R² (5-fold CV)", ylim=(floor, 1.02))
        ax.get_legend().remove()
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, [SCORE_LABELS.get(lbl, lbl) for lbl in labels], loc="lower center",
               ncol=3, frameon=False, bbox_to_anchor=(0.5, -0.02))
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    plt.close(fig)  # shown once, as the cell's value, whatever the backend hooks do
    return fig


def fold_strip(folds: pd.DataFrame, score: str = "r2_geom", by: str = "variant") -> plt.Figure:
    """Per-fold scores of each group (column ``by``) on a symmetric-log axis, so collapsed folds stay visible."""
    fig, ax = plt.subplots(figsize=(7.5, 0.55 * folds[by].nunique() + 1.2))
    sns.stripplot(data=folds, y=by, x=score, ax=ax, size=6, color="C0", jitter=0.1)
    means = folds.groupby(by, sort=False)[score].mean()
    ax.scatter(means.values, np.arange(len(means)), marker="|", s=300, color="C3", label="mean over folds")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.axvline(0, color="0.5", lw=0.8)
    ax.set(xlabel=f"{SCORE_LABELS.get(score, score)} per fold (symlog)", ylabel="")
    ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    plt.close(fig)  # shown once, as the cell's value, whatever the backend hooks do
    return fig


PROBE_MARKERS = {"ridge": "o", "mlp": "^", "gbt": "s"}


def gradient_plot(summary: pd.DataFrame, order: list[str] | None = None, floor: float = -0.5) -> plt.Figure:
    """R²_geom per model and probe (markers) with R²_comp (grey bar), one panel per target.

    Models are grouped by architectural family (``order``: family names top to bottom,
    default as they come), each trained model above its random-init twin, whose label is
    grey. Scores below ``floor`` are drawn on it as open markers.
    """
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
        for probe, grp in sub.groupby("probe", sort=False):
            y = np.array([ypos[m] for m in grp["model"]])
            x = grp["r2_geom"].to_numpy()
            low = x < floor
            ax.scatter(np.where(low, floor, x), y, marker=PROBE_MARKERS.get(probe, "o"), s=34, zorder=3,
                       color=palette.get(probe), label=f"R²_geom, {probe}")
            if low.any():
                ax.scatter(np.full(low.sum(), floor), y[low], marker=PROBE_MARKERS.get(probe, "o"), s=60,
                           facecolors="none", edgecolors="k", zorder=4)
        edges = models.reset_index(drop=True).groupby("family", sort=False).size().cumsum().to_numpy()[:-1]
        for e in edges:
            ax.axhline(e - 0.5, color="0.6", lw=0.6)
        ax.axvline(0, color="0.3", lw=0.8)
        ax.set(title=target, xlim=(floor, 1.0), xlabel="R² (5-fold CV)")
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


def alignment_plot(table: pd.DataFrame, paper: dict | None = None, floor: float = -0.5) -> plt.Figure:
    """R²_geom per architecture and target for the gap-trained, U0-trained and random-init twins.

    ``table`` is :func:`cpd_core.experiments.alignment.alignment_table`; ``paper`` maps
    ``(arch, supervision)`` to the paper's value for the gap, drawn as black diamonds. Bars stop
    at ``floor`` (their value is printed when they go below it).
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
    axes[0][0].set_ylabel("ridge R²_geom (5-fold CV)")
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
