# %% [markdown]
# # Irreps routing: which channel carries which property
#
# For every equivariant model of the models chapter (on its molecules) and every equivariant network
# trained here (on its held-out test split): ridge R²_geom from the scalar channel (L0) and from each
# L ≥ 1 channel under both invariants, the best layer of each channel chosen on inner folds, and the
# paired difference of each L ≥ 1 channel with L0. At `scale = "book"` a few hundred molecules;
# `scale = "full"` takes all of them (a GPU).

# %% tags=["parameters", "hide-input"]
scale = "book"  # "book" or "full": cpd_core.experiments.scales
n_molecules = None  # None: the scale's value
seed = 0
device = "auto"
targets = ["dipole", "gap", "homo", "lumo", "alpha"]  # the dipole is QM9's one vector target
models = None  # None: the scale's set of the models chapter (model_gradient.default_models), or a list
archs = None  # None: every architecture trained here (task_alignment.trained_archs); [] for none
twin_seeds = [0, 1, 2]  # random-init twins are drawn with each seed

# %% tags=["hide-input"]
from cpd_core.experiments.irreps_routing import (
    PAPER_MACE,
    irreps_routing,
    rank_table,
    routing_facts,
    routing_verdicts,
    training_effect,
)
from cpd_core.experiments.model_gradient import default_models
from cpd_core.experiments.scales import at_scale
from cpd_core.plots import routing_plot
from cpd_core.report import glue, table

n_molecules, models = at_scale("irreps_routing", scale, n_molecules=n_molecules, models=models)
run_here = default_models(models) if isinstance(models, str) else list(models)

# %% [markdown]
# ## Each channel's nested R²_geom
#
# One row per model, target and channel: `L0` (scalar blocks of every layer), `L1@atom-norm` (mean over
# atoms of each vector channel's norm), `L1@pooled-norm` (norm of the pooled vector), and likewise for
# L = 2 and above where a model has them. Within each channel the layer is chosen on inner folds
# (`layer`: the one chosen most often); 5 shuffled folds, 95 % bootstrap intervals.

# %% tags=["scroll-output"]
run = irreps_routing(run_here, archs=archs, n=n_molecules, seed=seed, targets=targets, device=device,
                     twin_seeds=twin_seeds)
table(run.channels.drop(columns=["twin_of", "family"]))

# %%
routing_plot(run.channels)

# %% [markdown]
# ## Routing, model by model
#
# `dipole delta` and `gap delta` are R²_geom(channel) − R²_geom(L0), paired over the same held-out
# molecules, with their 95 % intervals. *dipole → L*: the L ≥ 1 channel reads the dipole better than
# the scalars (interval above zero); *gap → L0*: the scalars read the gap better (interval below
# zero); *routing*: both, the pattern the paper reports for MACE (dipole 0.59 from L = 1 against 0.38
# from L = 0; gap 0.76 from L = 0 against 0.34 from L = 1).

# %%
table(routing_verdicts(run))

# %% [markdown]
# ## Does routing need training?
#
# For each trained model and its random-init twin (the twin of a network trained here is shared by its
# gap- and U0-trained versions; its first seed): the contrast of the trained model, that of the twin,
# and their difference with its paired 95 % interval (`training`): positive where training moved the
# target towards the L ≥ 1 channel. The verdicts table above has every seed of every twin.

# %%
table(training_effect(run))

# %% [markdown]
# ## Does routing follow the tensor rank of the target?
#
# The paper tested the dipole and the gap. Here every L ≥ 1 channel's contrast with L0 for each target,
# marked by tensor rank: the dipole moment is QM9's one vector property; the gap, HOMO, LUMO and the
# isotropic polarizability are scalars. `vector only`: the channel beats L0 for the dipole and for no
# scalar target.

# %%
table(rank_table(run))

# %% [markdown]
# The values quoted in the text below are recorded here from this run.

# %% tags=["hide-input"]
for name, value in routing_facts(run).items():
    glue(name, value)
# the scorecard's numbers from this chapter (cpd_core.scorecard; read by the scorecard page)
from cpd_core.experiments.irreps_routing import routing_measurements
from cpd_core.scorecard import record

record("irreps_routing", routing_measurements(run), scale=scale)
glue("paper_mace", ", ".join(f"{t} {c} {v}" for (t, c), v in PAPER_MACE.items()))
glue("n_twin_seeds", len(twin_seeds))

# %% [markdown]
# ## What this shows
#
# All numbers on this page: {glue:text}`n_sets`, 5 shuffled folds, nested layer choice within each
# channel, 95 % bootstrap intervals over held-out molecules, from the run the front page names for this
# chapter (its scale, parameters and machine).
#
# - **Where routing appears.** Of {glue:text}`n_trained` trained equivariant models, the paper's pattern
#   (dipole better from an L ≥ 1 channel *and* gap better from L0, both paired intervals excluding zero)
#   holds for: {glue:text}`routing_trained`. The dipole alone is read better from an L ≥ 1 channel by:
#   {glue:text}`dipole_l1_trained`; the gap better from L0 by: {glue:text}`gap_l0_trained`. Among the
#   {glue:text}`n_twins` random-init twins (each drawn with {glue:text}`n_twin_seeds` seeds) the full
#   pattern holds for: {glue:text}`routing_twins`.
# - **The invariant matters.** With the mean of per-atom norms (`@atom-norm`) the pattern holds for:
#   {glue:text}`routing_atom_norm`; with the norm of the pooled vector (`@pooled-norm`), which keeps the
#   direction the atoms share and so the molecular dipole's: {glue:text}`routing_pooled_norm`.
# - **Training.** Over {glue:text}`n_pairs` trained-twin pairs, training moved the dipole towards an
#   L ≥ 1 channel (difference of differences above zero) in: {glue:text}`training_raises_dipole`.
# - **Tensor rank.** An L ≥ 1 channel that helps the dipole and none of the scalar targets
#   ({glue:text}`scalar_targets`) — routing that follows the target's tensor rank — is found in:
#   {glue:text}`vector_only`.
# - **Against the paper.** The paper's numbers are for MACE-MP-0/MACE-OFF ({glue:text}`paper_mace`);
#   those weights need a download, so the MACE here is the one trained on QM9 (a small CPU budget, see
#   the task-alignment chapter), with SevenNet-0 and SO3LR as stand-ins. The paper's ViSNet shows no
#   routing; compare the ViSNet rows above.
