"""Batched extraction and pooling, with a toy featurizer whose answers are known."""

import numpy as np
import pytest
import torch

from cpd_core import InputError
from cpd_core.datasets import Dataset
from cpd_core.extract import check_elements, features, kept_rows
from cpd_core.models.base import resolve_device
from cpd_core.pooling import invariant_pool, pool_atoms

from cpd_core.models.base import Featurizer, ModelCard


class Toy(Featurizer):
    """Per-atom features [Z, x, y, z, |r|²] (block "a"), 2 Z (block "b") and r as one L=1 channel ("v")."""

    card = ModelCard("toy", family="toy", status="original", training_data="none", source="test",
                     domain="molecules", build=lambda: Toy())
    elements = (1, 6, 7, 8)

    def __init__(self):
        self.calls = 0
        self.shapes = []
        self.fail_after = None

    def options(self):
        return {"features": "Z, r, |r|^2"}

    def features(self, batch):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        self.calls += 1
        self.shapes.append((batch.n_structures, len(batch.numbers)))
        z = batch.numbers.to(batch.positions.dtype).unsqueeze(-1)
        r = batch.positions
        f = torch.cat([z, r, (r ** 2).sum(-1, keepdim=True)], dim=-1)
        return {"a": f, "b": 2 * z, "v": r.unsqueeze(1)}


def _toy_expected(numbers, positions, pooling):
    rows = []
    for z, r in zip(numbers, positions):
        per_atom = np.column_stack([z, r, (r ** 2).sum(axis=1)])
        rows.append(per_atom.mean(axis=0) if pooling == "mean" else per_atom.sum(axis=0))
    return np.array(rows)


def _molecules(sizes=(5, 1, 9, 3, 2, 9, 4, 7, 1, 6, 3), seed=0):
    rng = np.random.default_rng(seed)
    numbers = [rng.choice([1, 6, 7, 8], size=s) for s in sizes]
    positions = [rng.normal(scale=2.0, size=(s, 3)) for s in sizes]
    return numbers, positions


@pytest.fixture(autouse=True)
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CPD_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def pooled_features(model, numbers, positions, ids=None, **kwargs):
    """The extraction of plain arrays: an anonymous data set, never cached."""
    return features(model, Dataset.from_arrays(numbers, positions, ids=ids), **kwargs)


def _shards(cache):
    return sorted((cache / "features").rglob("*.npz"))


# --- pooling -------------------------------------------------------------------------------


def test_pool_atoms_mean_and_sum_by_batch_index():
    feats = torch.tensor([[1.0, 10.0], [3.0, 30.0], [2.0, -4.0], [1.0, 1.0], [2.0, 2.0], [6.0, 0.0]])
    batch = torch.tensor([0, 0, 1, 2, 2, 2])
    np.testing.assert_allclose(pool_atoms(feats, batch, 3, "mean"), [[2, 20], [2, -4], [3, 1]])
    np.testing.assert_allclose(pool_atoms(feats, batch, 3, "sum"), [[4, 40], [2, -4], [9, 3]])


def test_pool_atoms_keeps_dtype_and_trailing_dims():
    out = pool_atoms(torch.ones((4, 2, 3), dtype=torch.float64), torch.tensor([0, 1, 1, 1]), 2)
    assert out.dtype == torch.float64 and out.shape == (2, 2, 3)
    np.testing.assert_allclose(out, 1.0)


def test_pool_atoms_unknown_pooling_raises():
    with pytest.raises(InputError, match="max"):
        pool_atoms(torch.ones((1, 1)), torch.zeros(1, dtype=torch.int64), 1, "max")


