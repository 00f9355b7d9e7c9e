"""CPD: known answers on planted data, fold handling, reported values, bad input, cpd_table."""

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from cpd_core import CPDResult, InputError, composition_rank, cpd, cpd_table, project_out
from cpd_core.probes import RIDGE_ALPHAS
from cpd_core.synthetic import planted

SCORES = ["r2_full", "r2_comp", "r2_geom"]



@pytest.fixture(scope="module")
def small():
    """A small planted set for the fast checks (fold handling, bookkeeping)."""
    return planted(n=300, comp_share=0.3, geom_share=0.5, seed=0)


@pytest.fixture(scope="module")
def pure_composition():
    """y exactly linear in the counts: true linear R²_geom is 0."""
    return planted(n=600, comp_share=1.0, geom_share=0.0, seed=0)


# --- known answers -------------------------------------------------------------------------


@pytest.mark.parametrize("comp_share, geom_share", [(0.3, 0.5), (0.3, 0.2)])
def test_ridge_recovers_planted_shares(comp_share, geom_share):
    d = planted(n=2000, comp_share=comp_share, geom_share=geom_share, seed=0)
    res = cpd(d.H, d.C, d.y, probe="ridge", cv=3, seed=0)
    assert abs(res.r2_geom - d.r2_geom_true) < 0.03
    assert abs(res.r2_comp - d.r2_comp_true) < 0.03
    # the features hold both parts, so the full probe sees (nearly) all the signal
    assert res.r2_full > d.r2_geom_true + d.r2_comp_true - 0.05


def test_purely_compositional_target_ridge_zero_gbt_inflated(pure_composition):
    d = pure_composition
    ridge = cpd(d.H, d.C, d.y, probe="ridge", cv=3, seed=0)
    assert abs(ridge.r2_geom) < 0.02
    assert ridge.r2_comp == pytest.approx(1.0, abs=1e-10)  # y is exactly linear in C
    gbt = cpd(d.H, d.C, d.y, probe="gbt", cv=3, seed=0)
    assert gbt.r2_geom > 0.5  # trees decode composition from nonlinear remnants
    assert gbt.r2_comp == ridge.r2_comp  # same folds, same linear baseline


def test_target_linear_in_composition_has_r2_comp_one_on_every_fold():
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 6, size=(60, 3)).astype(float)
    C = np.hstack([counts, np.ones((60, 1))])
    H = np.hstack([counts ** 2, rng.normal(size=(60, 4))])
    y = counts @ [1.0, -2.0, 0.5] + 3.0
    res = cpd(H, C, y, cv=3)
    np.testing.assert_allclose(res.folds["r2_comp"], 1.0, atol=1e-10)


def test_mlp_probe_runs_and_reads_signal():
    d = planted(n=400, comp_share=0.3, geom_share=0.5, seed=0)
    res = cpd(d.H, d.C, d.y, probe="mlp", cv=3, seed=0)
    assert res.probe == "mlp"
    assert res.r2_full > 0.4 and res.r2_geom > 0.2
    assert "alpha_geom" not in res.folds


def test_features_entirely_inside_span_give_zero_r2_geom():
    # Features that are a linear function of composition leave nothing geometric: the
    # residual is exactly zero, and the ridge probe should fall back to the mean (R² ≈ 0).
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 6, size=(90, 3)).astype(float)
    C = np.hstack([counts, np.ones((90, 1))])
    y = counts @ [1.0, 2.0, 3.0] + rng.normal(size=90)
    res = cpd(counts, C, y, probe="ridge", cv=3)
    assert res.r2_full > 0.9
    assert abs(res.r2_geom) < 0.1


# --- fit_projection ------------------------------------------------------------------------


def test_fit_projection_train_and_all_differ_little_on_large_n():
    d = planted(n=2000, comp_share=0.3, geom_share=0.4, seed=0)
    train = cpd(d.H, d.C, d.y, cv=3, seed=0, fit_projection="train")
    every = cpd(d.H, d.C, d.y, cv=3, seed=0, fit_projection="all")
    assert train.fit_projection == "train" and every.fit_projection == "all"
    assert abs(train.r2_geom - every.r2_geom) < 0.02
    # the two paths really are different computations ...
    assert not np.allclose(train.folds["r2_geom"], every.folds["r2_geom"], rtol=0, atol=1e-6)
    # ... that share the folds, the raw-feature probe and the composition baseline
    pd.testing.assert_series_equal(train.folds["r2_full"], every.folds["r2_full"])
    pd.testing.assert_series_equal(train.folds["r2_comp"], every.folds["r2_comp"])


