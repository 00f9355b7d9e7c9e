# %% tags=["parameters"]
n_molecules = 2000
seed = 0
device = "auto"
targets = ["gap", "dipole"]

# %% [markdown]
# # ANI-2x's AEV on QM9
#
# CPD of ANI-2x's handcrafted atomic environment vector (1,008 radial and angular terms per
# atom, mean-pooled per molecule) on a seeded QM9 subset of `n_molecules` molecules. Set
# `n_molecules = None` for all 130,831. Every score comes with its 95 % interval (a bootstrap over
# held-out molecules, see the Method chapter), and every claim that one score exceeds another
# rests on the paired interval of their difference. The book's default run is n = 2,000
# molecules, 5 shuffled folds, on a 2-core CPU.

# %%
import pandas as pd

from cpd_core import Comparison
from cpd_core.experiments.controls import MASS, MASS_PER_ATOM, SHUFFLED
from cpd_core.experiments.representation import (DEFAULT_VARIANT, probe_comparisons, qm9_features,
                                                  representation_results, result_tables, ridge_variants,
                                                  variant_comparisons)
from cpd_core.models import ANI2xAEV
from cpd_core.paper import paper_value
from cpd_core.plots import cpd_bars, fold_strip
from cpd_core.report import format_interval, glue, sign_word, with_intervals

pd.set_option("display.precision", 3)
pd.set_option("display.max_colwidth", 120)

# %% [markdown]
# Load the molecules and extract their pooled AEVs (cached on disk after the first run).

# %%
qm9, features = qm9_features(ANI2xAEV(), n=n_molecules, seed=seed, device=device)
H = features["aev"]
n_varying = int((H.std(axis=0) > 0).sum())
print(f"{len(qm9)} molecules, {H.shape[1]} AEV features, {n_varying} not constant")

# %% [markdown]
# ## R²_comp and R²_geom per probe
#
# HOMO-LUMO gap (eV) and dipole moment (D), then three controls on the same molecules and folds
# (`cpd_core.experiments.controls`): molecular mass, exactly linear in the element counts (true
# linear R²_geom = 0); mass per atom, nonlinear in the counts but linear in the element fractions
# that mean pooling creates (whatever a probe reads of it from the residual is composition, not
# geometry); and the gap shuffled over molecules (what chance gives at this n and width).

# %%
results = representation_results(qm9, H, targets=targets, seed=seed)
summary, folds = result_tables(results)
with_intervals(summary[["target", "probe", "r2_comp", "r2_comp_lo", "r2_comp_hi", "r2_full", "r2_full_lo",
                        "r2_full_hi", "r2_geom", "r2_geom_lo", "r2_geom_hi", "r2_geom_std", "r2_geom_worst_fold"]])

# %% [markdown]
# Bars are the scores (means over the 5 folds), error bars their 95 % intervals, dots single folds.

# %%
cpd_bars(summary, folds, title=f"ANI-2x AEV (mean-pooled), QM9, n = {len(qm9)}")

# %% [markdown]
# ## Which probe reads more beyond composition
#
# Paired differences of R²_geom, each probe minus ridge, on the same molecules and folds
# (`cpd_core.compare`): a difference counts only where its 95 % interval excludes zero.

# %%
probes_vs_ridge = probe_comparisons(results)
with_intervals(probes_vs_ridge[["target", "a", "b", "value_a", "value_b", "diff", "diff_lo", "diff_hi",
                                "resolved"]])

# %% [markdown]
# ## What moves the ridge number
#
# The paper reports a negative ridge R²_geom for ANI-2x on the gap. Ridge CPD of the gap under the
# three choices that move it, on the same folds: how features are standardised (clipped or plain
# z-scoring), whether the composition projection is fit on the training folds or on all rows, and
# how the penalty is chosen inside each training fold (GCV, the default, or exact leave-one-out,
# scikit-learn `RidgeCV`'s rule). Per-fold R²_geom:

