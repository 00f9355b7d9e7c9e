"""Streaming CPD (cpd_core.streaming) equals the in-memory ridge CPD, whatever the shards."""

import numpy as np
import pytest

from cpd_core import InputError, cpd
from cpd_core.decomposition import fold_labels
from cpd_core.streaming import FoldMap, Shard, shards_of, stream_cpd
from cpd_core.synthetic import planted

SCORES = ["r2_full", "r2_comp", "r2_geom", "alpha_full", "alpha_geom"]


def assert_same(streamed, ref, curve_from=1e-4):
    """Chosen penalties identical, fold scores and held-out predictions to 1e-8 (the issue's bar); so is the
    validation curve from a penalty of 1e-4 up (below, on the near-singular spectra of these test blocks, both
    routes are limited by round-off, not by each other)."""
    np.testing.assert_array_equal(streamed.folds[["alpha_full", "alpha_geom"]], ref.folds[["alpha_full", "alpha_geom"]])
    np.testing.assert_allclose(streamed.folds[SCORES], ref.folds[SCORES], rtol=0, atol=1e-8)
    for key in ("r2_full", "r2_comp", "r2_geom"):
        assert getattr(streamed, key) == pytest.approx(getattr(ref, key), abs=1e-8)
    cols = ["r2_full", "r2_geom"]
    big = ref.curve["alpha"] >= curve_from
    np.testing.assert_allclose(streamed.curve.loc[big, cols], ref.curve.loc[big, cols], rtol=0, atol=1e-8)
    assert streamed.composition_rank == ref.composition_rank and streamed.n_samples == ref.n_samples
    if streamed.oof:
        for key in ("comp", "full", "geom"):
            np.testing.assert_allclose(streamed.oof[key], ref.oof[key], rtol=0, atol=1e-8 * np.abs(ref.y).max())
        np.testing.assert_array_equal(streamed.fold_of, ref.fold_of)