def test_fit_projection_all_uses_project_out_on_all_rows(small):
    d = small
    # a user probe that remembers the training matrix it saw last
    seen = []

    class Spy(Ridge):
        def fit(self, X, y, sample_weight=None):
            seen.append(np.array(X))
            return super().fit(X, y, sample_weight)

    cpd(d.H, d.C, d.y, probe=Spy(), cv=3, seed=0, fit_projection="all")
    H_all = project_out(d.H, d.C)
    # fits alternate full, geom per fold; every geom training matrix is a row subset of H_all
    for X in seen[1::2]:
        rows = [np.flatnonzero(np.all(np.isclose(H_all, x, rtol=0, atol=1e-12), axis=1)) for x in X[:5]]
        assert all(len(r) == 1 for r in rows)


# --- folds: shuffled, seeded, kept ---------------------------------------------------------


def test_same_seed_gives_identical_folds(small):
    d = small
    a = cpd(d.H, d.C, d.y, cv=3, seed=11)
    b = cpd(d.H, d.C, d.y, cv=3, seed=11)
    pd.testing.assert_frame_equal(a.folds, b.folds)
    assert a.r2_geom == b.r2_geom


def test_different_seed_gives_different_folds(small):
    d = small
    a = cpd(d.H, d.C, d.y, cv=3, seed=11)
    b = cpd(d.H, d.C, d.y, cv=3, seed=12)
    assert a.seed == 11 and b.seed == 12
    assert not np.allclose(a.folds[SCORES], b.folds[SCORES])


def test_sorted_target_is_shuffled_into_folds():
    # QM9 rows are ordered by size, so targets correlate with row order. Unshuffled
    # folds would ask every probe to extrapolate; shuffled folds must not care.
    d = planted(n=900, comp_share=0.3, geom_share=0.5, seed=2)
    order = np.argsort(d.y)
    as_drawn = cpd(d.H, d.C, d.y, cv=3, seed=0)
    sorted_ = cpd(d.H[order], d.C[order], d.y[order], cv=3, seed=0)
    for key in SCORES:
        assert abs(getattr(sorted_, key) - getattr(as_drawn, key)) < 0.05
        assert sorted_.folds[key].min() > 0.1


def test_per_fold_values_are_kept_and_summarised(small):
    d = small
    res = cpd(d.H, d.C, d.y, cv=4, seed=0)
    assert isinstance(res, CPDResult)
    assert len(res.folds) == 4 == res.cv
    assert list(res.folds.index) == [0, 1, 2, 3]
    assert set(res.folds.columns) == {"r2_full", "r2_comp", "r2_geom", "alpha_full", "alpha_geom"}
    for key in SCORES:
        assert getattr(res, key) == pytest.approx(res.folds[key].mean(), abs=1e-15)
        assert res.std[key] == pytest.approx(np.std(res.folds[key].to_numpy(), ddof=1), abs=1e-15)
        assert res.std[key] > 0
    summary = res.summary()
    assert summary["r2_geom_std"] == res.std["r2_geom"]
    assert summary["r2_geom_worst_fold"] == res.folds["r2_geom"].min()
    assert (summary["n"], summary["d"]) == (300, 89)
    assert summary["rank_C"] == res.composition_rank == composition_rank(d.C)
    assert summary["probe"] == "ridge" and summary["fit_projection"] == "train"
    assert summary["alpha_geom_median"] == res.folds["alpha_geom"].median()


def test_ridge_reports_alpha_per_fold(small):
    d = small
    res = cpd(d.H, d.C, d.y, probe="ridge", cv=3, seed=0)
    for col in ("alpha_full", "alpha_geom"):
        assert res.folds[col].notna().all()
        assert all(np.isclose(RIDGE_ALPHAS, a).any() for a in res.folds[col])


def test_non_ridge_probes_report_no_alpha(small):
    d = small
    res = cpd(d.H, d.C, d.y, probe="gbt", cv=3, seed=0)
    assert "alpha_full" not in res.folds and "alpha_geom" not in res.folds
    assert "alpha_geom_median" not in res.summary()


