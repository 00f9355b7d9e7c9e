"""CPD of a representation on QM9-like data: control targets, ridge variants, paired comparisons."""

import numpy as np
import pandas as pd
import pytest

from cpd_core import InputError, cpd
from cpd_core.composition import composition_matrix
from cpd_core.datasets import Dataset
from cpd_core.experiments.controls import MASS, MASS_PER_ATOM
from cpd_core.experiments.ani2x_aev import (CONTROL, DEFAULT_VARIANT, GCV_VARIANT, LOO_VARIANT, aev_chapter,
                                            aev_facts, molecular_mass, probe_comparisons, representation_cpd,
                                            representation_results, result_tables, ridge_variants,
                                            rule_comparisons, variant_comparisons, variant_name)
from cpd_core.plots import cpd_bars, fold_strip
from cpd_core.synthetic import planted


@pytest.fixture(scope="module")
def subset():
    """A QM9 data set built by hand from planted molecules; features H, target 'gap' = planted y."""
    d = planted(n=150, comp_share=0.3, geom_share=0.5, seed=0)
    ids = np.arange(1, 151)
    targets = pd.DataFrame({"gap": d.y, "dipole": np.random.default_rng(1).normal(size=150)},
                           index=pd.Index(ids, name="qm9_id"))
    positions = [np.zeros((len(z), 3)) for z in d.numbers]
    return Dataset("qm9", ids, d.numbers, positions, targets), d.H


@pytest.fixture(scope="module")
def results(subset):
    qm9, H = subset
    return representation_results(qm9, H, targets=["gap"], probes=("ridge", "gbt"), cv=3)


def test_molecular_mass_known_answer():
    mass = molecular_mass([np.array([6, 1, 1, 1, 1]), np.array([8, 1, 1])])
    np.testing.assert_allclose(mass, [16.043, 18.015], atol=2e-3)
    assert CONTROL == MASS


def test_control_targets_follow_the_real_ones(results):
    assert list(dict.fromkeys(t for t, _ in results)) == ["gap", MASS, MASS_PER_ATOM, "gap (shuffled)"]
    mass = results[(MASS, "ridge")]
    assert mass.r2_comp == pytest.approx(1.0, abs=1e-9)  # mass is exactly linear in counts
    assert abs(mass.r2_geom) < 0.05  # nothing of it is left beyond composition
    # mass/atom is not linear in counts, but linear in the element fractions these features hold
    per_atom = results[(MASS_PER_ATOM, "ridge")]
    assert per_atom.r2_comp < 0.9 and per_atom.r2_full > 0.99
    # a shuffled target: chance level, and the interval says so
    shuffled = results[("gap (shuffled)", "ridge")]
    assert shuffled.r2_geom < 0.05 and shuffled.ci["r2_geom"][0] < 0


def test_every_result_is_on_the_same_folds(results):
    first = next(iter(results.values()))
    for res in results.values():
        np.testing.assert_array_equal(res.fold_of, first.fold_of)


def test_result_tables_match_cpd_table_format(results):
    summary, folds = result_tables(results)
    assert list(summary.columns[:2]) == ["target", "probe"]
    assert {"r2_geom", "r2_geom_lo", "r2_geom_hi", "r2_comp_lo", "r2_full_hi"} <= set(summary.columns)
    for key, res in results.items():
        row = summary[(summary["target"] == key[0]) & (summary["probe"] == key[1])].iloc[0]
        assert (row["r2_geom_lo"], row["r2_geom_hi"]) == res.ci["r2_geom"]
    assert len(summary) == 4 * 2 and len(folds) == 4 * 2 * 3 * 3   # targets x probes (x folds x scores)
    assert list(folds.columns) == ["fold", "score", "r2", "target", "probe"]
    fig = cpd_bars(summary, folds)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 4 and len(visible[0].containers) == 2 * 3   # per target; bars + error bars per score


def test_representation_cpd_is_the_tables_of_the_results(subset, results):
    qm9, H = subset
    summary, folds = representation_cpd(qm9, H, targets=["gap"], probes=("ridge", "gbt"), cv=3)
    expected, expected_folds = result_tables(results)
    pd.testing.assert_frame_equal(summary, expected)
    pd.testing.assert_frame_equal(folds, expected_folds)


def test_probe_comparisons_are_paired(results):
    table = probe_comparisons(results)
    assert list(table["target"]) == ["gap", MASS, MASS_PER_ATOM, "gap (shuffled)"]
    assert set(table["a"]) == {"gbt"} and set(table["b"]) == {"ridge"}
    row = table.set_index("target").loc[MASS]
    assert row["diff"] == pytest.approx(results[(MASS, "gbt")].r2_geom - results[(MASS, "ridge")].r2_geom)
    assert row["diff_lo"] <= row["diff"] <= row["diff_hi"]
    assert table["verdict"].str.contains("gbt").all()


def test_without_control(subset):
    qm9, H = subset
    summary, _ = representation_cpd(qm9, H, targets=["gap", "dipole"], probes=("ridge",), control=False, cv=3)
    assert list(summary["target"]) == ["gap", "dipole"]


def test_targets_not_loaded_raise(subset):
    qm9, H = subset
    with pytest.raises(InputError, match=r"\['homo'\] were not loaded"):
        representation_cpd(qm9, H, targets=["gap", "homo"], probes=("ridge",), cv=3)
    with pytest.raises(InputError, match="unknown QM9 target"):
        representation_cpd(qm9, H, targets=["bandgap"], probes=("ridge",), cv=3)
    with pytest.raises(InputError, match="was not loaded"):
        ridge_variants(qm9, H, target="homo", cv=3)
    with pytest.raises(InputError, match="unknown ridge variants"):
        ridge_variants(qm9, H, target="gap", cv=3, variants=["clipped"])


