"""Exact removal of span(C): orthogonality, rank deficiency, train/test projection, errors."""

import numpy as np
import pytest

from cpd_core import CompositionProjector, InputError, composition_matrix, composition_rank, project_out
from cpd_core.projection import INSIDE_RTOL


def _counts_C(rng, n=200, k=4):
    counts = rng.integers(0, 8, size=(n, k)).astype(float)
    return np.hstack([counts, np.ones((n, 1))])


def _fractions_C(rng, n=200, k=4):
    counts = rng.integers(1, 8, size=(n, k)).astype(float)
    return np.hstack([counts / counts.sum(axis=1, keepdims=True), np.ones((n, 1))])


def _ill_conditioned_C(rng, n=200):
    """Columns on wildly different scales plus one nearly collinear with the intercept."""
    counts = rng.integers(0, 8, size=(n, 3)).astype(float) * np.array([1.0, 1e4, 1e-4])
    near_intercept = 1.0 + 1e-7 * rng.normal(size=(n, 1))
    return np.hstack([counts, near_intercept, np.ones((n, 1))])


def _features(rng, C, d=7):
    # Strongly compositional features plus a little of everything else.
    return C @ rng.normal(size=(C.shape[1], d)) * 10 + rng.normal(size=(C.shape[0], d))


def _ols_residual(C_fit, H_fit, C_apply, H_apply):
    B = np.linalg.lstsq(C_fit, H_fit, rcond=None)[0]
    return H_apply - C_apply @ B


@pytest.mark.parametrize("make_C", [_counts_C, _fractions_C, _ill_conditioned_C],
                         ids=["random-counts", "fractions+intercept", "ill-conditioned"])
def test_residual_is_orthogonal_to_C(make_C):
    rng = np.random.default_rng(1)
    C = make_C(rng)
    H = _features(rng, C)
    H_res = project_out(H, C)
    assert np.abs(C.T @ H_res).max() <= 1e-8 * np.abs(C.T @ H).max()
    # the removed part is non-trivial: the features were mostly compositional
    assert np.linalg.norm(H_res) < 0.5 * np.linalg.norm(H)


def test_random_gaussian_C():
    rng = np.random.default_rng(2)
    C = rng.normal(size=(100, 10))
    H = rng.normal(size=(100, 20))
    H_res, rank = project_out(H, C, return_rank=True)
    assert rank == 10
    assert np.abs(C.T @ H_res).max() <= 1e-8 * np.abs(C.T @ H).max()
    np.testing.assert_allclose(H_res, _ols_residual(C, H, C, H), rtol=0, atol=1e-10)


def test_ill_conditioned_C_is_full_rank_at_default_tolerance():
    assert composition_rank(_ill_conditioned_C(np.random.default_rng(3))) == 5


def test_rtol_decides_whether_a_nearly_collinear_column_counts():
    rng = np.random.default_rng(3)
    C = _counts_C(rng, k=3)
    C = np.hstack([C, 1.0 + 1e-7 * rng.normal(size=(len(C), 1))])  # intercept, perturbed
    assert composition_rank(C) == 5
    assert composition_rank(C, rtol=1e-4) == 4
    H = _features(rng, C)
    assert project_out(H, C, return_rank=True, rtol=1e-4)[1] == 4
    assert CompositionProjector(rtol=1e-4).fit(C, H).rank_ == 4


def test_residual_equals_least_squares_residual():
    rng = np.random.default_rng(4)
    C = _counts_C(rng)
    H = _features(rng, C)
    np.testing.assert_allclose(project_out(H, C), _ols_residual(C, H, C, H), rtol=0,
                               atol=1e-10 * np.abs(H).max())


def test_fractions_plus_intercept_rank_is_reported():
    rng = np.random.default_rng(5)
    C = _fractions_C(rng, k=4)  # 4 fractions summing to the intercept: rank 4 of 5 columns
    H = _features(rng, C)
    H_res, rank = project_out(H, C, return_rank=True)
    assert rank == 4
    assert composition_rank(C) == 4
    assert CompositionProjector().fit(C, H).rank_ == 4
    assert np.abs(C.T @ H_res).max() <= 1e-8 * np.abs(C.T @ H).max()
    np.testing.assert_allclose(H_res, _ols_residual(C, H, C, H), rtol=0, atol=1e-9 * np.abs(H).max())


