"""Intervals on CPD scores (bootstrap of out-of-fold predictions) and paired comparisons."""

import numpy as np
import pytest

from cpd_core import InputError, compare, cpd
from cpd_core.intervals import bootstrap_r2, percentile_interval
from cpd_core.synthetic import planted


@pytest.fixture(scope="module")
def data():
    return planted(n=800, comp_share=0.3, geom_share=0.4, n_features=16, seed=0)


def test_every_score_has_an_interval_around_it(data):
    res = cpd(data.H, data.C, data.y, cv=5, seed=0)
    for key in ("r2_full", "r2_comp", "r2_geom"):
        lo, hi = res.ci[key]
        assert lo < getattr(res, key) < hi
        assert 0.01 < hi - lo < 0.3
    summary = res.summary()
    assert summary["r2_geom_lo"] == res.ci["r2_geom"][0] and summary["r2_geom_hi"] == res.ci["r2_geom"][1]


def test_interval_is_seeded_and_shrinks_with_n():
    small = planted(n=400, comp_share=0.3, geom_share=0.4, n_features=16, seed=1)
    large = planted(n=3200, comp_share=0.3, geom_share=0.4, n_features=16, seed=1)
    a, b = cpd(small.H, small.C, small.y), cpd(small.H, small.C, small.y)
    assert a.ci == b.ci
    width = lambda r: np.subtract(*r.ci["r2_geom"][::-1])
    assert width(cpd(large.H, large.C, large.y)) < 0.6 * width(a)     # ~ 1/sqrt(8) in theory


def test_bootstrap_of_perfect_predictions_is_one():
    y = np.random.default_rng(0).normal(size=100)
    reps = bootstrap_r2(y, np.arange(100) % 4, [y], n_boot=50)
    np.testing.assert_allclose(reps, 1.0)


def test_percentile_interval_known_answer():
    assert percentile_interval(np.arange(1001.0), 0.95) == pytest.approx((25.0, 975.0))


def test_nonlinear_probes_get_intervals_too(data):
    res = cpd(data.H, data.C, data.y, probe="gbt", cv=3)
    lo, hi = res.ci["r2_geom"]
    assert lo < res.r2_geom < hi


def test_coverage_of_the_planted_r2_geom_is_measured():
    """Coverage of the planted R²_geom by the 95 % interval, n = 1000, 100 seeds.

    Measured at this commit: 0.88 at n = 2000 and 0.80 at n = 500 (200 seeds, d = 41, ridge,
    5 folds). The interval resamples held-out molecules for the probes as fitted; it leaves out
    the variance of refitting and the downward bias of a probe fit on finitely many molecules,
    so it under-covers at small n. The Method chapter states this. The test pins the rate between
    0.75 and 0.99 so a broken interval (too narrow, or not centred) fails.
    """
    hits = []
    for seed in range(100):
        d = planted(n=1000, comp_share=0.3, geom_share=0.4, n_features=8, seed=seed)
        res = cpd(d.H, d.C, d.y, cv=5, seed=seed, n_boot=300)
        lo, hi = res.ci["r2_geom"]
        hits.append(lo <= d.r2_geom_true <= hi)
    assert 0.75 <= np.mean(hits) <= 0.99


def test_compare_is_paired_and_resolves_a_real_difference(data):
    full = cpd(data.H, data.C, data.y, cv=5, seed=0)
    fewer = cpd(data.H[:, :30], data.C, data.y, cv=5, seed=0)        # geometry-free columns only
    c = compare(full, fewer)
    assert c.diff == pytest.approx(full.r2_geom - fewer.r2_geom)
    assert c.resolved and c.lo > 0
    assert "not resolved" not in c.verdict("all", "first 30")


def test_compare_of_a_result_with_itself_is_exactly_zero(data):
    res = cpd(data.H, data.C, data.y, cv=5, seed=0)
    c = compare(res, res)
    assert (c.diff, c.lo, c.hi) == (0.0, 0.0, 0.0) and not c.resolved


def test_paired_interval_is_narrower_than_unpaired(data):
    """Two feature sets sharing most columns: the paired interval beats the sum of the two widths."""
    a = cpd(data.H, data.C, data.y, cv=5, seed=0)
    b = cpd(data.H[:, :-2], data.C, data.y, cv=5, seed=0)
    c = compare(a, b)
    wa, wb = (np.subtract(*r.ci["r2_geom"][::-1]) for r in (a, b))
    assert c.hi - c.lo < 0.5 * (wa + wb)


def test_compare_refuses_different_molecules_or_folds(data):
    a = cpd(data.H, data.C, data.y, cv=5, seed=0)
    with pytest.raises(InputError, match="folds"):
        compare(a, cpd(data.H, data.C, data.y, cv=5, seed=1))
    with pytest.raises(InputError, match="same molecules"):
        compare(a, cpd(data.H, data.C, data.y[::-1].copy(), cv=5, seed=0))
    with pytest.raises(InputError, match="score"):
        compare(a, a, score="r2")