def test_user_probe_is_named_by_its_class(small):
    d = small
    res = cpd(d.H, d.C, d.y, probe=make_pipeline(StandardScaler(), Ridge(alpha=10.0)), cv=3)
    assert res.probe == "Pipeline"
    assert res.r2_full > 0.5


def test_composition_rank_and_shapes_are_reported():
    rng = np.random.default_rng(0)
    counts = rng.integers(1, 6, size=(40, 3)).astype(float)
    fractions = counts / counts.sum(axis=1, keepdims=True)
    C = np.hstack([fractions, np.ones((40, 1))])  # rank 3 of 4 columns
    H = rng.normal(size=(40, 5))
    res = cpd(H, C, rng.normal(size=40), cv=3)
    assert (res.n_samples, res.n_features, res.composition_rank) == (40, 5, 3)


def test_standardize_false_changes_the_probe(small):
    d = small
    H = d.H * np.r_[np.ones(40), 1e3 * np.ones(d.H.shape[1] - 40)]  # badly scaled blocks
    on = cpd(H, d.C, d.y, cv=3, standardize=True)
    off = cpd(H, d.C, d.y, cv=3, standardize=False)
    assert not np.allclose(on.folds["r2_full"], off.folds["r2_full"])


# --- bad input -----------------------------------------------------------------------------


def _ok():
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 5, size=(30, 2)).astype(float)
    return rng.normal(size=(30, 4)), np.hstack([counts, np.ones((30, 1))]), rng.normal(size=30)


@pytest.mark.parametrize("which, rows", [("H", 29), ("C", 31), ("y", 28)])
def test_mismatched_lengths_raise(which, rows):
    H, C, y = _ok()
    args = {"H": H, "C": C, "y": y}
    args[which] = args[which][:rows] if rows < 30 else np.concatenate([args[which], args[which][:1]])
    with pytest.raises(InputError, match="rows"):
        cpd(args["H"], args["C"], args["y"], cv=3)