def test_invariant_pool_known_answers():
    # structure 0: two atoms with vectors (3,4,0) and (-3,-4,0); structure 1: one atom (0,0,2)
    v = torch.tensor([[[3.0, 4.0, 0.0]], [[-3.0, -4.0, 0.0]], [[0.0, 0.0, 2.0]]])
    batch = torch.tensor([0, 0, 1])
    mean = invariant_pool({"x": v}, batch, 2, "mean")
    assert set(mean) == {"x@atom-norm", "x@pooled-norm"}
    np.testing.assert_allclose(mean["x@atom-norm"], [[5.0], [2.0]])
    np.testing.assert_allclose(mean["x@pooled-norm"], [[0.0], [2.0]])   # the cancellation survives
    total = invariant_pool({"x": v}, batch, 2, "sum")
    np.testing.assert_allclose(total["x@atom-norm"], [[10.0], [2.0]])
    np.testing.assert_allclose(total["x@pooled-norm"], [[0.0], [2.0]])


def test_invariant_pool_rejects_other_shapes():
    with pytest.raises(ValueError, match="expected"):
        invariant_pool({"x": torch.ones((2, 2, 2, 2))}, torch.tensor([0, 0]), 1)


# --- features of plain arrays -----------------------------------------------------------------------


@pytest.mark.parametrize("pooling", ["mean", "sum"])
def test_pooled_features_known_answer(pooling):
    numbers, positions = _molecules()
    out = pooled_features(Toy(), numbers, positions, pooling=pooling, batch_size=4, device="cpu",
                          dtype=torch.float64, progress=False)
    assert set(out) == {"a", "b", "v@atom-norm", "v@pooled-norm"}
    expected = _toy_expected(numbers, positions, pooling)
    np.testing.assert_allclose(out["a"], expected, rtol=1e-12)
    np.testing.assert_allclose(out["b"][:, 0], 2 * expected[:, 0], rtol=1e-12)
    assert out["a"].dtype == np.float64
    norms = [np.linalg.norm(r, axis=1) for r in positions]
    agg = np.mean if pooling == "mean" else np.sum
    np.testing.assert_allclose(out["v@atom-norm"][:, 0], [agg(n) for n in norms], rtol=1e-12)
    np.testing.assert_allclose(out["v@pooled-norm"][:, 0],
                               [np.linalg.norm(agg(r, axis=0)) for r in positions], rtol=1e-12)


def test_results_come_back_in_input_order_whatever_the_batch_size():
    numbers, positions = _molecules()
    runs = {bs: pooled_features(Toy(), numbers, positions, batch_size=bs, device="cpu",
                                dtype=torch.float64, progress=False)["a"]
            for bs in (1, 3, 7, 100)}
    for bs, out in runs.items():
        np.testing.assert_allclose(out, runs[1], rtol=1e-12, err_msg=f"batch_size={bs}")
    # row i belongs to molecule i (its atom count and mean Z identify it)
    np.testing.assert_allclose(runs[7][:, 0], [z.mean() for z in numbers], rtol=1e-12)


def test_batches_are_size_sorted():
    numbers, positions = _molecules(sizes=(5, 1, 3, 2))
    toy = Toy()
    pooled_features(toy, numbers, positions, batch_size=2, device="cpu", progress=False)
    # sizes sorted: 1, 2 | 3, 5 -> two batches of 3 and 8 atoms
    assert toy.shapes == [(2, 3), (2, 8)]


def test_float32_is_close_to_float64():
    numbers, positions = _molecules()
    f32 = pooled_features(Toy(), numbers, positions, device="cpu", progress=False)["a"]
    f64 = pooled_features(Toy(), numbers, positions, device="cpu", dtype=torch.float64, progress=False)["a"]
    np.testing.assert_allclose(f32, f64, rtol=1e-5)
    assert not np.array_equal(f32, f64)


def test_unsupported_element_raises_naming_the_structure():
    numbers, positions = _molecules(sizes=(3, 3, 3, 3))
    numbers[2] = np.array([6, 9, 1])  # F is not supported by the toy featurizer
    numbers[3] = np.array([17, 1, 1])  # neither is Cl
    toy = Toy()
    with pytest.raises(InputError) as err:
        pooled_features(toy, numbers, positions, device="cpu", progress=False)
    msg = str(err.value)
    assert "2 structure(s)" in msg and "toy" in msg
    assert "2 (F)" in msg and "3 (Cl)" in msg
    assert "H/C/N/O" in msg
    assert toy.calls == 0  # checked before any work


