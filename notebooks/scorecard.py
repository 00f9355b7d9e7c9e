# %% [markdown]
# # The reproduction scorecard
#
# Every number in the abstracts of both versions of the paper, beside what this book measured for it,
# with the verdict computed from the two (`cpd_core.scorecard.verdict`). The measurements are not
# typed here: each chapter records them when it runs (`cpd_core.scorecard.record`, a hidden output of
# its notebook), and this page reads them from the executed chapters: those of this build
# (`build/notebooks`), or, where the build holds no executed chapters (a `make test` on a fresh clone),
# the stored references that the tests re-execute (`tests/notebooks`).

# %% tags=["parameters", "hide-input"]
scale = "book"  # the chapters' scale; this page computes nothing itself
source = None  # folder of executed chapters; None: build/notebooks when it holds every chapter, else the stored references

# %% tags=["hide-input"]
from cpd_core.report import glue, table
from cpd_core.scorecard import (
    VERDICTS,
    collect,
    display_table,
    scorecard,
    scorecard_plot,
    source_folder,
    verdict_counts,
)

folder = source_folder(source)
found = collect(folder)
card = scorecard(found)
print("chapters read: " + ", ".join(f"{c} ({s or 'scale not recorded'})" for c, (s, ms) in sorted(found.items()) if ms))

# %% [markdown]
# ## Verdicts
#
# *Reproduced*: the paper's number lies inside our 95 % interval (a range: ours overlaps the paper's;
# an absence: our interval includes zero). *In direction only*: our interval excludes the paper's number
# but lies on the same side of zero (of 1/2 for an accuracy). *Not reproduced*: neither. *Not comparable*:
# what we measured is not the paper's quantity (a stand-in model, a network trained here for a claim about
# a published one), or nothing could be measured here; the reason is given, and the direction of our
# number is shown beside it all the same.

# %%
table(display_table(card), intervals=False)

# %% [markdown]
# ## At a glance
#
# Our value with its 95 % interval (colour: the verdict) and the paper's number (black diamond) or range
# (black bar), for every claim measured here. Values below −1 are drawn at −1.

# %% tags=["hide-input"]
fig = scorecard_plot(card)
glue("summary_figure", fig)

# %% [markdown]
# The counts quoted below are recorded here from the table above.

# %% tags=["hide-input"]
counts = verdict_counts(card)
glue("n_claims", int(card["claim"].nunique()))
for v, k in counts.items():
    glue(v.replace(" ", "_"), k)

# %% [markdown]
# ## What this shows
#
# Of the paper's {glue:text}`n_claims` abstract claims, counted once each by their best measurement:
# {glue:text}`reproduced` reproduced, {glue:text}`reproduced_in_direction_only` reproduced in direction
# only, {glue:text}`not_reproduced` not reproduced and {glue:text}`not_comparable` not comparable here. A
# verdict is only as good as the scale behind it: the column *scale* says at which scale each chapter ran
# (the front page names the build or edition), and *n* how many molecules each number rests on. Claims
# about MACE are answered by stand-ins where the paper's weights need a download; their rows say so and
# count as *not comparable* whatever their direction.