def test_ridge_variants_run_the_closed_form(subset):
    qm9, H = subset
    variants = ridge_variants(qm9, H, target="gap", cv=3)
    assert len(variants) == 12 and list(variants)[0] == DEFAULT_VARIANT == "clipped · train folds · inner CV (default)"
    C, y = composition_matrix(qm9.numbers), qm9.targets["gap"].to_numpy()
    # the default variant is cpd's defaults, and those choose the penalty by inner folds
    pd.testing.assert_frame_equal(variants[DEFAULT_VARIANT].folds, cpd(H, C, y, cv=3).folds)
    pd.testing.assert_frame_equal(variants[DEFAULT_VARIANT].folds, cpd(H, C, y, cv=3, select="folds").folds)
    pd.testing.assert_frame_equal(variants[LOO_VARIANT].folds, cpd(H, C, y, cv=3, select="loo").folds)
    pd.testing.assert_frame_equal(variants[GCV_VARIANT].folds, cpd(H, C, y, cv=3, select="gcv").folds)
    pd.testing.assert_frame_equal(variants["plain · train folds · GCV"].folds,
                                  cpd(H, C, y, cv=3, clip=False, select="gcv").folds)
    pd.testing.assert_frame_equal(variants["plain · all rows · LOO"].folds,
                                  cpd(H, C, y, cv=3, clip=False, fit_projection="all", select="loo").folds)
    pd.testing.assert_frame_equal(variants["plain · all rows · inner CV"].folds,
                                  cpd(H, C, y, cv=3, clip=False, fit_projection="all").folds)
    assert variants["clipped · all rows · GCV"].fit_projection == "all"
    assert all(res.curve is not None for res in variants.values())   # closed form: validation curves kept
    # the projection choice does not touch the full-feature probe
    np.testing.assert_allclose(variants[DEFAULT_VARIANT].folds["r2_full"],
                               variants["clipped · all rows · inner CV"].folds["r2_full"])
    np.testing.assert_allclose(variants[GCV_VARIANT].folds["r2_full"],
                               variants["clipped · all rows · GCV"].folds["r2_full"])
    summary, folds = result_tables(variants, names=("variant",))
    assert list(summary["variant"]) == list(variants) and len(folds) == 12 * 3 * 3
    fig = fold_strip(folds, by="variant", summary=summary)
    assert len(fig.axes[0].containers) == 1
    table = variant_comparisons(variants)
    assert list(table["a"]) == list(variants)[1:] and set(table["b"]) == {DEFAULT_VARIANT}
    assert (table["diff_lo"] <= table["diff"]).all() and (table["diff"] <= table["diff_hi"]).all()
    # the rule alone: LOO and GCV against inner CV with the same scaler and projection, 8 pairs
    rules = rule_comparisons(variants)
    assert len(rules) == 8 and set(rules["rule"]) == {"LOO", "GCV"}
    row = rules[(rules["scaler"] == "plain") & (rules["projection"] == "all rows") & (rules["rule"] == "GCV")].iloc[0]
    assert row["b"] == variant_name("plain", "all rows") == "plain · all rows · inner CV"
    assert row["diff"] == pytest.approx(variants[row["a"]].r2_geom - variants[row["b"]].r2_geom)
    assert row["alpha_a"] == variants[row["a"]].folds["alpha_geom"].median()


def test_chapter_run_and_its_facts(subset):
    """aev_chapter computes every table of the page; aev_facts every number its prose quotes."""
    import re
    from pathlib import Path

    qm9, H = subset
    run = aev_chapter(qm9, H, targets=["gap", "dipole"], cv=3, probes=("ridge", "mlp", "gbt"))
    assert run.n == 150 and run.n_varying == H.shape[1]
    assert set(run.rules_full["target"]) == {"gap", "dipole"} and len(run.rules_full) == 4
    assert list(run.paper["probe"]) == ["ridge", "mlp"]
    facts = aev_facts(run)
    used = set(re.findall(r"\{glue:text\}`(\w+)`", (Path(__file__).parents[2] / "notebooks/ani2x_aev.py").read_text()))
    assert used and used <= set(facts), sorted(used - set(facts))
    ours = run.summary.set_index(["target", "probe"]).loc[("gap", "ridge")]
    assert facts["ridge_gap"] == f"{ours['r2_geom']:.3f} [{ours['r2_geom_lo']:.3f}, {ours['r2_geom_hi']:.3f}]"
    assert facts["n_mol"] == 150
    gcv = run.rules[(run.rules["rule"] == "GCV") & (run.rules["scaler"] == "clipped")
                    & (run.rules["projection"] == "train folds")].iloc[0]
    assert f"{abs(gcv['diff']):.3f}" in facts["gcv_vs_default_gap"]
    assert facts["loo_alpha"] == f"{run.variants[LOO_VARIANT].folds['alpha_geom'].median():.3g}"


def test_some_ridge_variants_and_a_score_to_compare(subset):
    qm9, H = subset
    names = [DEFAULT_VARIANT, GCV_VARIANT]
    variants = ridge_variants(qm9, H, target="dipole", cv=3, variants=names)
    assert list(variants) == names
    table = variant_comparisons(variants, score="r2_full")
    assert len(table) == 1 and table.loc[0, "score"] == "r2_full"
    assert table.loc[0, "diff"] == pytest.approx(variants[names[1]].r2_full - variants[names[0]].r2_full)
