"""The content-keyed, atomically written array cache."""


import numpy as np
import pytest

from cpd_core import cache
from cpd_core.cache import cache_dir, cached_arrays, content_key, save_npz_atomic


@pytest.fixture(autouse=True)
def tmp_cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("CPD_CACHE_DIR", str(root))
    return root


# --- cache_dir -----------------------------------------------------------------------------


def test_cache_dir_follows_the_environment_and_is_created(tmp_cache):
    assert not tmp_cache.exists()
    assert cache_dir() == tmp_cache
    assert tmp_cache.is_dir()


def test_cache_dir_default_is_under_home(monkeypatch, tmp_path):
    monkeypatch.delenv("CPD_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "cpd_core"


# --- content_key ---------------------------------------------------------------------------


def test_key_is_a_short_hex_string():
    key = content_key(model="m")
    assert len(key) == 20 and int(key, 16) >= 0


def test_key_stable_under_keyword_and_nested_dict_order():
    a = content_key(model="aev", spec={"eta": 19.7, "shifts": [0.8, 1.1]}, rows=np.arange(5))
    b = content_key(rows=np.arange(5), spec={"shifts": [0.8, 1.1], "eta": 19.7}, model="aev")
    assert a == b


def test_key_is_deterministic_across_calls_with_equal_arrays():
    assert content_key(x=np.arange(10)) == content_key(x=np.arange(10).copy())
    # a non-contiguous view hashes like its contiguous copy
    base = np.arange(20).reshape(4, 5)
    assert content_key(x=base[:, ::2]) == content_key(x=np.ascontiguousarray(base[:, ::2]))


def test_key_sensitive_to_array_content_dtype_and_shape():
    x = np.arange(12, dtype=np.int64)
    y = x.copy()
    y[7] = -1
    keys = {
        content_key(ids=x),
        content_key(ids=y),
        content_key(ids=x.astype(np.int32)),
        content_key(ids=x.reshape(3, 4)),
        content_key(ids=x.astype(np.float64)),
    }
    assert len(keys) == 5


def test_key_sensitive_to_every_part():
    base = dict(model="aev", dataset="qm9", pooling="mean", layer=2)
    key = content_key(**base)
    for name, other in [("model", "mace"), ("dataset", "md17"), ("pooling", "sum"), ("layer", 3)]:
        assert content_key(**{**base, name: other}) != key
    assert content_key(**base, extra=None) != key


def test_numpy_scalars_key_like_python_scalars():
    assert content_key(n=np.int64(5), x=np.float32(0.5)) == content_key(n=5, x=0.5)


def test_key_depends_on_cache_version(monkeypatch):
    key = content_key(model="m")
    monkeypatch.setattr(cache, "CACHE_VERSION", "999")
    assert content_key(model="m") != key


# --- save_npz_atomic -----------------------------------------------------------------------


def test_save_and_load_round_trip(tmp_path):
    path = tmp_path / "sub" / "x.npz"
    save_npz_atomic(path, a=np.arange(3.0), b=np.eye(2, dtype=np.int8))
    with np.load(path) as data:
        np.testing.assert_array_equal(data["a"], np.arange(3.0))
        assert data["b"].dtype == np.int8
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.npz"]


class Unsaveable:
    """An 'array' that fails when numpy tries to convert it."""

    def __array__(self, *args, **kwargs):
        raise RuntimeError("disk full (simulated)")


def test_failed_save_leaves_no_temp_file_and_no_target(tmp_path):
    path = tmp_path / "x.npz"
    with pytest.raises(RuntimeError, match="simulated"):
        # the first array is written to the temporary file before the second fails
        save_npz_atomic(path, big=np.zeros(100_000), bad=Unsaveable())
    assert list(tmp_path.iterdir()) == []


def test_failed_save_keeps_the_previous_file_intact(tmp_path):
    path = tmp_path / "x.npz"
    save_npz_atomic(path, a=np.arange(5))
    before = path.read_bytes()
    with pytest.raises(RuntimeError):
        save_npz_atomic(path, a=np.zeros(100_000), bad=Unsaveable())
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["x.npz"]


def test_interrupt_during_save_leaves_nothing(tmp_path, monkeypatch):
    # KeyboardInterrupt is a BaseException: it must be cleaned up too.
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_npz_atomic(tmp_path / "x.npz", a=np.arange(3))
    assert list(tmp_path.iterdir()) == []


# --- cached_arrays -------------------------------------------------------------------------


class Counter:
    def __init__(self, value):
        self.calls = 0
        self.value = value

    def __call__(self):
        self.calls += 1
        return {"x": self.value, "n": np.array(self.calls)}


def test_computes_once_then_loads(tmp_cache):
    compute = Counter(np.linspace(0, 1, 7))
    first = cached_arrays("ns", "k1", compute)
    second = cached_arrays("ns", "k1", compute)
    assert compute.calls == 1
    np.testing.assert_array_equal(second["x"], np.linspace(0, 1, 7))
    assert int(second["n"]) == 1
    assert set(first) == set(second) == {"x", "n"}
    assert (tmp_cache / "ns" / "k1.npz").is_file()


def test_different_keys_and_namespaces_are_different_entries(tmp_cache):
    compute = Counter(np.arange(3))
    cached_arrays("ns", "k1", compute)
    cached_arrays("ns", "k2", compute)
    cached_arrays("other", "k1", compute)
    assert compute.calls == 3
    assert sorted(p.relative_to(tmp_cache).as_posix() for p in tmp_cache.rglob("*.npz")) == [
        "ns/k1.npz", "ns/k2.npz", "other/k1.npz"]


def test_failed_compute_stores_nothing(tmp_cache):
    def boom():
        raise RuntimeError("model crashed")

    with pytest.raises(RuntimeError):
        cached_arrays("ns", "k", boom)
    compute = Counter(np.arange(2))
    cached_arrays("ns", "k", compute)
    assert compute.calls == 1


def _corrupt(path, how):
    good = path.read_bytes()
    path.write_bytes({"garbage": b"not an npz file at all" * 10,
                      "truncated": good[: len(good) // 2],
                      "empty": b""}[how])


def test_recomputes_when_the_file_is_garbage(tmp_cache):
    compute = Counter(np.arange(4.0))
    cached_arrays("ns", "k", compute)
    _corrupt(tmp_cache / "ns" / "k.npz", "garbage")
    out = cached_arrays("ns", "k", compute)
    assert compute.calls == 2
    assert int(out["n"]) == 2
    # and the repaired entry is served from then on
    assert int(cached_arrays("ns", "k", compute)["n"]) == 2 and compute.calls == 2


@pytest.mark.parametrize("how", ["truncated", "empty"])
def test_recomputes_when_the_file_is_truncated_or_empty(tmp_cache, how):
    compute = Counter(np.arange(1000.0))
    cached_arrays("ns", "k", compute)
    _corrupt(tmp_cache / "ns" / "k.npz", how)
    out = cached_arrays("ns", "k", compute)
    assert compute.calls == 2
    np.testing.assert_array_equal(out["x"], np.arange(1000.0))


def test_cached_arrays_refuse_pickled_objects(tmp_cache):
    # object arrays would need pickle on load; the cache loads with allow_pickle=False, so a
    # poisoned entry is treated as corrupt and recomputed rather than unpickled
    path = tmp_cache / "ns" / "k.npz"
    save_npz_atomic(path, x=np.array([{"evil": 1}], dtype=object))
    compute = Counter(np.arange(3))
    out = cached_arrays("ns", "k", compute)
    assert compute.calls == 1
    np.testing.assert_array_equal(out["x"], np.arange(3))