def test_unsupported_structures_can_be_skipped_and_counted():
    numbers, positions = _molecules(sizes=(3, 3, 3, 3))
    numbers[2] = np.array([6, 9, 1])
    ids = np.array([10, 11, 12, 13])
    out = pooled_features(Toy(), numbers, positions, device="cpu", progress=False, skip_unsupported=True,
                          ids=ids)
    assert out.kept.tolist() == [True, True, False, True] and out.skipped == [12]
    assert out["a"].shape[0] == 3
    keep = [0, 1, 3]
    np.testing.assert_allclose(out["a"], _toy_expected([numbers[i] for i in keep],
                                                       [positions[i] for i in keep], "mean"), rtol=1e-6)
    assert "1 skipped" in repr(out)


def test_check_elements_names_structures_by_id():
    with pytest.raises(InputError, match=r"dsgdb9nsd_7 \(F/Cl\)"):
        check_elements([np.array([1, 6]), np.array([9, 17, 1])], supported=(1, 6), model="m",
                       ids=["dsgdb9nsd_3", "dsgdb9nsd_7"])
    check_elements([np.array([1, 6])], supported=(1, 6), model="m")  # fine: no error


def test_check_elements_truncates_long_lists():
    with pytest.raises(InputError, match=r"12 structure\(s\).*\.\.\. "):
        check_elements([np.array([9])] * 12, supported=(1,), model="m")


def test_empty_input_raises():
    with pytest.raises(InputError, match="empty"):
        pooled_features(Toy(), [], [], device="cpu", progress=False)


def test_mismatched_numbers_and_positions_raise():
    numbers, positions = _molecules(sizes=(2, 3))
    with pytest.raises(InputError, match="position"):
        pooled_features(Toy(), numbers, positions[:1], device="cpu", progress=False)


def test_positions_of_the_wrong_length_raise_input_error():
    numbers, positions = _molecules(sizes=(2, 3))
    positions[1] = positions[1][:2]
    with pytest.raises(InputError, match="1"):
        pooled_features(Toy(), numbers, positions, device="cpu", progress=False)


def test_unknown_pooling_raises_before_work():
    numbers, positions = _molecules(sizes=(2, 3))
    toy = Toy()
    with pytest.raises(InputError, match="unknown pooling 'max'"):
        pooled_features(toy, numbers, positions, pooling="max", device="cpu", progress=False)
    assert toy.calls == 0


