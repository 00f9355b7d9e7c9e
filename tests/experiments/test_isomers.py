"""The isomer benchmark: pairwise accuracy with known answers, no molecule in both a fit and a scored pair."""

import numpy as np
import pandas as pd
import pytest

from cpd_core.decomposition import fold_labels
from cpd_core.errors import InputError
from cpd_core.experiments.isomers import (
    SHUFFLED,
    TARGET,
    IsomerRun,
    PairedAccuracy,
    accuracy_table,
    family_rows,
    formula,
    isomer_benchmark,
    isomer_contrasts,
    isomer_facts,
    isomer_measurements,
    isomer_models,
    isomer_plot,
    probe_isomers,
    shuffled_within,
    twin_of,
)

pytestmark = pytest.mark.usefixtures("tmp_cache")  # fixtures: tests/experiments/conftest.py


def _brute_force(y, pred, fold_of, group, weights=None):
    """Pairwise accuracy by looping over every pair of (weighted) molecules."""
    n = len(y)
    w = np.ones(n) if weights is None else weights
    num = den = 0.0
    for i in range(n):
        for j in range(n):
            if i == j or fold_of[i] != fold_of[j] or group[i] != group[j] or y[i] == y[j]:
                continue
            s = 0.5 if pred[i] == pred[j] else float((pred[i] > pred[j]) == (y[i] > y[j]))
            num += w[i] * w[j] * s
            den += w[i] * w[j]
    return num / den


def test_exact_order_scores_one_reversed_zero_constant_one_half():
    rng = np.random.default_rng(0)
    y = rng.normal(size=40)
    fold_of, group = np.arange(40) % 4, np.repeat(["A", "B"], 20)
    acc = PairedAccuracy(y, fold_of, group, n_boot=300)
    assert acc.accuracy(y) == 1.0 and acc.accuracy(2 * y + 7) == 1.0 and acc.accuracy(-y) == 0.0
    assert acc.interval(np.full(40, 3.0)) == (0.5, 0.5, 0.5)        # every pair a predicted tie: exactly chance
    # pairs only within one fold and family: an offset per (fold, family) cannot change any scored pair
    assert acc.accuracy(y + 100 * fold_of + 1000 * (group == "A")) == 1.0
    # 2 families x 4 folds, 5 molecules per cell, all gaps distinct: 8 * C(5, 2) pairs
    assert acc.n_pairs == 8 * 10 and acc.n_tied == 0


def test_equal_true_values_are_left_out_and_predicted_ties_count_one_half():
    y = np.array([1.0, 1.0, 2.0, 3.0])
    acc = PairedAccuracy(y, np.zeros(4, dtype=int), np.zeros(4), n_boot=50)
    assert acc.n_pairs == 5 and acc.n_tied == 1
    pred = np.array([0.0, 5.0, 1.0, 1.0])  # pairs: (0,2) right, (0,3) right, (1,2) wrong, (1,3) wrong, (2,3) tie
    assert acc.accuracy(pred) == pytest.approx(2.5 / 5)
    assert acc.accuracy(pred) == pytest.approx(_brute_force(y, pred, np.zeros(4), np.zeros(4)))


def test_accuracy_and_bootstrap_replicates_match_a_brute_force_count():
    rng = np.random.default_rng(1)
    y = np.round(rng.normal(size=30), 1)                            # some equal values
    pred = y + rng.normal(size=30)
    fold_of, group = fold_labels(30, 3, seed=0), rng.choice(["A", "B"], size=30)
    acc = PairedAccuracy(y, fold_of, group, n_boot=5, seed=3)
    assert acc.accuracy(pred) == pytest.approx(_brute_force(y, pred, fold_of, group))
    reps = acc.replicates(pred)
    for b in range(5):
        w = np.zeros(30)
        for idx, _, weights in acc._cells:
            w[idx] = weights[b]
            assert weights[b].sum() == len(idx)                    # each cell resampled to its own size
        assert reps[b] == pytest.approx(_brute_force(y, pred, fold_of, group, w))


