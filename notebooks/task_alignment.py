# %% tags=["parameters"]
n_molecules = 500
seed = 0
device = "auto"
targets = ["gap", "dipole"]
probes = ["ridge", "mlp", "gbt"]
archs = None  # None: every architecture with both QM9 checkpoints in checkpoints/qm9/

# %% [markdown]
# # Task alignment: gap-trained vs energy-trained vs untrained
#
# Five architectures trained here on QM9 under one protocol (`cpd_core.training`), each twice — on
# the HOMO-LUMO gap and on the internal energy U0 — and once left untrained (random-init, seed 0).
# CPD of all three on the same `n_molecules` QM9 molecules, for the gap and the dipole moment, at each
# network's most informative block. The CPU build uses a few hundred molecules; set
# `n_molecules = None` (all 130,831) on a GPU.

# %%
import pandas as pd

from cpd_core.experiments.alignment import (
    alignment_table,
    mae_table,
    paper_comparison,
    task_alignment,
    trained_archs,
    training_histories,
)
from cpd_core.paper import paper_value
from cpd_core.plots import alignment_plot, training_curves
from cpd_core.report import glue

pd.set_option("display.precision", 3)
pd.set_option("display.max_colwidth", 70)
archs = archs or trained_archs()

# %% [markdown]
# ## How well the networks were trained
#
# Test MAE of each network (from its `manifest.json`, written by `cpd train`) next to the published
# value with the full 110,000-molecule training set. `n_train` and `minutes` say how much training
# each network got here; `scripts/train_qm9.sh` holds the commands, for this run and for a full one.

# %%
maes = mae_table(archs)
maes

# %%
training_curves(training_histories(archs))

# %% [markdown]
# ## CPD of each twin at its most informative block

# %%
summary, scan = task_alignment(archs, n=n_molecules, seed=seed, targets=targets, probes=probes, device=device)
print(f"{summary['n'].iloc[0]} molecules probed")
summary[["model", "supervision", "target", "block", "probe", "r2_comp", "r2_geom", "r2_geom_std"]]

# %% [markdown]
# Ridge R²_geom of the three twins of each architecture (bars), with the paper's values for PaiNN
# and MACE on the gap (black diamonds):

# %%
paper = {("painn", "gap-trained"): paper_value("r2_geom", "PaiNN gap-trained", "gap", "ridge"),
         ("painn", "U0-trained"): paper_value("r2_geom", "PaiNN energy-trained", "gap", "ridge"),
         ("mace", "gap-trained"): paper_value("r2_geom", "MACE gap-trained", "gap", "ridge"),
         ("mace", "U0-trained"): paper_value("r2_geom", "MACE energy-trained", "gap", "ridge")}
ridge = alignment_table(summary, probe="ridge")
alignment_plot(ridge, paper)

# %% [markdown]
# The same numbers, with the MLP and gradient-boosted-tree probes at the same blocks beside them:

# %%
tables = {probe: alignment_table(summary, probe=probe).set_index(["arch", "target"]) for probe in probes}
pd.concat(tables, axis=1)

# %% [markdown]
# ## Next to the paper
#
# The paper's MACE and PaiNN were trained by its author on QM9 with their own settings; ours under this
# project's protocol (above). The paper also gives MACE-MP-0, trained on crystals, at
# 0.36 — the models chapter's stand-in for it is SevenNet-0.

# %%
comparison = paper_comparison(summary)
comparison

# %% [markdown]
# The values quoted in the text below are recorded here from this run.

# %%
gap_rows = ridge[ridge["target"] == "gap"].set_index("arch")
dip_rows = ridge[ridge["target"] == "dipole"].set_index("arch")
values = {
    "n_mol": int(summary["n"].max()),
    "n_archs": len(gap_rows),
    "gap_wins": int((gap_rows["gap − U0"] > 0).sum()),
    "dip_gap_wins": int((dip_rows["gap − U0"] > 0).sum()),
    "random_beats_u0": int((gap_rows["random-init"] > gap_rows["U0-trained"]).sum()),
    "mean_gap_minus_u0": f"{gap_rows['gap − U0'].mean():.2f}",
    "mae_ratio_min": f"{maes['ratio'].min():.1f}",
    "mae_ratio_max": f"{maes['ratio'].max():.1f}",
    "n_train": f"{int(maes['n_train'].max()):,}",
    "minutes": f"{maes['minutes'].max():.0f}",
    "train_device": maes["device"].iloc[0],
}
for arch in ("painn", "mace"):
    for supervision in ("gap-trained", "U0-trained"):
        key = f"{arch}_{supervision.split('-')[0].lower()}"
        values[key] = f"{gap_rows.loc[arch, supervision]:.2f}" if arch in gap_rows.index else "n/a"
for name, value in values.items():
    glue(name, value)

# %% [markdown]
# ## What this shows
#
# - **Supervision and the gap.** On {glue:text}`n_mol` molecules, the gap-trained twin made the gap more
#   linearly accessible after composition removal than the U0-trained twin in {glue:text}`gap_wins` of
#   {glue:text}`n_archs` architectures (mean difference in ridge R²_geom {glue:text}`mean_gap_minus_u0`);
#   the paper's direction, for PaiNN (ours {glue:text}`painn_gap` vs {glue:text}`painn_u0`; paper 0.53 vs
#   0.31) and MACE (ours {glue:text}`mace_gap` vs {glue:text}`mace_u0`; paper 0.44 vs 0.08).
# - **Energy training and the untrained control.** The random-init twin scored above the U0-trained one on
#   the gap in {glue:text}`random_beats_u0` of {glue:text}`n_archs` architectures.
# - **The dipole,** which neither twin was trained on: the gap-trained twin scored higher in
#   {glue:text}`dip_gap_wins` of {glue:text}`n_archs`.
# - **How far from converged.** These networks were trained on {glue:text}`train_device` for at most
#   {glue:text}`minutes` minutes each on up to {glue:text}`n_train` molecules; their test MAEs are
#   {glue:text}`mae_ratio_min`–{glue:text}`mae_ratio_max` times the published full-QM9 values (the table
#   above). A network far from convergence may route information differently from a converged one; the
#   commands in `scripts/train_qm9.sh` retrain all ten at full scale on a GPU, and this page re-executes
#   on them unchanged.
