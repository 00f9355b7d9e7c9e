"""The seeded split, the target normalisation and batch gathering of cpd_core.training.data."""

import numpy as np
import pytest
import torch

from cpd_core.datasets import qm9
from cpd_core.errors import InputError
from cpd_core.training.data import MAX_Z, Normalisation, QM9Tensors, split_indices


def test_split_is_seeded_disjoint_and_complete():
    a, b = split_indices(1000, seed=3, sizes=(700, 100)), split_indices(1000, seed=3, sizes=(700, 100))
    for part in ("train", "val", "test"):
        np.testing.assert_array_equal(a[part], b[part])
    assert [len(a[p]) for p in ("train", "val", "test")] == [700, 100, 200]
    assert np.array_equal(np.sort(np.concatenate([a["train"], a["val"], a["test"]])), np.arange(1000))
    other = split_indices(1000, seed=4, sizes=(700, 100))
    assert not np.array_equal(a["test"], other["test"])


def test_full_split_has_the_published_sizes():
    parts = split_indices()
    assert [len(parts[p]) for p in ("train", "val", "test")] == [110_000, 10_000, 10_831]


def test_split_without_test_set_is_refused():
    with pytest.raises(InputError, match="test set"):
        split_indices(100, sizes=(90, 10))


def test_energy_normalisation_recovers_atom_references():
    rng = np.random.default_rng(0)
    counts = np.zeros((50, MAX_Z))
    counts[:, [1, 6, 7, 8]] = rng.integers(0, 9, size=(50, 4))
    ref = np.zeros(MAX_Z)
    ref[[1, 6, 7, 8]] = [-13.6, -1029.8, -1485.3, -2042.6]
    noise = rng.normal(scale=0.3, size=50)
    norm = Normalisation.fit("U0", counts @ ref + noise, counts)
    assert norm.pooling == "sum" and norm.offset == 0.0
    np.testing.assert_allclose(np.array(norm.atomref)[[1, 6, 7, 8]], ref[[1, 6, 7, 8]], atol=0.2)
    assert norm.atomref[9] == 0.0  # fluorine absent: no reference
    assert 0.15 < norm.scale < 0.45  # the spread left after the references, not that of U0


def test_gap_normalisation_is_mean_and_std():
    y = np.array([5.0, 7.0, 9.0])
    norm = Normalisation.fit("gap", y, np.ones((3, MAX_Z)))
    assert (norm.pooling, norm.offset, norm.scale, sum(norm.atomref)) == ("mean", 7.0, pytest.approx(np.std(y)), 0.0)


def _arrays():
    return {"index": np.array([1, 2, 3]), "n_atoms": np.array([1, 3, 2]), "z": np.array([6, 8, 1, 1, 7, 1]),
            "xyz": np.arange(18.0).reshape(6, 3), "target_gap": np.array([1.0, 2.0, 3.0])}


def test_batches_gather_the_right_atoms():
    data = QM9Tensors("gap", "cpu", _arrays())
    numbers, positions, batch, y = data.batch(torch.tensor([2, 0]))
    assert numbers.tolist() == [7, 1, 6] and batch.tolist() == [0, 0, 1] and y.tolist() == [3.0, 1.0]
    np.testing.assert_array_equal(positions.numpy(), np.arange(18.0).reshape(6, 3)[[4, 5, 0]])
    counts = data.counts(np.array([1, 2]))
    assert counts[0, 8] == 1 and counts[0, 1] == 2 and counts[1, 7] == 1 and counts.sum() == 5


def test_missing_targets_are_refused():
    arrays = _arrays()
    arrays["target_gap"] = np.array([1.0, np.nan, 3.0])
    with pytest.raises(InputError, match="missing"):
        QM9Tensors("gap", "cpu", arrays)


def test_packed_arrays_stand_in_for_qm9pack(tmp_path, monkeypatch):
    monkeypatch.delenv(qm9.PACKED_ENV, raising=False)
    full = qm9.flat_arrays()
    path = qm9.pack_arrays(tmp_path / "qm9.npz", targets=["gap"])
    monkeypatch.setenv(qm9.PACKED_ENV, str(path))
    packed = qm9.flat_arrays()
    np.testing.assert_array_equal(packed["z"], full["z"])
    np.testing.assert_array_equal(packed["n_atoms"], full["n_atoms"])
    np.testing.assert_allclose(packed["xyz"], full["xyz"], atol=1e-5)
    np.testing.assert_array_equal(packed["target_gap"], full["target_gap"])
    assert np.isnan(packed["target_U0"]).all()


def test_probe_rows_are_held_out_seeded_and_in_qm9_order():
    from cpd_core.training.data import probe_rows

    parts = split_indices()
    rows = probe_rows(n=500)
    assert len(rows) == 500 and len(np.unique(rows)) == 500 and np.all(np.diff(rows) > 0)
    assert np.isin(rows, parts["test"]).all()
    assert not np.isin(rows, parts["train"]).any() and not np.isin(rows, parts["val"]).any()
    np.testing.assert_array_equal(rows, probe_rows(n=500, seed=0))
    assert len(np.setdiff1d(rows, probe_rows(n=500, seed=1))) > 400
    np.testing.assert_array_equal(probe_rows(), np.sort(parts["test"]))
    assert np.isin(probe_rows(50, split="val"), parts["val"]).all()
    other = probe_rows(split_seed=1)
    assert np.isin(other, split_indices(seed=1)["test"]).all() and not np.array_equal(other, probe_rows())


@pytest.mark.parametrize("kwargs, message", [({"n": 10_832}, "10831"), ({"n": 0}, "between"),
                                             ({"split": "holdout"}, "split must be")])
def test_probe_rows_refuses_bad_arguments(kwargs, message):
    from cpd_core.training.data import probe_rows

    with pytest.raises(InputError, match=message):
        probe_rows(**kwargs)


def test_assert_held_out_names_train_and_val_rows():
    from cpd_core.training.data import assert_held_out, probe_rows

    parts = split_indices()
    assert_held_out(probe_rows(100))
    train_row, val_row = int(parts["train"][5]), int(parts["val"][0])
    with pytest.raises(InputError, match=rf"train rows \[{train_row}\]"):
        assert_held_out([*probe_rows(3), train_row])
    with pytest.raises(InputError, match=rf"2 of 3 rows.*train rows \[{train_row}\]; val rows \[{val_row}\]"):
        assert_held_out([train_row, int(probe_rows(1)[0]), val_row])
    with pytest.raises(InputError, match="split seed 1"):
        assert_held_out(probe_rows(10), split_seed=1)