# --- devices -------------------------------------------------------------------------------


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device(None).type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_cuda_raises(device):
    with pytest.raises(InputError, match="CUDA is not available"):
        resolve_device(device)
    numbers, positions = _molecules(sizes=(2,))
    with pytest.raises(InputError, match="CUDA"):
        pooled_features(Toy(), numbers, positions, device=device, progress=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    numbers, positions = _molecules()
    cpu = pooled_features(Toy(), numbers, positions, device="cpu", dtype=torch.float64, progress=False)
    gpu = pooled_features(Toy(), numbers, positions, device="cuda", dtype=torch.float64, progress=False)
    np.testing.assert_allclose(gpu["a"], cpu["a"], rtol=1e-12)


# --- features of a named data set: the sharded cache ----------------------------------------------------


def _cached(toy, ids, numbers, positions, **kwargs):
    return features(toy, Dataset.from_arrays(numbers, positions, ids=ids, name="toyset"), device="cpu",
                    progress=False, **kwargs)


def test_cached_computes_once_per_key(tmp_cache):
    numbers, positions = _molecules()
    ids = np.arange(len(numbers)) + 1
    toy = Toy()
    first = _cached(toy, ids, numbers, positions)
    calls = toy.calls
    assert calls > 0
    second = _cached(toy, ids, numbers, positions, batch_size=2)  # batch size is not in the key
    assert toy.calls == calls
    for block in first:
        np.testing.assert_array_equal(first[block], second[block])
    assert len(_shards(tmp_cache)) == 1
    assert _shards(tmp_cache)[0].parent.name == "toy"


def test_cached_matches_uncached(tmp_cache):
    numbers, positions = _molecules()
    direct = pooled_features(Toy(), numbers, positions, device="cpu", progress=False)
    cached = _cached(Toy(), np.arange(len(numbers)), numbers, positions, shard_size=4)
    assert set(direct) == set(cached)
    for block in direct:
        np.testing.assert_array_equal(cached[block], direct[block])


def test_cached_different_subset_gets_its_own_entry(tmp_cache):
    numbers, positions = _molecules()
    toy = Toy()
    ids = np.arange(len(numbers)) + 1
    full = _cached(toy, ids, numbers, positions)
    calls = toy.calls
    part = _cached(toy, ids[:4], numbers[:4], positions[:4])
    assert toy.calls > calls  # recomputed, not served the 11-row entry
    assert part["a"].shape[0] == 4
    np.testing.assert_allclose(part["a"], full["a"][:4], rtol=1e-6)
    assert len(_shards(tmp_cache)) == 2


@pytest.mark.parametrize("change", [dict(pooling="sum"), dict(dtype=torch.float64), dict(dtype="float64")])
def test_cached_key_includes_pooling_and_dtype(tmp_cache, change):
    numbers, positions = _molecules()
    ids = np.arange(len(numbers))
    toy = Toy()
    base = _cached(toy, ids, numbers, positions)
    calls = toy.calls
    other = _cached(toy, ids, numbers, positions, **change)
    assert toy.calls > calls
    assert not np.array_equal(base["a"], other["a"])


def test_cached_key_includes_model_spec(tmp_cache):
    numbers, positions = _molecules()
    ids = np.arange(len(numbers))
    toy = Toy()
    _cached(toy, ids, numbers, positions)
    calls = toy.calls

    class Toy2(Toy):
        def options(self):
            return {"features": "changed"}

    _cached(Toy2(), ids, numbers, positions)
    _cached(toy, ids, numbers, positions)
    assert toy.calls == calls
    assert len(_shards(tmp_cache)) == 2


def test_interrupted_extraction_resumes_from_finished_shards(tmp_cache):
    numbers, positions = _molecules()  # 11 structures -> shards of 4, 4, 3
    ids = np.arange(len(numbers))
    toy = Toy()
    toy.fail_after = 2  # batch_size 4 = one call per shard: the third shard is interrupted
    with pytest.raises(KeyboardInterrupt):
        _cached(toy, ids, numbers, positions, shard_size=4, batch_size=4)
    assert len(_shards(tmp_cache)) == 2
    assert not list((tmp_cache / "features").rglob("*.tmp"))  # no half-written file left
    resumed = Toy()
    out = _cached(resumed, ids, numbers, positions, shard_size=4, batch_size=4)
    assert resumed.calls == 1  # only the missing shard
    np.testing.assert_allclose(out["a"], _toy_expected(numbers, positions, "mean"), rtol=1e-6)


def test_a_corrupt_shard_is_recomputed(tmp_cache):
    numbers, positions = _molecules()
    ids = np.arange(len(numbers))
    first = _cached(Toy(), ids, numbers, positions, shard_size=6)
    victim = _shards(tmp_cache)[0]
    victim.write_bytes(b"not a zip file")
    toy = Toy()
    again = _cached(toy, ids, numbers, positions, shard_size=6)
    assert toy.calls >= 1
    np.testing.assert_array_equal(again["a"], first["a"])


def test_load_false_returns_shard_paths(tmp_cache):
    numbers, positions = _molecules()
    paths = _cached(Toy(), np.arange(11), numbers, positions, shard_size=5, load=False)
    assert len(paths) == 3 and all(p.exists() for p in paths)


def test_skipped_structures_are_remembered_in_the_cache(tmp_cache):
    numbers, positions = _molecules(sizes=(3, 3, 3, 3))
    numbers[1] = np.array([6, 9, 1])
    out = _cached(Toy(), np.array([5, 6, 7, 8]), numbers, positions, skip_unsupported=True, shard_size=2)
    assert out.kept.tolist() == [True, False, True, True] and out.skipped == [6]
    assert out["a"].shape == (3, 5)


def test_cache_ids_must_match_structures():
    numbers, positions = _molecules(sizes=(2, 3))
    with pytest.raises(InputError, match="ids"):
        _cached(Toy(), [1], numbers, positions)


def test_skip_policy_does_not_split_the_cache(tmp_cache):
    numbers, positions = _molecules()
    ids = np.arange(len(numbers))
    toy = Toy()
    _cached(toy, ids, numbers, positions)
    calls = toy.calls
    again = _cached(toy, ids, numbers, positions, skip_unsupported=True)
    assert toy.calls == calls and again.kept.all()


def test_kept_rows_reads_the_masks_only(tmp_cache):
    numbers, positions = _molecules(sizes=(3, 3, 3, 3, 3))
    numbers[3] = np.array([6, 9, 1])
    paths = _cached(Toy(), np.arange(5), numbers, positions, shard_size=2, skip_unsupported=True, load=False)
    assert kept_rows(paths).tolist() == [True, True, True, False, True]


def test_features_takes_a_dataset_only():
    numbers, positions = _molecules(sizes=(2,))
    with pytest.raises(InputError, match="must be a cpd_core.datasets.Dataset"):
        features(Toy(), (numbers, positions), device="cpu", progress=False)


def test_load_false_needs_the_cache(tmp_cache):
    numbers, positions = _molecules(sizes=(2, 3))
    with pytest.raises(InputError, match="load=False"):
        pooled_features(Toy(), numbers, positions, device="cpu", progress=False, load=False)
    with pytest.raises(InputError, match="load=False"):
        _cached(Toy(), [0, 1], numbers, positions, load=False, cache=False)
    assert not _shards(tmp_cache)


def test_an_anonymous_dataset_is_not_cached(tmp_cache):
    numbers, positions = _molecules()
    toy = Toy()
    first = pooled_features(toy, numbers, positions, device="cpu", progress=False)
    calls = toy.calls
    again = pooled_features(toy, numbers, positions, device="cpu", progress=False)
    assert toy.calls == 2 * calls and not _shards(tmp_cache)
    np.testing.assert_array_equal(first["a"], again["a"])


def test_extraction_runs_torch_on_the_cores_it_is_given_and_restores_the_setting():
    import torch

    from cpd_core.extract import torch_threads

    before = torch.get_num_threads()
    with torch_threads(3) as n:
        assert n == 3 and torch.get_num_threads() == 3
    assert torch.get_num_threads() == before
    with pytest.raises(InputError, match="at least 1"):
        with torch_threads(0):
            pass
    assert torch.get_num_threads() == before


def test_sum_pooling_follows_from_mean_pooling_without_the_model():
    from cpd_core.extract import sum_from_mean

    numbers, positions = _molecules()
    numbers[3] = np.array([1, 9, 1])  # unsupported by Toy: skipped, so the atom counts must follow `kept`
    data = Dataset.from_arrays(numbers, positions)
    kw = dict(dtype="float64", skip_unsupported=True, progress=False)
    mean, total = features(Toy(), data, pooling="mean", **kw), features(Toy(), data, pooling="sum", **kw)
    derived = sum_from_mean(mean, data)
    assert set(derived) == set(total) == {"a", "b", "v@atom-norm", "v@pooled-norm"}
    for name in total:
        np.testing.assert_allclose(derived[name], total[name], rtol=1e-12, atol=1e-12)
    assert derived.kept.tolist() == total.kept.tolist() and derived.skipped == total.skipped == [3]
    with pytest.raises(InputError, match="extracted from"):
        sum_from_mean(mean, Dataset.from_arrays(numbers[:4], positions[:4]))
