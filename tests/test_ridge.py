"""Closed-form ridge CPD (cpd_core.ridge) against the row-wise scikit-learn route, fold by fold."""

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.metrics import r2_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from cpd_core import InputError, cpd
from cpd_core.decomposition import fold_labels
from cpd_core.probes import RIDGE_ALPHAS, ClippedStandardScaler
from cpd_core.projection import CompositionProjector
from cpd_core.ridge import RidgeFolds, as_alpha_grid
from cpd_core.synthetic import planted

FIXED = [1e-3, 0.1, 1.0, 10.0, 100.0, 1e4]


@pytest.fixture(scope="module")
def data():
    return planted(n=500, comp_share=0.3, geom_share=0.4, n_features=24, seed=3)


def _rowwise(H, C, y, fold_of, fold, geom, model):
    """The reference: projection fit on the training rows, then a scikit-learn pipeline."""
    tr, te = fold_of != fold, fold_of == fold
    if geom:
        proj = CompositionProjector().fit(C[tr], H[tr])
        X_tr, X_te = proj.transform(C[tr], H[tr]), proj.transform(C[te], H[te])
    else:
        X_tr, X_te = H[tr], H[te]
    fitted = model.fit(X_tr, y[tr])
    return r2_score(y[te], fitted.predict(X_te)), fitted


@pytest.mark.parametrize("geom", [True, False])
@pytest.mark.parametrize("scaler", ["clipped", "plain", "none"])
def test_every_alpha_equals_the_sklearn_route(data, geom, scaler):
    H, C, y = data.H, data.C, data.y
    fold_of = fold_labels(len(y), 4, seed=0)
    rf = RidgeFolds(H, C, y, fold_of, standardize=scaler != "none", clip=scaler == "clipped")
    for fold in range(4):
        fit = rf.fit([g for g in range(4) if g != fold], fold, FIXED, geom=geom)
        for alpha, r2 in zip(FIXED, fit.r2):
            steps = {"clipped": [ClippedStandardScaler()], "plain": [StandardScaler()], "none": []}[scaler]
            ref, _ = _rowwise(H, C, y, fold_of, fold, geom, make_pipeline(*steps, Ridge(alpha=alpha)))
            assert r2 == pytest.approx(ref, abs=1e-8)


def test_clipping_matters_and_is_reproduced():
    """Held-out values beyond the training range: the clipped and plain probes differ, each matched."""
    rng = np.random.default_rng(0)
    n = 300
    C = np.column_stack([rng.integers(0, 4, n), np.ones(n)])
    H = rng.standard_t(2, size=(n, 6))                    # heavy tails: test rows escape the range
    y = H[:, 0] + rng.normal(size=n)
    fold_of = fold_labels(n, 3, seed=1)
    clipped = RidgeFolds(H, C, y, fold_of).fit([1, 2], 0, [1.0])
    plain = RidgeFolds(H, C, y, fold_of, clip=False).fit([1, 2], 0, [1.0])
    assert abs(clipped.r2[0] - plain.r2[0]) > 1e-4
    for fit, scaler in ((clipped, ClippedStandardScaler()), (plain, ClippedStandardScaler(clip=False))):
        ref, _ = _rowwise(H, C, y, fold_of, 0, True, Pipeline([("s", scaler), ("r", Ridge(alpha=1.0))]))
        assert fit.r2[0] == pytest.approx(ref, abs=1e-10)


@pytest.mark.parametrize("geom", [True, False])
def test_loo_selection_equals_ridgecv(data, geom):
    H, C, y = data.H, data.C, data.y
    fold_of = fold_labels(len(y), 5, seed=2)
    rf = RidgeFolds(H, C, y, fold_of)
    for fold in range(5):
        fit = rf.fit([g for g in range(5) if g != fold], fold, None, geom=geom, select="loo")
        ref, model = _rowwise(H, C, y, fold_of, fold, geom, Pipeline([("s", ClippedStandardScaler()),
                                                                       ("r", RidgeCV(alphas=RIDGE_ALPHAS))]))
        assert RIDGE_ALPHAS[fit.chosen] == model[-1].alpha_
        assert fit.r2[fit.chosen] == pytest.approx(ref, abs=1e-8)