def test_element_at_constant_count_is_collinear_with_intercept():
    # Every molecule has exactly two O atoms: the O column is 2 x the intercept column.
    rng = np.random.default_rng(6)
    structures = [[8, 8] + [6] * int(c) + [1] * int(h)
                  for c, h in zip(rng.integers(1, 6, 80), rng.integers(0, 10, 80))]
    C = composition_matrix(structures)
    assert C.shape[1] == 4  # H C O 1
    assert composition_rank(C) == 3
    H = _features(rng, C)
    H_res, rank = project_out(H, C, return_rank=True)
    assert rank == 3
    assert np.abs(C.T @ H_res).max() <= 1e-8 * np.abs(C.T @ H).max()
    np.testing.assert_allclose(H_res, _ols_residual(C, H, C, H), rtol=0, atol=1e-9 * np.abs(H).max())


def test_duplicate_and_zero_columns():
    rng = np.random.default_rng(7)
    C = _counts_C(rng, k=3)
    C = np.hstack([C, C[:, :1], np.zeros((len(C), 1))])
    assert composition_rank(C) == 4
    H = _features(rng, C)
    assert np.abs(C.T @ project_out(H, C)).max() <= 1e-8 * np.abs(C.T @ H).max()


def test_zero_C_has_rank_zero_and_leaves_H_unchanged():
    rng = np.random.default_rng(8)
    H = rng.normal(size=(20, 3))
    H_res, rank = project_out(H, np.zeros((20, 2)), return_rank=True)
    assert rank == 0
    np.testing.assert_array_equal(H_res, H)


@pytest.mark.parametrize("make_C", [_counts_C, _fractions_C, _ill_conditioned_C])
def test_projection_is_idempotent(make_C):
    rng = np.random.default_rng(9)
    C = make_C(rng)
    H = _features(rng, C)
    once = project_out(H, C)
    twice = project_out(once, C)
    np.testing.assert_allclose(twice, once, rtol=0, atol=1e-10 * np.abs(once).max())


def test_1d_H_is_treated_as_one_column():
    rng = np.random.default_rng(10)
    C = _counts_C(rng)
    h = _features(rng, C, d=1)[:, 0]
    out = project_out(h, C)
    assert out.shape == (len(h), 1)
    np.testing.assert_allclose(out[:, 0], project_out(h[:, None], C)[:, 0], rtol=0, atol=0)


def test_return_rank_false_returns_only_the_array():
    rng = np.random.default_rng(11)
    C = _counts_C(rng)
    out = project_out(_features(rng, C), C)
    assert isinstance(out, np.ndarray)


# --- CompositionProjector ------------------------------------------------------------------


@pytest.mark.parametrize("make_C", [_counts_C, _fractions_C, _ill_conditioned_C])
def test_projector_fit_on_all_rows_equals_project_out(make_C):
    rng = np.random.default_rng(12)
    C = make_C(rng)
    H = _features(rng, C)
    expected = project_out(H, C)
    p = CompositionProjector().fit(C, H)
    np.testing.assert_allclose(p.transform(C, H), expected, rtol=0, atol=1e-9 * np.abs(H).max())
    np.testing.assert_allclose(CompositionProjector().fit_transform(C, H), expected, rtol=0,
                               atol=1e-9 * np.abs(H).max())


@pytest.mark.parametrize("make_C", [_counts_C, _fractions_C], ids=["counts", "fractions+intercept"])
def test_projector_train_fit_test_transform_equals_ols(make_C):
    rng = np.random.default_rng(13)
    C = make_C(rng, n=300)
    H = _features(rng, C)
    tr, te = np.arange(200), np.arange(200, 300)
    p = CompositionProjector().fit(C[tr], H[tr])
    got = p.transform(C[te], H[te])
    expected = _ols_residual(C[tr], H[tr], C[te], H[te])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9 * np.abs(H).max())
    # the test rows are *not* projected onto their own complement: C_te.T @ residual != 0
    assert np.abs(C[te].T @ got).max() > 1e-3


def test_projector_coefficients_known_answer():
    rng = np.random.default_rng(14)
    C = _counts_C(rng, n=50, k=3)
    B = np.array([[1.0, -2.0], [0.5, 0.0], [3.0, 1.0], [-4.0, 2.5]])
    p = CompositionProjector().fit(C, C @ B)
    np.testing.assert_allclose(p.coef_, B, rtol=0, atol=1e-10)
    assert p.rank_ == 4