# %%
variants = ridge_variants(qm9, H, target="gap", seed=seed)
variant_summary, variant_folds = result_tables(variants, names=("variant",))
variant_folds[variant_folds["score"] == "r2_geom"].pivot(index="variant", columns="fold", values="r2").loc[
    list(variants)]

# %% [markdown]
# The same per-fold values on a symmetric-log axis; the red mark is each variant's score with its
# 95 % interval.

# %%
fold_strip(variant_folds, by="variant", summary=variant_summary)

# %% [markdown]
# Scores of each variant with their intervals, the worst fold, and the median penalty chosen for
# the residual probe:

# %%
with_intervals(variant_summary[["variant", "r2_full", "r2_full_lo", "r2_full_hi", "r2_geom", "r2_geom_lo",
                                "r2_geom_hi", "r2_geom_worst_fold", "alpha_geom_median"]])

# %% [markdown]
# Paired differences of R²_geom: every variant minus the default, then the all-rows projection
# minus the train-fold projection with the penalty chosen by leave-one-out.

# %%
loo_train = "clipped · train folds · LOO"
variant_diffs = pd.concat([
    variant_comparisons(variants),
    variant_comparisons({k: variants[k] for k in (loo_train, "clipped · all rows · LOO")}, baseline=loo_train),
], ignore_index=True)
with_intervals(variant_diffs[["a", "b", "value_a", "value_b", "diff", "diff_lo", "diff_hi", "resolved"]])

# %% [markdown]
# The penalty rule also moves the raw-feature probe. R²_full of ridge on each target with the
# penalty chosen by GCV and by leave-one-out, and the paired difference LOO − GCV:

# %%
rule_full = pd.concat([
    variant_comparisons(ridge_variants(qm9, H, target=t, seed=seed, variants=[DEFAULT_VARIANT, loo_train]),
                        score="r2_full").assign(target=t)
    for t in targets
], ignore_index=True)
with_intervals(rule_full[["target", "a", "b", "value_a", "value_b", "diff", "diff_lo", "diff_hi", "resolved"]])

# %% [markdown]
# ## Our numbers next to the paper's

# %%
ours = summary.set_index(["target", "probe"])
paper_table = pd.DataFrame([
    {"target": "gap", "probe": probe, "paper R²_geom": paper_value("r2_geom", "ANI-2x", "gap", probe),
     "ours R²_geom": ours.loc[("gap", probe), "r2_geom"], "ours_lo": ours.loc[("gap", probe), "r2_geom_lo"],
     "ours_hi": ours.loc[("gap", probe), "r2_geom_hi"],
     "ours worst fold": ours.loc[("gap", probe), "r2_geom_worst_fold"]}
    for probe in ("ridge", "mlp")
])
paper_table["paper inside our interval"] = paper_table["paper R²_geom"].between(paper_table["ours_lo"],
                                                                                paper_table["ours_hi"])
with_intervals(paper_table.rename(columns={"ours_lo": "ours R²_geom_lo", "ours_hi": "ours R²_geom_hi"}))

# %% [markdown]
# The values quoted in the text below are recorded here from this run.

# %%
def score(target, probe, key="r2_geom"):
    row = ours.loc[(target, probe)]
    return format_interval(row[key], row[f"{key}_lo"], row[f"{key}_hi"])


def diff(table, **where):
    row = table.loc[(table[list(where)] == pd.Series(where)).all(axis=1)].iloc[0]
    return format_interval(row["diff"], row["diff_lo"], row["diff_hi"])


def verdict(table, name_a, name_b, **where):
    row = table.loc[(table[list(where)] == pd.Series(where)).all(axis=1)].iloc[0]
    return Comparison(row["score"], row["value_a"], row["value_b"], row["diff"], row["diff_lo"], row["diff_hi"],
                      0.95, row["n"]).verdict(name_a, name_b)


