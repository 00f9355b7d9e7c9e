"""Planted synthetic data: the known answers CPD is checked against."""

import numpy as np
import pytest

from cpd_core import composition, composition_rank
from cpd_core.synthetic import ELEMENTS, PlantedData, planted


@pytest.mark.parametrize("comp_share, geom_share", [(0.6, 0.5), (1.0, 0.1), (-0.1, 0.5), (0.5, -0.1)])
def test_rejects_invalid_shares(comp_share, geom_share):
    with pytest.raises(ValueError, match="shares"):
        planted(n=50, comp_share=comp_share, geom_share=geom_share)


def test_shares_summing_to_one_are_allowed():
    d = planted(n=100, comp_share=0.3, geom_share=0.7)
    assert d.r2_comp_true + d.r2_geom_true == pytest.approx(1.0, abs=1e-12)  # no noise left


@pytest.mark.parametrize("comp_share, geom_share", [(0.3, 0.5), (0.4, 0.4), (0.1, 0.0), (0.0, 0.6)])
def test_true_shares_close_to_requested(comp_share, geom_share):
    d = planted(n=3000, comp_share=comp_share, geom_share=geom_share, seed=3)
    assert d.r2_geom_true == pytest.approx(geom_share, abs=0.03)
    assert d.r2_comp_true == pytest.approx(comp_share, abs=0.03)


def test_true_shares_are_sample_variance_ratios():
    # comp_share + geom_share = 1 and no noise: y = a z_c + b z_g with z_c ⟂ z_g on the sample,
    # so the two sample shares add up to exactly one and match the requested values exactly.
    d = planted(n=500, comp_share=0.25, geom_share=0.75, seed=1)
    assert d.r2_comp_true == pytest.approx(0.25, abs=1e-10)
    assert d.r2_geom_true == pytest.approx(0.75, abs=1e-10)


def test_geometric_latent_is_orthogonal_to_C():
    # geom_share = 1, no noise: y *is* the first geometric latent z_g.
    d = planted(n=400, comp_share=0.0, geom_share=1.0, seed=0)
    assert np.abs(d.C.T @ d.y).max() < 1e-10 * np.abs(d.C).sum(axis=0).max() * np.abs(d.y).max()
    assert d.y.std() == pytest.approx(1.0, abs=1e-12)  # standardised
    assert d.r2_geom_true == pytest.approx(1.0) and d.r2_comp_true == 0.0


def test_compositional_part_is_linear_in_C():
    d = planted(n=400, comp_share=1.0, geom_share=0.0, seed=0)
    coef = np.linalg.lstsq(d.C, d.y, rcond=None)[0]
    np.testing.assert_allclose(d.C @ coef, d.y, atol=1e-10)
    assert d.r2_comp_true == pytest.approx(1.0) and d.r2_geom_true == 0.0


def test_shapes_and_composition_are_consistent():
    d = planted(n=200, n_features=16, n_geometric=3, seed=4)
    assert isinstance(d, PlantedData)
    assert d.H.shape == (200, 5 + 20 + 16)  # fractions, tanh(N/s) for 4 scales, mixed
    assert d.C.shape == (200, 6) and d.y.shape == (200,)
    assert len(d.numbers) == 200
    comp = composition(d.numbers, elements=ELEMENTS)
    np.testing.assert_array_equal(comp.matrix, d.C)
    assert comp.columns == ("H", "C", "N", "O", "F", "1")
    # the first block of H holds the element fractions
    fractions = d.C[:, :5] / d.C[:, :5].sum(axis=1, keepdims=True)
    np.testing.assert_allclose(d.H[:, :5], fractions, atol=1e-15)
    # molecules are QM9-like: at least one heavy atom, at most 9
    heavy = d.C[:, 1:5].sum(axis=1)
    assert heavy.min() >= 1 and heavy.max() <= 9


def test_same_seed_same_data_different_seed_different_data():
    a, b, c = planted(n=100, seed=5), planted(n=100, seed=5), planted(n=100, seed=6)
    np.testing.assert_array_equal(a.H, b.H)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.y, c.y)


def test_heavy_atom_count_varies_and_counts_are_not_collinear_with_intercept():
    d = planted(n=500, seed=0)
    heavy = d.C[:, 1:5].sum(axis=1)
    assert len(np.unique(heavy)) > 3  # the code draws a heavy-atom count in 1..9 per molecule
    assert composition_rank(d.C) == 6