def _inner_folds_reference(H, C, y, fold_of, train, geom, alphas):
    """Inner-fold MSE per penalty, row-wise: the outer training set standardised once (projection and
    clipped scaler fit on it), then ``Ridge(alpha)`` refit on all but one training fold, scored on it."""
    tr = np.isin(fold_of, train)
    X = H[tr]
    if geom:
        X = CompositionProjector().fit(C[tr], H[tr]).transform(C[tr], H[tr])
    Z, y_tr, f_tr = ClippedStandardScaler().fit_transform(X), y[tr], fold_of[tr]
    mse = []
    for alpha in alphas:
        sq = sum(np.sum((y_tr[f_tr == g] - Ridge(alpha=alpha).fit(Z[f_tr != g], y_tr[f_tr != g])
                         .predict(Z[f_tr == g])) ** 2) for g in train)
        mse.append(sq / tr.sum())
    return np.array(mse)


@pytest.mark.parametrize("geom", [True, False])
def test_inner_folds_criterion_equals_explicit_refits(data, geom):
    """select="folds": the criterion is the pooled inner-fold MSE of explicit scikit-learn refits."""
    H, C, y = data.H, data.C, data.y
    fold_of = fold_labels(len(y), 5, seed=4)
    rf = RidgeFolds(H, C, y, fold_of)
    for fold in (0, 3):
        train = [g for g in range(5) if g != fold]
        fit = rf.fit(train, fold, FIXED, geom=geom, select="folds")
        ref = _inner_folds_reference(H, C, y, fold_of, train, geom, FIXED)
        np.testing.assert_allclose(fit.criterion, ref, rtol=1e-8)
        assert fit.chosen == int(np.argmin(ref))


def test_inner_folds_with_constant_columns_and_wide_blocks():
    """Dropped constant columns and more columns than rows: still the explicit refits' criterion."""
    rng = np.random.default_rng(11)
    n, d = 80, 120
    C = np.column_stack([rng.integers(0, 4, size=(n, 2)), np.ones(n)])
    H = rng.normal(size=(n, d))
    H[:, 5] = 2.0                                         # constant: dropped by the scaler
    y = H[:, :4].sum(axis=1) + C[:, 0] + 0.3 * rng.normal(size=n)
    fold_of = fold_labels(n, 4, seed=0)
    rf = RidgeFolds(H, C, y, fold_of)
    for geom in (True, False):
        fit = rf.fit([1, 2, 3], 0, FIXED, geom=geom, select="folds")
        np.testing.assert_allclose(fit.criterion, _inner_folds_reference(H, C, y, fold_of, [1, 2, 3], geom, FIXED),
                                   rtol=1e-7)


def test_inner_folds_with_one_training_fold_falls_back_to_loo(data):
    H, C, y = data.H, data.C, data.y
    fold_of = fold_labels(len(y), 2, seed=0)
    rf = RidgeFolds(H, C, y, fold_of)
    folds = rf.fit([1], 0, FIXED, select="folds")
    loo = rf.fit([1], 0, FIXED, select="loo")
    np.testing.assert_allclose(folds.criterion, loo.criterion)


def test_gcv_criterion_is_the_closed_form(data):
    """GCV from (s, q) equals RSS / n / (1 - tr(hat)/n)² computed from explicit fits."""
    H, C, y = data.H, data.C, data.y
    fold_of = fold_labels(len(y), 3, seed=0)
    fit = RidgeFolds(H, C, y, fold_of).fit([1, 2], 0, FIXED, geom=False, select="gcv")
    tr = fold_of != 0
    Z = ClippedStandardScaler().fit_transform(H[tr])
    Zc, yc = Z - Z.mean(0), y[tr] - y[tr].mean()
    n = tr.sum()
    for alpha, crit in zip(FIXED, fit.criterion):
        hat = Zc @ np.linalg.solve(Zc.T @ Zc + alpha * np.eye(Z.shape[1]), Zc.T)
        rss = np.sum((yc - hat @ yc) ** 2)
        assert crit == pytest.approx(rss / n / (1 - (np.trace(hat) + 1) / n) ** 2, rel=1e-8)