def shuffled_shards(H, C, Y, n_shards, seed):
    """The rows in a random order, cut into uneven shards."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(H))
    cuts = np.sort(rng.choice(np.arange(1, len(H)), n_shards - 1, replace=False))
    Y = Y[:, None] if Y.ndim == 1 else Y
    return [Shard(idx, H[idx], C[idx], Y[idx]) for idx in np.split(order, cuts)]


@pytest.mark.parametrize("size", [37, 600])
def test_equals_in_memory_on_planted_data(size):
    d = planted(n=600, seed=0)
    Y = np.column_stack([d.y, np.sin(d.y) + 0.3 * np.random.default_rng(1).normal(size=600)])
    res = stream_cpd(shards_of(d.H, d.C, Y, size=size), n=600, targets=["a", "b"], oof=True)
    for t, name in enumerate(["a", "b"]):
        assert_same(res[name], cpd(d.H, d.C, Y[:, t]))
    ref = cpd(d.H, d.C, Y[:, 0])
    assert res["a"].ci["r2_geom"] == pytest.approx(ref.ci["r2_geom"], abs=1e-8)


def test_order_and_partition_of_the_rows_do_not_matter():
    d = planted(n=500, seed=4)
    ref = cpd(d.H, d.C, d.y, cv=4, seed=2)
    for seed in range(3):
        res = stream_cpd(shuffled_shards(d.H, d.C, d.y, 7, seed), n=500, cv=4, seed=2, oof=True)["y0"]
        assert_same(res, ref)


def hard_case(n=400, seed=5):
    """Rare-element, one-molecule, constant, inside-span and large-offset columns; fractions composition
    (rank-deficient with the intercept); an element present in one fold only."""
    rng = np.random.default_rng(seed)
    fold_of = fold_labels(n, 5, seed=0)
    counts = rng.integers(0, 6, size=(n, 3)).astype(float)
    rare = ((fold_of == 1) & (rng.random(n) < 0.2)).astype(float)
    counts = np.column_stack([counts, rare])
    frac = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    C = np.column_stack([counts, frac, np.ones(n)])
    H = rng.normal(size=(n, 30))
    H[:, 0] = counts @ [1.0, 2.0, -1.0, 0.5]                     # inside span(C)
    H[:, 1] = 7.0                                                # constant
    H[:, 2] = np.where(rare > 0, 5 + rng.random(n), 0.0)         # switched on by the rare element
    H[:, 3] = 0.0
    H[rng.choice(n, 3, replace=False), 3] = 40.0                 # three high-leverage molecules
    H[:, 4] = 1e5 + rng.normal(size=n)                           # large offset
    y = H[:, 5] + counts[:, 0] + 2 * rare + H[:, 4] - 1e5 + 0.3 * rng.normal(size=n)
    return H, C, y


@pytest.mark.parametrize("options", [{}, {"clip": False}, {"standardize": False}, {"select": "gcv"},
                                     {"alphas": [0.1, 10.0]}, {"alphas": 3.0}, {"cv": 3, "seed": 7}])
def test_hard_columns_and_options(options):
    H, C, y = hard_case()
    ref = cpd(H, C, y, **options)
    res = stream_cpd(shuffled_shards(H, C, y, 5, 0), n=len(y), oof=True, **options)["y0"]
    # unstandardised raw features with a 1e5 offset: at small penalties both routes are 1e-6 from
    # scikit-learn's answer (round-off of the Gram route), so the curve is compared from a penalty of 1 up
    assert_same(res, ref, curve_from=1.0 if options.get("standardize") is False else 1e-4)


def test_real_qm9_features(tmp_path, monkeypatch):
    """ANI-2x AEVs of 300 QM9 molecules (1,008 columns, rare-element and constant ones) and the gap."""
    import importlib.util

    if importlib.util.find_spec("qm9pack") is None or importlib.util.find_spec("torchani") is None:
        pytest.skip("needs qm9pack and torchani")
    from cpd_core.datasets.qm9 import load_qm9
    from cpd_core.extract import features
    from cpd_core.models import ANI2xAEV

    monkeypatch.setenv("CPD_CACHE_DIR", str(tmp_path))
    qm9 = load_qm9(n=1200, seed=1)
    H = features(ANI2xAEV(), qm9, device="cpu", progress=False)["aev"].astype(np.float64)
    C, Y = qm9.composition(), qm9.targets[["gap", "dipole"]].to_numpy()
    res = stream_cpd(shards_of(H, C, Y, size=250), n=len(qm9), targets=["gap", "dipole"], oof=True)
    for t, name in enumerate(["gap", "dipole"]):  # below a penalty of 1e-2 the AEV's spectrum is round-off limited
        assert_same(res[name], cpd(H, C, Y[:, t]), curve_from=1e-2)


def test_hash_folds_need_no_labels_and_are_a_partition():
    d = planted(n=400, seed=1)
    fm = FoldMap(400, cv=5, seed=3, how="hash")
    assert fm._labels is None
    labels = fm(np.arange(400))
    assert set(labels) == set(range(5)) and np.all(labels == fm(np.arange(400)))  # deterministic
    res = stream_cpd(shards_of(d.H, d.C, d.y, size=64), n=400, folds="hash", seed=3, oof=True)["y0"]
    np.testing.assert_array_equal(res.fold_of, labels)
    assert res.r2_geom > 0.2 and res.folds.shape[0] == 5


def test_a_lost_or_repeated_shard_is_an_error():
    d = planted(n=300, seed=2)
    shards = shards_of(d.H, d.C, d.y, size=50)
    with pytest.raises(InputError, match="exactly once"):
        stream_cpd(shards[:-1], n=300)
    with pytest.raises(InputError, match="exactly once"):
        stream_cpd(shards + shards[-1:], n=300)


def test_every_pass_reads_the_shards_afresh():
    d = planted(n=300, seed=2)
    reads = []

    def source():
        reads.append(1)
        return iter(shards_of(d.H, d.C, d.y, size=100))

    stream_cpd(source, n=300)
    assert len(reads) == 4  # the pilot's first shard, then three passes
    with pytest.raises(InputError, match="read only once"):
        stream_cpd(iter(shards_of(d.H, d.C, d.y, size=100)), n=300)


def test_bad_input_names_the_shard():
    d = planted(n=200, seed=2)
    shards = shards_of(d.H, d.C, d.y, size=50)
    H = shards[2].H.copy()
    H[3, 1] = np.nan
    bad = shards[:2] + [shards[2]._replace(H=H)] + shards[3:]
    with pytest.raises(InputError, match=r"rows \[100\]…\[149\]: H contains NaN or inf at rows \[103\]"):
        stream_cpd(bad, n=200)
    narrow = shards[:3] + [shards[3]._replace(H=shards[3].H[:, :2])]
    with pytest.raises(InputError, match="features"):
        stream_cpd(narrow, n=200)
    with pytest.raises(InputError, match="0 … 99"):
        stream_cpd(shards, n=100)
    with pytest.raises(InputError, match="leave-one-out"):
        stream_cpd(shards, n=200, select="loo")
    with pytest.raises(InputError, match="kernel form needs the rows"):
        wide = planted(n=60, n_features=80, seed=0)
        stream_cpd(shards_of(wide.H, wide.C, wide.y, size=20), n=60)
    with pytest.raises(InputError, match="constant"):
        stream_cpd([s._replace(Y=np.ones((len(s.rows), 1))) for s in shards], n=200)


def test_without_oof_there_are_scores_but_no_intervals():
    d = planted(n=300, seed=2)
    res = stream_cpd(shards_of(d.H, d.C, d.y, size=100), n=300)["y0"]
    assert_same(res, cpd(d.H, d.C, d.y))
    with pytest.raises(InputError, match="out-of-fold"):
        res.ci
