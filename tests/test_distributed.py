"""Zarr feature stores and Dask workers (cpd_core.distributed) on a LocalCluster of this machine."""

import os
import sys

import numpy as np
import pytest

pytest.importorskip("distributed")
pytest.importorskip("zarr")

import cloudpickle  # noqa: E402

from cpd_core import InputError, cpd  # noqa: E402
from cpd_core.distributed import (_extract_shard, client_for, extract_to_zarr, open_store, probe_store,  # noqa: E402
                                  read_shard, write_store)
from cpd_core.synthetic import planted  # noqa: E402

# the killing readers below travel to the workers by value (the workers cannot import this test module)
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def client():
    c = client_for("local", n_workers=2)
    yield c
    c.close()
    c.cluster.close()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    d = planted(n=900, seed=3)
    Y = np.column_stack([d.y, np.tanh(d.y)])
    path = write_store(tmp_path_factory.mktemp("store") / "f.zarr", d.H, d.C, Y, targets=["a", "b"], shard_rows=128)
    return path, d, Y


def killing(marker, shard, inner):
    """``inner`` (a shard reader or task), except that the first call on ``shard`` kills its worker process."""
    def call(path, i, *args):
        if i == shard and not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)
        return inner(path, i, *args)
    return call


def test_store_round_trip_and_local_probe_equal_cpd(store):
    path, d, Y = store
    res = probe_store(path, oof=True)
    for t, name in enumerate(["a", "b"]):
        ref = cpd(d.H, d.C, Y[:, t])
        np.testing.assert_allclose(res[name].folds.to_numpy(), ref.folds.to_numpy(), rtol=0, atol=1e-8)
    assert read_shard(path, 7).rows.tolist() == list(range(896, 900))


def test_probe_on_workers_equals_local(store, client):
    path, _, _ = store
    local = probe_store(path)
    remote = probe_store(path, client=client)
    for name in ("a", "b"):
        np.testing.assert_allclose(remote[name].folds.to_numpy(), local[name].folds.to_numpy(), rtol=0, atol=1e-12)


def test_a_worker_killed_mid_pass_loses_no_shard(store, client, tmp_path):
    path, _, _ = store
    local = probe_store(path)["a"]
    marker = tmp_path / "killed"
    res = probe_store(path, client=client, reader=killing(str(marker), 3, read_shard))["a"]
    assert marker.exists()  # a worker did die, and the pass completed (each row tallied once)
    np.testing.assert_allclose(res.folds.to_numpy(), local.folds.to_numpy(), rtol=0, atol=1e-12)


def test_extraction_on_workers_with_a_killed_worker(client, tmp_path, monkeypatch):
    """ANI-2x AEVs of 240 QM9 molecules, 4 shards over 2 workers, one worker killed on its first shard:
    every shard is written once, and the features are byte for byte those of the single-process extraction
    with the workers' one torch thread (other thread counts sum in another order: float32 round-off)."""
    import importlib.util

    if importlib.util.find_spec("qm9pack") is None or importlib.util.find_spec("torchani") is None:
        pytest.skip("needs qm9pack and torchani")
    marker = tmp_path / "killed"
    remote = extract_to_zarr("ani2x-aev", tmp_path / "w.zarr", n=240, targets=["gap"], shard_rows=60, client=client,
                             progress=False, device="cpu", task=killing(str(marker), 2, _extract_shard))
    assert marker.exists()
    local = extract_to_zarr("ani2x-aev", tmp_path / "l.zarr", n=240, targets=["gap"], shard_rows=60,
                            progress=False, device="cpu", threads=1)  # as each worker's task: the same sums
    a, b = open_store(remote), open_store(local)
    assert a["done"][:].all() and a.attrs["block"] == b.attrs["block"]
    np.testing.assert_array_equal(a["H"][:], b["H"][:])
    np.testing.assert_array_equal(a["Y"][:], b["Y"][:])


def test_resume_skips_finished_shards(tmp_path):
    import importlib.util

    if importlib.util.find_spec("qm9pack") is None or importlib.util.find_spec("torchani") is None:
        pytest.skip("needs qm9pack and torchani")
    path = tmp_path / "r.zarr"
    extract_to_zarr("ani2x-aev", path, n=120, shard_rows=60, progress=False, device="cpu")
    calls = []
    extract_to_zarr("ani2x-aev", path, n=120, shard_rows=60, progress=False, device="cpu",
                    task=lambda *a: calls.append(a))
    assert calls == []  # every shard done: nothing recomputed
    extract_to_zarr("ani2x-aev", path, n=120, shard_rows=40, progress=False, device="cpu",
                    task=lambda *a: calls.append(a) or _extract_shard(*a))
    assert len(calls) == 3  # another request: a new store


def test_clear_errors(tmp_path, store):
    with pytest.raises(InputError, match="no feature store"):
        probe_store(tmp_path / "nothing.zarr")
    with pytest.raises(InputError, match="tcp://HOST:PORT"):
        client_for("nonsense")
    path, d, _ = store
    with pytest.raises(InputError, match="same number of rows"):
        write_store(tmp_path / "bad.zarr", d.H, d.C[:10], d.y)
    with pytest.raises(InputError, match=r"unknown QM9 target.*'mu'.*'dipole'"):
        extract_to_zarr("ani2x-aev", tmp_path / "mu.zarr", n=20, targets=("gap", "mu"), progress=False)
    assert not (tmp_path / "mu.zarr").exists()  # nothing written before the request is checked


def test_cli_probes_a_store(store, capsys):
    from cpd_core.cli import main

    path, d, Y = store
    assert main(["probe", "--store", str(path)]) == 0
    out = capsys.readouterr().out
    ref = cpd(d.H, d.C, Y[:, 0])
    assert out.split("\n")[0].split()[:4] == ["target", "r2_comp", "r2_full", "r2_geom"]
    assert f"{ref.r2_geom:.3f}" in out.split("\n")[1]
    assert main(["probe", "--store", str(path), "--probe", "mlp"]) == 2
    assert main(["probe", "--n", "10", "--scheduler", "local"]) == 2  # --scheduler needs --store