@pytest.mark.parametrize("which", ["H", "C", "y"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_values_raise(which, bad):
    H, C, y = _ok()
    {"H": H, "C": C, "y": y}[which].flat[5] = bad
    with pytest.raises(InputError, match="NaN or inf"):
        cpd(H, C, y, cv=3)


def test_too_few_rows_for_cv_raise():
    H, C, y = _ok()
    with pytest.raises(InputError, match="too few"):
        cpd(H[:9], C[:9], y[:9], cv=5)
    # exactly 2 * cv rows is enough
    assert len(cpd(H[:10], C[:10], y[:10], cv=5, probe=Ridge()).folds) == 5


@pytest.mark.parametrize("cv", [1, 0, -3, 2.5])
def test_bad_cv_raises(cv):
    H, C, y = _ok()
    with pytest.raises(InputError, match="cv"):
        cpd(H, C, y, cv=cv)


def test_constant_y_raises():
    H, C, _ = _ok()
    with pytest.raises(InputError, match="constant"):
        cpd(H, C, np.full(30, 2.5), cv=3)


def test_2d_y_raises():
    H, C, y = _ok()
    with pytest.raises(InputError, match="1-D"):
        cpd(H, C, y[:, None], cv=3)


def test_unknown_probe_raises():
    H, C, y = _ok()
    with pytest.raises(InputError, match="unknown probe 'svm'"):
        cpd(H, C, y, probe="svm", cv=3)


def test_unknown_fit_projection_raises():
    H, C, y = _ok()
    with pytest.raises(InputError, match="fit_projection"):
        cpd(H, C, y, cv=3, fit_projection="test")


# --- cpd_table -----------------------------------------------------------------------------


def test_cpd_table_rows_and_columns(small):
    d = small
    rng = np.random.default_rng(5)
    targets = {"planted": d.y, "noise": rng.normal(size=len(d.y))}
    summary, folds = cpd_table(d.H, d.C, targets, probes=("ridge", "gbt"), progress=False, cv=3, seed=0)

    assert len(summary) == 4
    assert list(zip(summary["target"], summary["probe"])) == [
        ("planted", "ridge"), ("planted", "gbt"), ("noise", "ridge"), ("noise", "gbt")]
    for col in ("r2_comp", "r2_full", "r2_geom", "r2_geom_std", "r2_geom_worst_fold", "n", "d",
                "rank_C", "fit_projection", "alpha_geom_median"):
        assert col in summary.columns
    assert summary["alpha_geom_median"].notna().tolist() == [True, False, True, False]

    assert set(folds.columns) == {"fold", "score", "r2", "target", "probe"}
    assert len(folds) == 2 * 2 * 3 * 3  # targets x probes x folds x scores
    assert set(folds["score"]) == set(SCORES)
    # the long table holds the per-fold values whose means are in the summary
    means = folds.groupby(["target", "probe", "score"])["r2"].mean()
    for _, row in summary.iterrows():
        for key in SCORES:
            assert means[(row["target"], row["probe"], key)] == pytest.approx(row[key], abs=1e-12)
    # and it matches a direct cpd call
    direct = cpd(d.H, d.C, d.y, probe="ridge", cv=3, seed=0)
    assert summary.loc[0, "r2_geom"] == direct.r2_geom
    # the planted target is far better explained than noise
    assert summary.loc[0, "r2_full"] > 0.5 > summary.loc[2, "r2_full"]


def test_cpd_table_passes_kwargs_through(small):
    d = small
    summary, _ = cpd_table(d.H, d.C, {"y": d.y}, probes=("ridge",), progress=False, cv=3,
                           fit_projection="all")
    assert summary.loc[0, "fit_projection"] == "all"
    with pytest.raises(InputError):
        cpd_table(d.H, d.C, {"y": d.y}, probes=("nope",), progress=False, cv=3)


def test_row_wise_probe_folds_in_worker_processes_give_the_same_numbers(monkeypatch):
    """MLP and GBT folds run on CPD_JOBS processes; seeded, so the result does not depend on it."""
    from cpd_core.decomposition import fold_jobs
    from cpd_core.synthetic import planted

    d = planted(n=300, comp_share=0.3, geom_share=0.4, n_features=10, seed=2)
    results = {}
    for jobs in ("1", "2"):
        monkeypatch.setenv("CPD_JOBS", jobs)
        assert fold_jobs() == int(jobs)
        results[jobs] = {p: cpd(d.H, d.C, d.y, probe=p, cv=3, seed=0, n_boot=50) for p in ("mlp", "gbt")}
    for p in ("mlp", "gbt"):
        pd.testing.assert_frame_equal(results["1"][p].folds, results["2"][p].folds)
        np.testing.assert_array_equal(results["1"][p].oof["geom"], results["2"][p].oof["geom"])
    monkeypatch.setenv("CPD_JOBS", "zero")
    with pytest.raises(InputError, match="CPD_JOBS"):
        fold_jobs()


def test_cpd_many_equals_one_cpd_per_job_and_residual_only_halves_the_fits(monkeypatch):
    """Folds of several jobs in one pool: the same numbers as a cpd() call per job (seeded folds);
    ``full=False`` leaves R²_full NaN and the residual's scores unchanged."""
    from cpd_core.decomposition import cpd_many

    monkeypatch.setenv("CPD_JOBS", "2")
    d = planted(n=300, comp_share=0.3, geom_share=0.4, n_features=10, seed=3)
    y2 = d.y[::-1].copy()
    jobs = [{"y": d.y, "probe": "gbt"}, {"y": y2, "probe": "ridge"}, {"y": y2, "probe": "mlp"},
            {"y": d.y, "probe": "gbt", "full": False}]
    many = cpd_many(jobs, H=d.H, C=d.C, cv=3, seed=1, n_boot=50)
    assert [r.probe for r in many] == ["gbt", "ridge", "mlp", "gbt"]
    for job, res in zip(jobs[:3], many):
        one = cpd(d.H, d.C, job["y"], probe=job["probe"], cv=3, seed=1, n_boot=50)
        pd.testing.assert_frame_equal(res.folds, one.folds)
        np.testing.assert_array_equal(res.oof["geom"], one.oof["geom"])
        assert res.ci == one.ci
    residual_only = many[3]
    assert np.isnan(residual_only.r2_full) and residual_only.folds["r2_full"].isna().all()
    np.testing.assert_array_equal(residual_only.oof["geom"], many[0].oof["geom"])
    assert residual_only.r2_geom == many[0].r2_geom
    with pytest.raises(InputError):
        cpd_many([{"probe": "nope"}], H=d.H, C=d.C, y=d.y)
