# %% [markdown]
# # Layer by layer: what each depth of a model holds
#
# For every model of the models chapter (on its molecules) and every network trained here (on its
# held-out test split), each layer's scalar block is probed three ways: ridge R²_geom of the gap and
# the dipole, the share of the features' variance that is linear in composition, and how well the
# element counts can be read back from the features. At `scale = "book"` a few hundred molecules;
# `scale = "full"` takes all of them (a GPU).

# %% tags=["parameters", "hide-input"]
scale = "book"  # "book" or "full": cpd_core.experiments.scales
n_molecules = None  # None: the scale's value
seed = 0
device = "auto"
targets = ["gap", "dipole"]
models = None  # None: the scale's set of the models chapter (model_gradient.default_models), or a list
archs = None  # None: every architecture trained here (task_alignment.trained_archs); [] for none
twin_seeds = [0]  # random-init twins are drawn with each seed

# %% tags=["hide-input"]
from cpd_core.experiments.layer_profiles import dip_table, layer_profiles, profile_facts
from cpd_core.experiments.model_gradient import default_models
from cpd_core.experiments.scales import at_scale
from cpd_core.plots import profile_plot
from cpd_core.report import glue, table

n_molecules, models = at_scale("layer_profiles", scale, n_molecules=n_molecules, models=models)
run_here = default_models(models) if isinstance(models, str) else list(models)

# %% [markdown]
# ## Profiles
#
# One row per model and depth (depth 0 is the embedding, or ANI-2x's AEV; ANI's hidden layers are
# depths 1-3). `r2_geom` columns: nested in nothing (one block), 5 shuffled folds, 95 % bootstrap
# interval over held-out molecules; the same scans as the models chapter's. `comp_share`: the fraction
# of the standardised features' variance that a linear fit on element counts predicts on held-out
# molecules. `readback`: held-out R² of a ridge probe reading each element's count from the features,
# averaged over elements.

# %% tags=["scroll-output"]
run = layer_profiles(run_here, archs=archs, n=n_molecules, seed=seed, targets=targets, device=device,
                     twin_seeds=twin_seeds)
cols = ["molecules", "model", "status", "depth", "block", "d"] + [
    c for c in run.table.columns if c.startswith(("r2_geom", "comp_share", "readback"))]
table(run.table[cols])

# %% [markdown]
# Each row of panels is one family; trained models in colour, random-init twins grey and dashed;
# bars are 95 % intervals.

# %%
profile_plot(run.table, targets=targets)

# %% [markdown]
# ## Does composition dip in the middle layers?
#
# The paper reports MACE losing compositional information in its middle layers and recovering it in
# its last. For every model with three or more depths, and for each measure (`comp_share`, `readback`):
# the first layer, the middle layer where the measure is lowest and the last layer, and two paired
# differences, first − middle (*lost*) and last − middle (*recovered*), with 95 % intervals in which
# every bootstrap replicate resamples the same held-out molecules for both layers. "dip and recovery"
# needs both intervals above zero. The middle layer is picked as the weakest on these same molecules,
# which biases both differences upwards: the test leans towards finding a dip and a recovery.

# %%
dips = dip_table(run)
table(dips)

# %% [markdown]
# The values quoted in the text below are recorded here from this run.

# %% tags=["hide-input"]
for name, value in profile_facts(run).items():
    glue(name, value)

# %% [markdown]
# ## What this shows
#
# All numbers on this page: {glue:text}`n_sets`, 5 shuffled folds, 95 % bootstrap intervals over
# held-out molecules; {glue:text}`n_models` models, {glue:text}`n_blocks` layers in all, from the run
# the front page names for this chapter (its scale, parameters and machine).
#
# - **Composition share.** A linear fit on element counts predicts {glue:text}`trained_comp_share_first`
#   of the feature variance of trained models' first layers on held-out molecules and
#   {glue:text}`trained_comp_share_last` of their last; {glue:text}`twin_comp_share_first` and
#   {glue:text}`twin_comp_share_last` for the random-init twins. An embedding layer is a function of the
#   element alone; under mean pooling it is linear in element *fractions*, so even there the share
#   stays below one.
# - **Count read-back.** The element counts are read back from trained models' last layers with R²
#   {glue:text}`trained_readback_last` (twins {glue:text}`twin_readback_last`): close to its ceiling in
#   every layer, so this measure separates layers less than the share does.
# - **The mid-layer dip.** With the composition share, of {glue:text}`n_tested_comp_share` models deep
#   enough to have a middle, the dip and recovery (both paired intervals above zero) hold for:
#   {glue:text}`comp_share_dip_and_recovery`; a dip without recovery for:
#   {glue:text}`comp_share_dip_no_recovery`; no dip: {glue:text}`comp_share_no_dip`; not resolved:
#   {glue:text}`comp_share_not_resolved`. With the count read-back: dip and recovery for
#   {glue:text}`readback_dip_and_recovery`; a dip without recovery for
#   {glue:text}`readback_dip_no_recovery`; no dip: {glue:text}`readback_no_dip`; not resolved:
#   {glue:text}`readback_not_resolved`. Too shallow for the test (two depths or fewer):
#   {glue:text}`too_shallow`. The MACE trained here has two interaction layers, as the "medium"
#   MACE-MP-0 and MACE-OFF do, and no embedding block of its own, so its profile has no middle; the
#   paper's claim is put here to the deeper equivariant models (SevenNet-0, SO3LR, SO3Net, PaiNN,
#   ViSNet) and their twins.
# - **Where the target sits.** The layer with the highest ridge R²_geom for the gap is the last one in
#   {glue:text}`best_last_gap` of {glue:text}`n_models` models and the first in
#   {glue:text}`best_first_gap`; for the dipole, last in {glue:text}`best_last_dipole`, first in
#   {glue:text}`best_first_dipole`. Choosing a "best layer" from this table is the winner's curse the
#   models chapter avoids with nested selection; the profiles are descriptive, one block at a time.
