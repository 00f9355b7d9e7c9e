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


def test_nonlinear_probe_on_the_residual_only():
    blocks, C, y, rng = _noise_blocks(n=200, n_blocks=2, seed=6)
    blocks["signal"] = np.column_stack([np.tanh(y) + 0.1 * rng.normal(size=len(y)), rng.normal(size=(len(y), 3))])
    choice = best_block(blocks, C, y, cv=3, seed=0)
    both, geom_only = choice.probe("gbt"), choice.probe("gbt", full=False)
    assert geom_only.r2_geom == both.r2_geom and geom_only.ci["r2_geom"] == both.ci["r2_geom"]
    assert np.isnan(geom_only.r2_full) and all(np.isnan(geom_only.ci["r2_full"]))
    assert np.isfinite(both.r2_full)
    assert np.isnan(geom_only.summary()["r2_full_lo"])


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


def test_one_scan_of_several_targets_equals_a_choice_per_target():
    """scan_blocks: the nested choice per target, and a choice among a subset of blocks, equal best_block run
    separately on that target and that subset (same folds: scanning once only shares the work)."""
    from cpd_core import scan_blocks

    blocks, C, y, rng = _noise_blocks(n=240, n_blocks=4, d=8, seed=9)
    blocks["signal"] = np.column_stack([y + rng.normal(size=len(y)), rng.normal(size=(len(y), 3))])
    ys = {"y": y, "mass": C[:, 0] * 12.0 + C[:, 1], "noise": rng.normal(size=len(y))}
    scan = scan_blocks(blocks, C, ys, cv=4, seed=2)
    for target, t in ys.items():
        for among in (None, ["b0", "b2", "signal"], ["b1", "b3"]):
            subset = blocks if among is None else {b: blocks[b] for b in among}
            got, ref = scan.choose(target, among=among), best_block(subset, C, t, cv=4, seed=2)
            assert got.choices["block"].tolist() == ref.choices["block"].tolist()
            assert got.r2_geom == pytest.approx(ref.r2_geom, abs=1e-10)
            assert got.result.ci["r2_geom"] == pytest.approx(ref.result.ci["r2_geom"], abs=1e-10)
            assert got.naive_block == ref.naive_block and list(got.scan.index) == list(subset)
    assert scan.choose("y").block == "signal"
    with pytest.raises(InputError, match="name the target"):
        scan.choose()
    with pytest.raises(InputError, match="not scanned"):
        scan.choose("dipole")
    with pytest.raises(InputError, match="none of the blocks"):
        scan.choose("y", among=["nope"])
    with pytest.raises(InputError, match="ys is empty"):
        scan_blocks(blocks, C, {})


def test_blocks_scanned_in_worker_processes_give_the_same_choice(monkeypatch):
    import cpd_core.selection as selection
    from cpd_core import scan_blocks

    blocks, C, y, rng = _noise_blocks(n=200, n_blocks=3, d=6, seed=8)
    ys = {"y": y, "other": rng.normal(size=len(y))}
    monkeypatch.setenv("CPD_JOBS", "1")
    serial = scan_blocks(blocks, C, ys, cv=4, seed=0)
    monkeypatch.setenv("CPD_JOBS", "2")
    monkeypatch.setattr(selection, "PARALLEL_MIN_VALUES", 0)
    parallel = scan_blocks(blocks, C, ys, cv=4, seed=0)
    for t in ys:
        np.testing.assert_array_equal(serial.inner[t], parallel.inner[t])
        for name in blocks:
            for a, b in zip(serial.outer[t][name], parallel.outer[t][name]):
                np.testing.assert_array_equal(a, b)


def _scans(cache):
    return sorted((cache / "scans").glob("*.npz")) if (cache / "scans").exists() else []


def _assert_same_scan(a, b, targets, names):
    for t in targets:
        np.testing.assert_array_equal(a.inner[t], b.inner[t])
        for name in names:
            for x, z in zip(a.outer[t][name], b.outer[t][name]):
                np.testing.assert_array_equal(x, z)