def test_cpd_default_is_inner_folds_and_reports_curve(data):
    res = cpd(data.H, data.C, data.y, cv=5, seed=0)
    gcv = cpd(data.H, data.C, data.y, cv=5, seed=0, select="gcv")
    loo = cpd(data.H, data.C, data.y, cv=5, seed=0, select="loo")
    assert res.curve is not None and len(res.curve) == 5 * len(RIDGE_ALPHAS)
    # the chosen penalty's held-out score is the curve's value there
    for fold, row in res.folds.iterrows():
        at = res.curve[(res.curve["fold"] == fold) & np.isclose(res.curve["alpha"], row["alpha_geom"])]
        assert at["r2_geom"].iloc[0] == pytest.approx(row["r2_geom"], abs=1e-12)
    # the rules agree closely here (no high-leverage rows)
    assert abs(res.r2_geom - gcv.r2_geom) < 0.01 and abs(res.r2_geom - loo.r2_geom) < 0.01
    pd.testing.assert_frame_equal(res.folds, cpd(data.H, data.C, data.y, cv=5, seed=0, select="folds").folds)
    for fold in range(5):                                   # the inner-fold choice, row-wise
        train = [g for g in range(5) if g != fold]
        ref = _inner_folds_reference(data.H, data.C, data.y, res.fold_of, train, True, RIDGE_ALPHAS)
        assert res.folds.loc[fold, "alpha_geom"] == RIDGE_ALPHAS[int(np.argmin(ref))]
    for fold in range(5):                                   # select="loo" is RidgeCV's exact LOO
        _, model = _rowwise(data.H, data.C, data.y, res.fold_of, fold, True,
                            Pipeline([("s", ClippedStandardScaler()), ("r", RidgeCV(alphas=RIDGE_ALPHAS))]))
        assert loo.folds.loc[fold, "alpha_geom"] == model[-1].alpha_


def test_loo_is_not_worse_than_gcv_with_high_leverage_columns():
    """Columns non-zero for one molecule each (rare-element terms): leave-one-out sees their leverage."""
    rng = np.random.default_rng(11)
    n, d = 200, 60
    C = np.column_stack([rng.integers(0, 5, size=(n, 2)), np.ones(n)])
    H = rng.normal(size=(n, d))
    H[:, :20] = 0.0
    H[rng.choice(n, 20, replace=False), np.arange(20)] = 50.0   # 20 one-molecule columns
    y = H[:, 20] + 2.0 * rng.normal(size=n)
    loo = cpd(H, C, y, cv=5, select="loo")
    gcv = cpd(H, C, y, cv=5, select="gcv")
    assert loo.r2_geom >= gcv.r2_geom - 0.02


def test_fixed_alpha_and_custom_grid(data):
    one = cpd(data.H, data.C, data.y, cv=3, alphas=10.0)
    assert (one.folds["alpha_geom"] == 10.0).all() and (one.folds["alpha_full"] == 10.0).all()
    grid = cpd(data.H, data.C, data.y, cv=3, alphas=[0.1, 10.0, 1000.0])
    assert set(grid.folds["alpha_geom"]) <= {0.1, 10.0, 1000.0}
    assert sorted(grid.curve["alpha"].unique()) == [0.1, 10.0, 1000.0]
    r2_at_10 = grid.curve[grid.curve["alpha"] == 10.0].set_index("fold")["r2_geom"]
    np.testing.assert_allclose(r2_at_10, one.folds["r2_geom"], atol=1e-12)


@pytest.mark.parametrize("bad", [[], [0.0], [-1.0], [np.nan], [[1.0, 2.0]]])
def test_bad_alphas_raise(bad):
    with pytest.raises(InputError):
        as_alpha_grid(bad)


def test_bad_select_raises(data):
    with pytest.raises(InputError, match="select"):
        cpd(data.H, data.C, data.y, select="aic")


def test_element_missing_from_a_training_fold_is_projected_as_rowwise():
    """Rank-deficient training composition: one molecule has an element no other has."""
    rng = np.random.default_rng(5)
    n = 120
    counts = rng.integers(0, 5, size=(n, 3)).astype(float)
    rare = np.zeros(n)
    rare[7] = 2.0
    C = np.column_stack([counts, rare, np.ones(n)])
    H = np.column_stack([C[:, :4] @ rng.normal(size=(4, 5)), rng.normal(size=(n, 5))])
    y = H[:, 5] + counts[:, 0] + 3 * rare + 0.1 * rng.normal(size=n)
    fold_of = fold_labels(n, 4, seed=0)
    fold = fold_of[7]                                     # row 7's fold: the rare element is absent in training
    fit = RidgeFolds(H, C, y, fold_of).fit([g for g in range(4) if g != fold], fold, FIXED, geom=True)
    for alpha, r2 in zip(FIXED, fit.r2):
        ref, _ = _rowwise(H, C, y, fold_of, fold, True,
                          Pipeline([("s", ClippedStandardScaler()), ("r", Ridge(alpha=alpha))]))
        assert r2 == pytest.approx(ref, abs=1e-8)