vs = variant_summary.set_index("variant")
plain = vs.loc["plain · train folds · GCV"]
shuffled = SHUFFLED.format(targets[0])
for name, value in {
    "n_mol": len(qm9),
    "n_varying": n_varying,
    "ridge_gap": score("gap", "ridge"),
    "ridge_gap_sign": sign_word(ours.loc[("gap", "ridge"), "r2_geom"]),
    "ridge_gap_loo": format_interval(*(vs.loc[loo_train, k] for k in ("r2_geom", "r2_geom_lo", "r2_geom_hi"))),
    "loo_minus_gcv": diff(variant_diffs, a=loo_train, b=DEFAULT_VARIANT),
    "loo_alpha": f"{vs.loc[loo_train, 'alpha_geom_median']:.3g}",
    "gcv_alpha": f"{vs.loc[DEFAULT_VARIANT, 'alpha_geom_median']:.3g}",
    "mlp_gap": score("gap", "mlp"),
    "mlp_gap_std": f"{ours.loc[('gap', 'mlp'), 'r2_geom_std']:.3f}",
    "mlp_vs_ridge_gap": verdict(probes_vs_ridge, "MLP", "ridge", target="gap", a="mlp"),
    "gbt_gap": score("gap", "gbt"),
    "gbt_vs_ridge_gap": verdict(probes_vs_ridge, "GBT", "ridge", target="gap", a="gbt"),
    "ridge_dipole": score("dipole", "ridge"),
    "ridge_dipole_full": score("dipole", "ridge", "r2_full"),
    "mlp_vs_ridge_dipole": verdict(probes_vs_ridge, "MLP", "ridge", target="dipole", a="mlp"),
    "loo_minus_gcv_full_dipole": diff(rule_full, target="dipole"),
    "loo_minus_gcv_full_gap": diff(rule_full, target="gap"),
    "plain_geom": format_interval(plain["r2_geom"], plain["r2_geom_lo"], plain["r2_geom_hi"]),
    "plain_worst": f"{plain['r2_geom_worst_fold']:.3g}",
    "plain_full": format_interval(plain["r2_full"], plain["r2_full_lo"], plain["r2_full_hi"]),
    "plain_loo_geom": f"{vs.loc['plain · train folds · LOO', 'r2_geom']:.3g}",
    "allrows_gcv": f"{vs.loc['clipped · all rows · GCV', 'r2_geom']:.3g}",
    "allrows_gcv_alpha": f"{vs.loc['clipped · all rows · GCV', 'alpha_geom_median']:.2g}",
    "allrows_loo": format_interval(*(vs.loc["clipped · all rows · LOO", k] for k in ("r2_geom", "r2_geom_lo", "r2_geom_hi"))),
    "allrows_minus_train_loo": diff(variant_diffs, a="clipped · all rows · LOO", b=loo_train),
    "mass_ridge": score(MASS, "ridge"),
    "mass_mlp": score(MASS, "mlp"),
    "mass_gbt": score(MASS, "gbt"),
    "per_atom_comp": score(MASS_PER_ATOM, "ridge", "r2_comp"),
    "per_atom_ridge": score(MASS_PER_ATOM, "ridge"),
    "per_atom_mlp": score(MASS_PER_ATOM, "mlp"),
    "per_atom_gbt": score(MASS_PER_ATOM, "gbt"),
    "shuffled_ridge": score(shuffled, "ridge"),
    "shuffled_mlp": score(shuffled, "mlp"),
    "shuffled_gbt": score(shuffled, "gbt"),
}.items():
    glue(name, value)