def test_a_cached_scan_is_read_back_and_equals_the_computed_one(tmp_path, monkeypatch):
    import cpd_core.selection as selection
    from cpd_core import scan_blocks

    monkeypatch.setenv("CPD_CACHE_DIR", str(tmp_path))
    blocks, C, y, rng = _noise_blocks(n=200, n_blocks=3, d=6, seed=4)
    ys = {"y": y, "other": rng.normal(size=len(y))}
    plain = scan_blocks(blocks, C, ys, cv=4, seed=1)
    assert _scans(tmp_path) == [], "cache=False writes nothing"
    first = scan_blocks(blocks, C, ys, cv=4, seed=1, cache=True)
    assert len(_scans(tmp_path)) == len(blocks) * len(ys)
    _assert_same_scan(first, plain, ys, blocks)

    scanned = []
    real = selection._scan_block
    monkeypatch.setattr(selection, "_scan_block", lambda *call: scanned.append(list(call[2])) or real(*call))
    again = scan_blocks(blocks, C, ys, cv=4, seed=1, cache=True)
    assert scanned == [], "every (block, target) came from the cache"
    _assert_same_scan(again, plain, ys, blocks)
    assert again.choose("y").r2_geom == plain.choose("y").r2_geom

    # a new target is the only thing computed; the cached one is read
    more = {**ys, "third": rng.normal(size=len(y))}
    scan_blocks(blocks, C, more, cv=4, seed=1, cache=True)
    assert scanned == [["third"]] * len(blocks)


def test_what_changes_a_scan_changes_its_key(tmp_path, monkeypatch):
    import cpd_core.selection as selection
    from cpd_core import scan_blocks

    monkeypatch.setenv("CPD_CACHE_DIR", str(tmp_path))
    blocks, C, y, rng = _noise_blocks(n=160, n_blocks=2, d=5, seed=5)
    scan_blocks(blocks, C, {"y": y}, cv=4, seed=0, cache=True)
    n = len(_scans(tmp_path))
    scan_blocks(blocks, C, {"y": y}, cv=4, seed=3, cache=True)            # other folds
    scan_blocks(blocks, C, {"y": y + 1e-9}, cv=4, seed=0, cache=True)     # another target
    scan_blocks({"b0": blocks["b0"] * 2}, C, {"y": y}, cv=4, seed=0, cache=True)  # another block
    scan_blocks(blocks, C, {"y": y}, cv=4, seed=0, standardize=False, cache=True)
    assert len(_scans(tmp_path)) == n + 2 + 2 + 1 + 2
    monkeypatch.setattr(selection, "_code_version", lambda: "edited")   # other code: nothing is reused
    scan_blocks(blocks, C, {"y": y}, cv=4, seed=0, cache=True)
    assert len(_scans(tmp_path)) == n + 2 + 2 + 1 + 2 + 2


def test_a_target_read_from_the_cache_matches_one_scanned_first(tmp_path, monkeypatch):
    """A target scanned second in a block shares the first one's decompositions (RidgeFolds.retarget); read
    back on its own it agrees with a scan of it alone to round-off."""
    from cpd_core import scan_blocks

    monkeypatch.setenv("CPD_CACHE_DIR", str(tmp_path))
    blocks, C, y, rng = _noise_blocks(n=200, n_blocks=2, d=6, seed=6)
    other = rng.normal(size=len(y)) + blocks["b1"][:, 0]
    scan_blocks(blocks, C, {"y": y, "other": other}, cv=4, seed=0, cache=True)
    cached = scan_blocks(blocks, C, {"other": other}, cv=4, seed=0, cache=True)
    alone = scan_blocks(blocks, C, {"other": other}, cv=4, seed=0)
    np.testing.assert_allclose(cached.inner["other"], alone.inner["other"], rtol=1e-9, atol=1e-12)
    assert cached.choose("other").choices["block"].tolist() == alone.choose("other").choices["block"].tolist()
    assert cached.choose("other").r2_geom == pytest.approx(alone.choose("other").r2_geom, abs=1e-10)


def test_a_broken_cache_file_is_recomputed(tmp_path, monkeypatch):
    from cpd_core import scan_blocks

    monkeypatch.setenv("CPD_CACHE_DIR", str(tmp_path))
    blocks, C, y, _ = _noise_blocks(n=160, n_blocks=2, d=5, seed=7)
    ref = scan_blocks(blocks, C, {"y": y}, cv=4, seed=0, cache=True)
    for path in _scans(tmp_path):
        path.write_bytes(b"not a zip")
    again = scan_blocks(blocks, C, {"y": y}, cv=4, seed=0, cache=True)
    _assert_same_scan(again, ref, ["y"], blocks)
    assert len(_scans(tmp_path)) == 2


def test_the_scan_cache_key_covers_every_module_a_scan_imports():
    """The code hash of the scan cache (selection.SCAN_MODULES) must follow every cpd_core import of those
    modules, transitively: a module left out could change a scan's numbers without invalidating the cache."""
    import ast
    from pathlib import Path

    from cpd_core import selection

    root = Path(selection.__file__).resolve().parent
    todo, seen = ["selection.py"], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for node in ast.walk(ast.parse((root / name).read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cpd_core."):
                parts = node.module.split(".")
                if len(parts) == 2 and (root / f"{parts[1]}.py").exists():
                    todo.append(f"{parts[1]}.py")
    assert seen <= set(selection.SCAN_MODULES), sorted(seen - set(selection.SCAN_MODULES))