def test_paired_comparison_and_interval_coverage():
    rng = np.random.default_rng(2)
    y = rng.normal(size=200)
    fold_of, group = fold_labels(200, 5, seed=0), np.zeros(200)
    acc = PairedAccuracy(y, fold_of, group, n_boot=400)
    good, poor = y + 0.2 * rng.normal(size=200), y + 2.0 * rng.normal(size=200)
    same = acc.compare(good, good)
    assert same.diff == 0 and same.lo == 0 and same.hi == 0 and not same.resolved
    c = acc.compare(good, poor)
    assert c.resolved and c.lo > 0 and c.diff == pytest.approx(acc.accuracy(good) - acc.accuracy(poor))
    value, lo, hi = acc.interval(poor)
    assert lo < value < hi and 0.5 < value < 0.9
    noise = acc.interval(rng.normal(size=200))                   # unrelated predictions: chance inside the interval
    assert noise[1] < 0.5 < noise[2]
    with pytest.raises(InputError, match="NaN"):
        acc.accuracy(np.full(200, np.nan))


def test_shuffled_within_keeps_each_family_values():
    y, g = np.arange(10.0), np.repeat(["a", "b"], 5)
    out = shuffled_within(y, g, seed=0)
    assert sorted(out[:5]) == list(y[:5]) and sorted(out[5:]) == list(y[5:]) and not np.array_equal(out, y)
    assert np.array_equal(out, shuffled_within(y, g, seed=0))