def test_columns_inside_composition_span_are_dropped_like_the_projector():
    rng = np.random.default_rng(1)
    n = 200
    C = np.column_stack([rng.integers(0, 6, size=(n, 2)), np.ones(n)])
    H = np.column_stack([C @ [1.0, 2.0, 0.5], C @ [0.0, -1.0, 3.0], rng.normal(size=(n, 3))])
    y = C[:, 0] + H[:, 2]
    fold_of = fold_labels(n, 4, seed=0)
    fit = RidgeFolds(H, C, y, fold_of).fit([1, 2, 3], 0, [1.0], geom=True)
    assert fit.n_kept == 3
    ref, _ = _rowwise(H, C, y, fold_of, 0, True, Pipeline([("s", ClippedStandardScaler()), ("r", Ridge(alpha=1.0))]))
    assert fit.r2[0] == pytest.approx(ref, abs=1e-10)


def test_large_offsets_keep_precision():
    """Features with a mean 10⁵ × their spread: the centred Gram route keeps the sklearn answer."""
    rng = np.random.default_rng(2)
    n = 400
    C = np.column_stack([rng.integers(0, 6, size=(n, 2)), np.ones(n)])
    H = 1e5 + rng.normal(size=(n, 4))
    y = H[:, 0] - 1e5 + 0.3 * rng.normal(size=n) + 1e4
    fold_of = fold_labels(n, 4, seed=0)
    rf = RidgeFolds(H, C, y, fold_of)
    for geom in (True, False):
        fit = rf.fit([1, 2, 3], 0, [1.0], geom=geom)
        ref, _ = _rowwise(H, C, y, fold_of, 0, geom, Pipeline([("s", ClippedStandardScaler()), ("r", Ridge(alpha=1.0))]))
        assert fit.r2[0] == pytest.approx(ref, abs=1e-7)


@pytest.mark.parametrize("select", ["gcv", "loo"])
def test_more_columns_than_rows_uses_the_kernel_and_still_matches(select):
    """d > n_train: the dual (kernel) path gives the scikit-learn answers and choices."""
    rng = np.random.default_rng(7)
    n, d = 90, 150
    C = np.column_stack([rng.integers(0, 5, size=(n, 2)), np.ones(n)])
    H = rng.normal(size=(n, d))
    y = H[:, :5].sum(axis=1) + C[:, 0] + 0.5 * rng.normal(size=n)
    fold_of = fold_labels(n, 3, seed=0)
    rf = RidgeFolds(H, C, y, fold_of)
    for geom in (True, False):
        fit = rf.fit([1, 2], 0, None, geom=geom, select=select)
        fixed = rf.fit([1, 2], 0, FIXED, geom=geom)
        for alpha, r2 in zip(FIXED, fixed.r2):
            ref, _ = _rowwise(H, C, y, fold_of, 0, geom, Pipeline([("s", ClippedStandardScaler()),
                                                                    ("r", Ridge(alpha=alpha))]))
            assert r2 == pytest.approx(ref, abs=1e-8)
        if select == "loo":
            _, model = _rowwise(H, C, y, fold_of, 0, geom, Pipeline([("s", ClippedStandardScaler()),
                                                                      ("r", RidgeCV(alphas=RIDGE_ALPHAS))]))
            assert RIDGE_ALPHAS[fit.chosen] == model[-1].alpha_


