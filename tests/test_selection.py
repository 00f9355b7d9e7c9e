"""Nested block selection (cpd_core.best_block): known answers on noise and on one informative block."""

import numpy as np
import pytest

from cpd_core import InputError, best_block, compare, cpd


def _noise_blocks(n=300, n_blocks=12, d=15, seed=0):
    rng = np.random.default_rng(seed)
    C = np.column_stack([rng.integers(0, 5, size=(n, 2)), np.ones(n)])
    y = rng.normal(size=n)
    return {f"b{i}": rng.normal(size=(n, d)) for i in range(n_blocks)}, C, y, rng


def test_pure_noise_nested_is_near_zero_while_naive_max_is_biased_up():
    nested, naive = [], []
    for seed in range(6):
        blocks, C, y, _ = _noise_blocks(seed=seed)
        choice = best_block(blocks, C, y, cv=5, seed=seed)
        nested.append(choice.r2_geom)
        naive.append(choice.naive_r2_geom)
    assert -0.08 < np.mean(nested) < 0.01               # held-out R² of noise: slightly below 0
    assert np.mean(naive) > np.mean(nested) + 0.005      # the maximum of 12 noisy scores
    # not a theorem per seed (other blocks win other folds), but the rule: the naive maximum is higher
    assert sum(b > a for a, b in zip(nested, naive)) >= 5


def test_one_informative_block_among_many_is_found_on_every_fold():
    blocks, C, y, rng = _noise_blocks(seed=3)
    blocks["signal"] = np.column_stack([y + 0.8 * rng.normal(size=len(y)), rng.normal(size=(len(y), 4))])
    choice = best_block(blocks, C, y, cv=5, seed=0)
    assert (choice.choices["block"] == "signal").all()
    assert choice.block == "signal" and choice.counts["signal"] == 5
    solo = cpd(blocks["signal"], C, y, cv=5, seed=0)
    assert choice.r2_geom == pytest.approx(solo.r2_geom, abs=1e-10)   # same block on every fold
    assert choice.naive_block == "signal"


def test_nested_result_has_intervals_and_compares(data=None):
    blocks, C, y, rng = _noise_blocks(seed=4)
    blocks["signal"] = np.column_stack([y + rng.normal(size=len(y)), rng.normal(size=(len(y), 4))])
    choice = best_block(blocks, C, y, cv=5, seed=0)
    lo, hi = choice.result.ci["r2_geom"]
    assert lo < choice.r2_geom < hi
    other = cpd(blocks["b0"], C, y, cv=5, seed=0)
    assert compare(choice.result, other).resolved


def test_other_probes_on_the_chosen_blocks():
    blocks, C, y, rng = _noise_blocks(n=240, n_blocks=3, seed=5)
    blocks["signal"] = np.column_stack([np.tanh(y) + 0.1 * rng.normal(size=len(y)), rng.normal(size=(len(y), 3))])
    choice = best_block(blocks, C, y, cv=3, seed=0)
    gbt = choice.probe("gbt")
    assert gbt.probe == "gbt (nested block)" and gbt.r2_geom > 0.5
    assert np.array_equal(gbt.fold_of, choice.result.fold_of)


def test_bad_input():
    blocks, C, y, _ = _noise_blocks(n_blocks=2)
    with pytest.raises(InputError, match="empty"):
        best_block({}, C, y)
    with pytest.raises(InputError, match="closed-form ridge"):
        best_block(blocks, C, y, probe="mlp")
    with pytest.raises(InputError, match="same number of rows"):
        best_block({"a": np.zeros((10, 2))}, C, y)


def test_inner_score_refits_the_whole_probe_on_the_inner_folds():
    """A block's inner score on outer fold f is the mean, over the other folds g, of the held-out R²_geom
    of cpd's own probe fit on the remaining folds (projection, clipped scaler, penalty), not a shortcut."""
    from cpd_core.decomposition import fold_labels
    from cpd_core.ridge import RidgeFolds

    blocks, C, y, rng = _noise_blocks(n=200, n_blocks=3, d=6, seed=7)
    blocks["signal"] = np.column_stack([y + rng.normal(size=len(y)), rng.normal(size=(len(y), 3))])
    choice = best_block(blocks, C, y, cv=4, seed=1)
    fold_of = fold_labels(len(y), 4, seed=1)
    for f, row in choice.choices.iterrows():
        rf = RidgeFolds(blocks[row["block"]], C, y, fold_of)
        train = [g for g in range(4) if g != f]
        fits = [rf.fit([h for h in train if h != g], g) for g in train]
        assert row["inner_r2_geom"] == pytest.approx(np.mean([fit.r2[fit.chosen] for fit in fits]), rel=1e-10)