# %% [markdown]
# ## What this shows, and where it differs from the paper
#
# All numbers: {glue:text}`n_mol` QM9 molecules ({glue:text}`n_varying` AEV columns not constant),
# 5 shuffled folds, a 2-core CPU; 95 % intervals in brackets.
#
# - **Ridge.** The ridge R²_geom of the AEV for the gap is {glue:text}`ridge_gap`
#   ({glue:text}`ridge_gap_sign`), where the paper reports −0.792 for ANI-2x, far outside our
#   interval. This book chooses the ridge penalty by generalised cross-validation (GCV) since the
#   probe became closed form; with exact leave-one-out, the rule of scikit-learn's `RidgeCV` that
#   earlier versions of this page used, the same folds give {glue:text}`ridge_gap_loo`. The paired
#   difference, LOO − GCV, is {glue:text}`loo_minus_gcv`: GCV's lighter penalty (median
#   α = {glue:text}`gcv_alpha` against {glue:text}`loo_alpha`) reads more of the gap from the
#   residual, so the penalty rule alone moves this number by about as much as its interval is wide.
# - **What makes a ridge R²_geom large and negative.** Plain z-scoring instead of the clipped
#   standardiser gives {glue:text}`plain_geom` on the same features and folds, because one fold
#   collapses (worst: {glue:text}`plain_worst`; {glue:text}`plain_loo_geom` with LOO), and the
#   raw-feature probe collapses too (R²_full {glue:text}`plain_full`). Columns that are non-zero for
#   a few molecules only (terms of elements rare in QM9) are scaled by a tiny standard deviation
#   and explode on the held-out molecules that have them. A second mechanism is new with the
#   closed form: with the projection fit on all rows, GCV picks a penalty near zero (median
#   α = {glue:text}`allrows_gcv_alpha`) and R²_geom falls to {glue:text}`allrows_gcv`. The likely
#   reason is a known weakness of GCV: it replaces each molecule's leverage by the average, which
#   misleads it when a few training molecules are almost alone along their feature directions
#   (rare-element terms); leave-one-out uses each molecule's own leverage. With LOO the all-rows
#   projection gives {glue:text}`allrows_loo`, a difference from the
#   train-fold projection of {glue:text}`allrows_minus_train_loo` (all rows − train folds). A large
#   negative mean R²_geom can therefore come from the standardiser or from the penalty rule, not
#   from the representation; the paper states neither, so this is a plausible reading of its
#   number, not a proof.
# - **The penalty rule and the raw features.** GCV also under-penalises the ridge probe on the raw
#   AEV. On the dipole its R²_full is {glue:text}`ridge_dipole_full`, although the raw features hold
#   everything the residual holds and the residual alone gives R²_geom {glue:text}`ridge_dipole`.
#   The paired difference LOO − GCV of R²_full is {glue:text}`loo_minus_gcv_full_dipole` on the
#   dipole and {glue:text}`loo_minus_gcv_full_gap` on the gap. R²_full of ridge on these features
#   should be read with that in mind.
# - **MLP.** The MLP reads {glue:text}`mlp_gap` of the gap from the residual (paper: +0.784), with a
#   fold-to-fold standard deviation of {glue:text}`mlp_gap_std`. Against ridge on the same molecules
#   and folds: {glue:text}`mlp_vs_ridge_gap`. On the dipole: {glue:text}`mlp_vs_ridge_dipole`.
# - **GBT.** Trees reach {glue:text}`gbt_gap` on the gap; {glue:text}`gbt_vs_ridge_gap`. The
#   controls show how much of such a score can be composition.
# - **Controls.** Molecular mass is exactly linear in composition: its ridge R²_geom is
#   {glue:text}`mass_ridge`, zero to within a few hundredths as it must be, while GBT scores
#   {glue:text}`mass_gbt` (MLP: {glue:text}`mass_mlp`) on the same residual. Mass per atom is mostly linear in the counts on
#   QM9 (R²_comp {glue:text}`per_atom_comp`); ridge reads {glue:text}`per_atom_ridge` of it from the
#   residual, the MLP {glue:text}`per_atom_mlp` and GBT {glue:text}`per_atom_gbt`. That is the
#   paper's tree-probe inflation (0.68–0.95 in the paper) on real descriptors: tree and MLP scores
#   on residuals include composition read back through nonlinear remnants. The shuffled gap sets
#   chance: ridge {glue:text}`shuffled_ridge`, MLP {glue:text}`shuffled_mlp`, GBT
#   {glue:text}`shuffled_gbt`. A nonlinear probe's R²_geom therefore mixes geometry with composition
#   read back, and its chance level lies below zero; ridge stays within a few hundredths of zero on
#   all three controls.