def _isomer_data(n=150, seed=0):
    """Two families; the gap is a function of a hidden geometric variable; composition is a constant per family."""
    rng = np.random.default_rng(seed)
    group = np.repeat(["C2H6O1", "C3H8O1"], n // 2)
    geom = rng.normal(size=n)
    y = 5 + 0.3 * (group == "C3H8O1") + geom                       # family means differ, the order is geometry
    counts = np.where(group[:, None] == "C2H6O1", [2.0, 6.0, 1.0], [3.0, 8.0, 1.0])
    C = np.column_stack([counts, np.ones(n)])
    return rng, group, geom, y, C


def test_a_representation_that_encodes_the_gap_orders_every_pair_and_composition_none():
    rng, group, geom, y, C = _isomer_data()
    blocks = {"exact": np.column_stack([geom, rng.normal(size=(len(y), 3))]), "noise": rng.normal(size=(len(y), 4)),
              "constant": np.ones((len(y), 2))}
    s, pred, scorer = probe_isomers(blocks, C, y, group, cv=5, n_boot=200)
    s = s.set_index(["features", "probe", "target"])
    assert s.loc[("residual", "ridge", TARGET), "block"] == "exact"   # chosen on inner folds
    assert s.loc[("residual", "ridge", TARGET), "accuracy"] > 0.97
    assert s.loc[("composition", "least squares", TARGET), "accuracy"] == 0.5     # computed, not assumed
    assert (s.loc[("composition", "least squares", TARGET), ["accuracy_lo", "accuracy_hi"]] == 0.5).all()
    control = s.loc[("residual", "ridge", SHUFFLED)]
    assert control["accuracy_lo"] < 0.5 < control["accuracy_hi"]
    only_constant, _, _ = probe_isomers({"constant": np.ones((len(y), 2))}, C, y, group, cv=5, n_boot=50)
    assert (only_constant["accuracy"] == 0.5).all()                # no feature varies: every pair a tie


def test_no_molecule_of_a_scored_pair_informs_the_probe_that_scores_it():
    rng, group, geom, y, C = _isomer_data(seed=3)
    blocks = {"a": np.column_stack([geom + 0.3 * rng.normal(size=len(y)), rng.normal(size=(len(y), 3))]),
              "b": rng.normal(size=(len(y), 5))}
    fold_of = fold_labels(len(y), 5, seed=0)
    _, before, _ = probe_isomers(blocks, C, y, group, cv=5, n_boot=20)
    changed = y.copy()
    changed[fold_of == 2] = rng.normal(size=(fold_of == 2).sum()) * 100   # scramble fold 2's gaps
    _, after, _ = probe_isomers(blocks, C, changed, group, cv=5, n_boot=20)
    key = ("residual", "ridge", TARGET)
    assert np.allclose(before[key][fold_of == 2], after[key][fold_of == 2])     # its predictions did not move
    assert not np.allclose(before[key][fold_of != 2], after[key][fold_of != 2])  # the others' did


def test_nonlinear_probes_are_scored_on_the_chosen_block():
    rng, group, geom, y, C = _isomer_data(n=100, seed=4)
    blocks = {"exact": np.column_stack([geom, rng.normal(size=(len(y), 2))])}
    s, pred, scorer = probe_isomers(blocks, C, y, group, probes=("ridge", "gbt"), cv=4, n_boot=50)
    gbt = s[(s["probe"] == "gbt")]
    assert len(gbt) == 1 and gbt["accuracy"].iloc[0] > 0.85 and ("residual", "gbt", TARGET) in pred
    with pytest.raises(InputError, match="unknown probe"):
        probe_isomers(blocks, C, y, group, probes=("ridge", "svm"))


def test_formula_and_model_sets():
    assert formula([6, 6, 1, 1, 1, 1, 1, 1, 8]) == "C2H6O1"
    assert twin_of("painn-qm9-gap", ["painn-qm9-gap", "painn-qm9-random"]) == "painn-qm9-random"
    assert twin_of("painn-qm9-random", ["painn-qm9-gap", "painn-qm9-random"]) is None
    book = isomer_models("book-isomers")
    assert "mace-qm9-gap" in book and all(twin_of(m, book) for m in book if not m.endswith("random"))
    assert set(book) <= set(isomer_models("all"))
    with pytest.raises(InputError, match="unknown model set"):
        isomer_models("everything")


def test_family_rows_are_held_out_family_members(qm9_loaded):
    from cpd_core.datasets.qm9 import load_qm9
    from cpd_core.training import probe_rows

    rows, table = family_rows(2, n=40, seed=0)
    assert table.index.tolist() == ["C7H10O2", "C7H11N1O1"] and len(rows) == 80
    assert table["n_qm9"].tolist() == [6094, 5858] and (table["n_test"] > 400).all() and np.isin(rows, probe_rows()).all()
    data = load_qm9(rows=rows, targets=["gap"])
    assert pd.Series([formula(z) for z in data.numbers]).value_counts().to_dict() == {"C7H10O2": 40, "C7H11N1O1": 40}
    again, _ = family_rows(2, n=40, seed=0)
    other, _ = family_rows(2, n=40, seed=1)
    assert np.array_equal(rows, again) and not np.array_equal(rows, other)
    with pytest.raises(InputError, match="not held out"):
        family_rows(1, split_rows=[0, 1, 2])  # rows of the training split


def test_a_run_on_qm9_gives_tables_facts_and_measurements(qm9_loaded):
    run = isomer_benchmark(["ani2x-aev"], families=2, n=30, cv=3, n_boot=100, device="cpu")
    assert isinstance(run, IsomerRun) and run.n == 60 and set(run.group) == {"C7H10O2", "C7H11N1O1"}
    s = run.summary
    comp = s[s["features"] == "composition"]
    assert (comp["accuracy"] == 0.5).all() and (comp["accuracy_hi"] == 0.5).all()
    assert set(run.by_family["family"]) == {"C7H10O2", "C7H11N1O1"} and len(run.families) == 2
    assert run.families["pairs scored"].sum() + run.families["pairs with equal gaps"].sum() > 0
    table = accuracy_table(run)
    assert list(table["model"]) == ["ani2x-aev"] and {"composition", "residual ridge", "shuffled gap"} <= set(table)
    contrasts = isomer_contrasts(run)                              # two families: residual vs raw is listed
    assert list(contrasts["comparison"]) == ["residual − raw features (ridge)"]
    facts = isomer_facts(run)
    assert facts["comp_min"] == "0.500" and facts["best_model"] == "ani2x-aev" and facts["n_families"] == 2
    assert facts["mace_accuracy"] == "not in this run" and facts["paper_accuracy"] == "0.946"
    ms = isomer_measurements(run)
    assert [m.claim for m in ms] == ["isomer_accuracy", "isomer_composition_chance"]
    assert not ms[0].comparable and ms[1].value == 0.5 and ms[0].lo <= ms[0].value <= ms[0].hi
    assert isomer_plot(run).axes[0].get_ylabel().startswith("pairwise accuracy")
