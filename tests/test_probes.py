"""Probes: the clipped scaler, the probe factory and the chosen ridge penalty."""

import numpy as np
import pytest
from sklearn.compose import TransformedTargetRegressor
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.neighbors import KNeighborsRegressor
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from cpd_core import InputError
from cpd_core.probes import PROBES, RIDGE_ALPHAS, ClippedStandardScaler, make_probe, ridge_alpha


# --- ClippedStandardScaler -----------------------------------------------------------------


def _train():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 4))
    X[:, 1] = 3.0  # constant
    X[:, 3] = 0.0  # all zero
    return X


def test_constant_columns_are_dropped():
    X = _train()
    s = ClippedStandardScaler().fit(X)
    np.testing.assert_array_equal(s.keep_, [True, False, True, False])
    Z = s.transform(X)
    assert Z.shape == (50, 2)
    # kept columns are z-scored with training statistics
    np.testing.assert_allclose(Z.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(Z.std(axis=0), 1, atol=1e-12)
    np.testing.assert_allclose(Z[:, 0], (X[:, 0] - X[:, 0].mean()) / X[:, 0].std(), atol=1e-12)


def test_nearly_constant_column_is_dropped_relative_to_its_scale():
    X = np.column_stack([np.linspace(0, 1, 20), 1e6 + 1e-4 * np.linspace(0, 1, 20)])
    # std/scale of column 1 is ~3e-11 < rtol = 1e-8
    np.testing.assert_array_equal(ClippedStandardScaler().fit(X).keep_, [True, False])
    np.testing.assert_array_equal(ClippedStandardScaler(rtol=1e-12).fit(X).keep_, [True, True])


def test_held_out_values_are_clipped_to_the_training_range():
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    s = ClippedStandardScaler().fit(X)
    mu, sd = 1.5, X.std()
    lo, hi = (0 - mu) / sd, (3 - mu) / sd
    out = s.transform(np.array([[-100.0], [1.0], [100.0]]))[:, 0]
    np.testing.assert_allclose(out, [lo, (1 - mu) / sd, hi], rtol=1e-12)


def test_clip_false_does_not_clip():
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    s = ClippedStandardScaler(clip=False).fit(X)
    out = s.transform(np.array([[100.0]]))[0, 0]
    np.testing.assert_allclose(out, (100 - 1.5) / X.std(), rtol=1e-12)


def test_all_constant_columns_give_a_probe_that_predicts_the_mean():
    # e.g. a composition residual that is exactly zero: nothing to read, R² should be ~0
    X = np.zeros((20, 3))
    y = np.arange(20.0)
    pred = make_probe("ridge").fit(X, y).predict(np.ones((4, 3)))
    np.testing.assert_allclose(pred, y.mean())


def test_scaler_is_a_clonable_sklearn_transformer():
    from sklearn.base import clone

    s = clone(ClippedStandardScaler(clip=False, rtol=1e-3))
    assert s.get_params() == {"clip": False, "rtol": 1e-3}


# --- make_probe ----------------------------------------------------------------------------


def test_ridge_probe_is_clipped_scaler_then_ridgecv_over_the_grid():
    p = make_probe("ridge")
    assert isinstance(p, Pipeline)
    assert isinstance(p[0], ClippedStandardScaler)
    assert isinstance(p[-1], RidgeCV)
    np.testing.assert_array_equal(p[-1].alphas, RIDGE_ALPHAS)
    assert len(RIDGE_ALPHAS) == 57
    assert RIDGE_ALPHAS[0] == pytest.approx(1e-6) and RIDGE_ALPHAS[-1] == pytest.approx(1e8)


def test_standardize_false_has_no_scaler():
    p = make_probe("ridge", standardize=False)
    assert [name for name, _ in p.steps] == ["probe"]


def test_mlp_probe_is_seeded_with_standardised_target():
    p = make_probe("mlp", seed=7)
    ttr = p[-1]
    assert isinstance(ttr, TransformedTargetRegressor)
    assert isinstance(ttr.regressor, MLPRegressor)
    assert isinstance(ttr.transformer, StandardScaler)
    assert ttr.regressor.random_state == 7
    assert ttr.regressor.early_stopping


def test_gbt_probe_is_seeded_and_unscaled():
    p = make_probe("gbt", seed=3)
    assert isinstance(p, Pipeline) and [name for name, _ in p.steps] == ["drop constant", "probe"]
    assert isinstance(p[-1], HistGradientBoostingRegressor)
    assert p[-1].random_state == 3


def test_gbt_without_its_constant_columns_grows_the_same_trees():
    """Dropping columns constant on the training rows only saves time: predictions equal the bare trees'."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 12))
    X[:, [2, 5, 9]] = 0.0                      # zero on every training row
    X[:, 7] = 4.0
    y = np.sin(X[:, 0]) + X[:, 1] ** 2 + 0.1 * rng.normal(size=300)
    X_test = rng.normal(size=(80, 12))          # the dropped columns vary here: ignored, as by the bare trees
    ours = make_probe("gbt", seed=0).fit(X, y)
    bare = HistGradientBoostingRegressor(random_state=0).fit(X, y)
    assert ours[0].keep_.sum() == 8
    np.testing.assert_array_equal(ours.predict(X_test), bare.predict(X_test))
    everything_constant = make_probe("gbt").fit(np.ones((50, 3)), rng.normal(size=50))
    assert everything_constant.predict(np.zeros((2, 3))).shape == (2,)


def test_probes_are_fresh_each_call():
    a, b = make_probe("ridge"), make_probe("ridge")
    assert a is not b and a[-1] is not b[-1]


def test_unknown_probe_raises_listing_choices():
    with pytest.raises(InputError) as err:
        make_probe("lasso")
    msg = str(err.value)
    assert "lasso" in msg
    for name in PROBES:
        assert name in msg


def test_user_regressor_is_cloned():
    user = KNeighborsRegressor(n_neighbors=3)
    p = make_probe(user)
    assert p is not user
    assert isinstance(p, KNeighborsRegressor) and p.n_neighbors == 3
    # fitting the probe leaves the user's object unfitted
    p.fit(np.arange(10.0)[:, None], np.arange(10.0))
    assert not hasattr(user, "n_features_in_")


def test_user_pipeline_is_cloned_unfitted():
    user = make_pipeline(StandardScaler(), Ridge(alpha=2.0))
    user.fit(np.arange(10.0)[:, None], np.arange(10.0))
    p = make_probe(user)
    assert p is not user
    assert not hasattr(p[-1], "coef_")
    assert p[-1].alpha == 2.0


# --- ridge_alpha ---------------------------------------------------------------------------


def _linear_data(noise):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 10))
    return X, X @ rng.normal(size=10) + noise * rng.normal(size=200)


def test_ridge_alpha_is_the_penalty_ridgecv_chose():
    X, y = _linear_data(0.1)
    fitted = make_probe("ridge").fit(X, y)
    alpha = ridge_alpha(fitted)
    assert isinstance(alpha, float)
    assert alpha == fitted[-1].alpha_
    assert np.isclose(RIDGE_ALPHAS, alpha).any()


def test_ridge_alpha_grows_with_noise():
    small = ridge_alpha(make_probe("ridge").fit(*_linear_data(0.01)))
    large = ridge_alpha(make_probe("ridge").fit(*_linear_data(30.0)))
    assert large > 100 * small


def test_ridge_alpha_of_unpipelined_ridgecv():
    X, y = _linear_data(0.1)
    fitted = RidgeCV(alphas=[0.5]).fit(X, y)
    assert ridge_alpha(fitted) == 0.5


def test_ridge_alpha_is_none_for_other_probes():
    X, y = _linear_data(0.1)
    assert ridge_alpha(make_probe("gbt").fit(X[:60], y[:60])) is None
    assert ridge_alpha(make_pipeline(StandardScaler(), Ridge()).fit(X, y)) is None