def test_projector_rank_deficient_gives_redundant_columns_zero_coefficients():
    rng = np.random.default_rng(15)
    C = _fractions_C(rng, k=3)
    p = CompositionProjector().fit(C, _features(rng, C))
    assert p.rank_ == 3
    # exactly one of the 4 columns is redundant and gets an all-zero row of coefficients
    assert (np.abs(p.coef_).sum(axis=1) == 0).sum() == 1


# --- columns inside span(C) ----------------------------------------------------------------


def _with_inside_columns(rng, C):
    H = rng.normal(size=(len(C), 5))
    H[:, 1] = C @ rng.normal(size=C.shape[1]) * 100  # exactly a linear function of composition
    H[:, 3] = C[:, 0] * 3.7
    return H


@pytest.mark.parametrize("make_C", [_counts_C, _fractions_C])
def test_columns_inside_span_are_exactly_zero_project_out(make_C):
    rng = np.random.default_rng(16)
    C = make_C(rng)
    H = _with_inside_columns(rng, C)
    H_res = project_out(H, C)
    assert np.all(H_res[:, [1, 3]] == 0.0)
    assert np.all(np.abs(H_res[:, [0, 2, 4]]).max(axis=0) > 0.1)


@pytest.mark.parametrize("make_C", [_counts_C, _fractions_C])
def test_columns_inside_span_are_exactly_zero_projector(make_C):
    rng = np.random.default_rng(17)
    C = make_C(rng, n=300)
    H = _with_inside_columns(rng, C)
    tr, te = np.arange(200), np.arange(200, 300)
    p = CompositionProjector().fit(C[tr], H[tr])
    np.testing.assert_array_equal(p.inside_, [False, True, False, True, False])
    for rows in (tr, te):
        out = p.transform(C[rows], H[rows])
        assert np.all(out[:, [1, 3]] == 0.0)
        assert np.all(np.abs(out[:, [0, 2, 4]]).max(axis=0) > 0.1)


def test_column_just_outside_span_is_kept():
    # A tiny but real non-compositional part, far above INSIDE_RTOL, must survive.
    rng = np.random.default_rng(18)
    C = _counts_C(rng)
    h = C @ rng.normal(size=C.shape[1]) + 1e-5 * rng.normal(size=len(C))
    assert 1e-5 / np.abs(h).max() > 100 * INSIDE_RTOL
    out = project_out(h, C)[:, 0]
    np.testing.assert_allclose(out, _ols_residual(C, h[:, None], C, h[:, None])[:, 0], rtol=1e-6, atol=0)
    assert np.abs(out).max() > 1e-6


# --- bad input -----------------------------------------------------------------------------


def test_mismatched_rows_raise():
    rng = np.random.default_rng(19)
    C = _counts_C(rng, n=10)
    with pytest.raises(InputError, match="rows"):
        project_out(rng.normal(size=(9, 2)), C)
    with pytest.raises(InputError, match="rows"):
        CompositionProjector().fit(C, rng.normal(size=(11, 2)))
    p = CompositionProjector().fit(C, rng.normal(size=(10, 2)))
    with pytest.raises(InputError, match="rows"):
        p.transform(C[:5], rng.normal(size=(6, 2)))


def test_transform_with_other_columns_raises():
    rng = np.random.default_rng(20)
    C = _counts_C(rng, n=10)
    p = CompositionProjector().fit(C, rng.normal(size=(10, 2)))
    with pytest.raises(InputError, match="columns"):
        p.transform(C, rng.normal(size=(10, 3)))
    with pytest.raises(InputError, match="columns"):
        p.transform(C[:, :-1], rng.normal(size=(10, 2)))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", ["H", "C"])
def test_non_finite_values_raise_naming_the_row(bad, where):
    rng = np.random.default_rng(21)
    C = _counts_C(rng, n=10)
    H = rng.normal(size=(10, 2))
    (H if where == "H" else C)[7, 0] = bad
    with pytest.raises(InputError, match=rf"{where} contains NaN or inf in rows \[7\]"):
        project_out(H, C)
    with pytest.raises(InputError, match=rf"{where} contains NaN or inf"):
        CompositionProjector().fit(C, H)
    with pytest.raises(InputError, match="NaN"):
        composition_rank(C if where == "C" else H)


def test_3d_and_empty_inputs_raise():
    with pytest.raises(InputError, match="2-D"):
        project_out(np.zeros((4, 2, 2)), np.ones((4, 1)))
    with pytest.raises(InputError, match="no rows"):
        project_out(np.zeros((0, 2)), np.ones((0, 1)))