def test_loo_choices_equal_ridgecv_on_real_features(tmp_path, monkeypatch):
    """ANI-2x AEVs of 160 QM9 molecules (rare-element columns included): same penalties as RidgeCV."""
    import importlib.util

    if importlib.util.find_spec("qm9pack") is None or importlib.util.find_spec("torchani") is None:
        pytest.skip("needs qm9pack and torchani")
    from cpd_core.datasets.qm9 import load_qm9
    from cpd_core.extract import features
    from cpd_core.models import ANI2xAEV

    monkeypatch.setenv("CPD_CACHE_DIR", str(tmp_path))
    qm9 = load_qm9(n=160, seed=1)
    H = features(ANI2xAEV(), qm9, device="cpu", progress=False)["aev"]
    C, y = qm9.composition(), qm9.targets["gap"].to_numpy()
    res = cpd(H, C, y, cv=4, seed=0, select="loo")
    for fold in range(4):
        for key, geom in (("alpha_geom", True), ("alpha_full", False)):
            r2, model = _rowwise(H.astype(np.float64), C, y, res.fold_of, fold, geom,
                                 Pipeline([("s", ClippedStandardScaler()), ("r", RidgeCV(alphas=RIDGE_ALPHAS))]))
            assert res.folds.loc[fold, key] == model[-1].alpha_
            assert res.folds.loc[fold, "r2_" + key.split("_")[1]] == pytest.approx(r2, abs=1e-6)


@pytest.mark.parametrize("geom", [True, False])
def test_columns_zero_on_every_training_row_are_dropped_as_row_wise(geom):
    """An element (and the feature columns it alone switches on) present only in the held-out fold:
    the row-wise route sees exact zeros on the training rows and drops those columns; so must the
    Gram route, whose residual there is round-off (regression: AEV columns of fluorine)."""
    rng = np.random.default_rng(5)
    n = 200
    fold_of = fold_labels(n, 4, seed=0)
    rare = (fold_of == 0) & (rng.random(n) < 0.3)
    C = np.column_stack([rng.integers(1, 6, n), rare.astype(float), np.ones(n)])
    H = rng.normal(size=(n, 8))
    H[:, 6] = np.where(rare, 1e-3 * rng.random(n), 0.0)
    H[:, 7] = np.where(rare, 5 + rng.random(n), 0.0)
    y = H[:, 0] + C[:, 0] + 0.2 * rng.normal(size=n)
    fit = RidgeFolds(H, C, y, fold_of).fit([1, 2, 3], 0, FIXED, geom=geom)
    ref_keep = 6
    assert fit.n_kept == ref_keep
    for alpha, r2 in zip(FIXED, fit.r2):
        ref, _ = _rowwise(H, C, y, fold_of, 0, geom, Pipeline([("s", ClippedStandardScaler()),
                                                                 ("r", Ridge(alpha=alpha))]))
        assert r2 == pytest.approx(ref, abs=1e-8)


@pytest.mark.parametrize("select", ["folds", "loo", "gcv"])
@pytest.mark.parametrize("width", [24, 400])          # primal, and more columns than training rows (kernel)
def test_retarget_equals_a_fresh_fit_and_shares_the_decompositions(select, width):
    """Several targets on one block: every fit of a retargeted copy equals that of a RidgeFolds built for that
    target, whichever target was probed first, and the target-independent work is done once."""
    rng = np.random.default_rng(11)
    n = 300
    C = np.column_stack([rng.integers(0, 4, size=(n, 2)), np.ones(n)])
    H = rng.normal(size=(n, width)) + C[:, :1]
    ys = [H[:, 0] + rng.normal(size=n), C[:, 0] * 2.0 + H[:, 1], rng.permutation(H[:, 2])]
    fold_of = fold_labels(n, 4, seed=2)
    base = RidgeFolds(H, C, ys[0], fold_of)
    copies = [base] + [base.retarget(y) for y in ys[1:]]
    for train, test in [([1, 2, 3], 0), ([0, 2], 1)]:
        for geom in (True, False):
            for y, rf in zip(ys, copies):
                got = rf.fit(train, test, geom=geom, select=select)
                ref = RidgeFolds(H, C, y, fold_of).fit(train, test, geom=geom, select=select)
                np.testing.assert_allclose(got.r2, ref.r2, rtol=0, atol=1e-9)
                np.testing.assert_allclose(got.criterion, ref.criterion, rtol=1e-9)
                assert got.chosen == ref.chosen and got.n_kept == ref.n_kept
                np.testing.assert_allclose(got.predictions, ref.predictions, rtol=0, atol=1e-9)
    # one decomposition per (training set, residual), whatever the number of targets
    assert len(base._memo) == 4 and all(rf._memo is base._memo for rf in copies)
    with pytest.raises(InputError, match="shape"):
        base.retarget(ys[0][:10])
