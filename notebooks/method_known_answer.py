# %% tags=["parameters"]
n_molecules = 2000
seed = 0
geom_shares = [0.0, 0.2, 0.4, 0.6]
comp_share = 0.3

# %% [markdown]
# # Known-answer check: planted signals and probe inflation
#
# Synthetic molecules whose features carry a planted geometric signal of known strength
# (`cpd_core.synthetic`). If CPD is right, the ridge probe on the composition residual
# recovers exactly the planted share, and scores zero on a target that is purely compositional.

# %%
import pandas as pd

from cpd_core.experiments.known_answer import compositional_inflation, planted_recovery
from cpd_core.plots import fold_strip, recovery_plot
from cpd_core.report import glue

pd.set_option("display.precision", 3)

# %% [markdown]
# ## Planted geometric signal
#
# For each planted share $b^2$ of the target's variance (composition holds `comp_share`, noise the
# rest), CPD with each probe on `n_molecules` synthetic molecules (a parameter), 5 shuffled folds.

# %%
summary, folds = planted_recovery(geom_shares, comp_share=comp_share, n=n_molecules, seed=seed)
summary[["geom_share", "probe", "r2_geom_true", "r2_comp_true", "r2_comp", "r2_geom", "r2_geom_std"]]

# %% [markdown]
# Recovered against planted: the dashed line is perfect recovery, small dots are single folds.

# %%
recovery_plot(summary, folds)

# %% [markdown]
# The largest gap between the ridge probe's R²_geom and the true value, over all planted shares:

# %%
ridge = summary[summary["probe"] == "ridge"]
max_gap = (ridge["r2_geom"] - ridge["r2_geom_true"]).abs().max()
glue("max_gap", f"{max_gap:.3f}")
print(f"max |R²_geom(ridge) - true| = {max_gap:.3f}")

# %% [markdown]
# ## A purely compositional target
#
# The target is a linear function of the element counts, so its true linear R²_geom is 0. The
# features also hold *nonlinear* functions of composition (element fractions, saturating counts),
# which a linear projection cannot remove.

# %%
inflation, inflation_folds = compositional_inflation(n=n_molecules, seed=seed)
inflation[["probe", "r2_comp", "r2_full", "r2_geom", "r2_geom_std", "r2_geom_worst_fold"]]

# %% [markdown]
# Per-fold R²_geom of each probe on this target: anything above zero is composition read back
# through a nonlinear probe, not geometry.

# %%
fold_strip(inflation_folds, by="probe")

# %% [markdown]
# The values quoted in the text below are recorded here from this run.

# %%
by_probe = inflation.set_index("probe")["r2_geom"]
for probe in ("ridge", "mlp", "gbt"):
    glue(f"inflation_{probe}", f"{by_probe[probe]:.3f}")

# %% [markdown]
# ## What this shows
#
# - With a planted geometric share, the ridge probe's R²_geom matches the truth to within
#   {glue:text}`max_gap` at every level: the projection removes composition and nothing else. MLP and
#   GBT overshoot the planted share, because they also read composition back.
# - On the purely compositional target the ridge R²_geom is {glue:text}`inflation_ridge` (truth: 0),
#   while the MLP scores {glue:text}`inflation_mlp` and gradient-boosted trees
#   {glue:text}`inflation_gbt`. This is the paper's inflation of nonlinear probes (trees at 0.68–0.95 on
#   a compositional target in the paper): a nonlinear probe's R²_geom is an upper bound that can be
#   almost entirely compositional. This book therefore reports ridge R²_geom as the primary number
#   and shows MLP and GBT beside it, never alone.
