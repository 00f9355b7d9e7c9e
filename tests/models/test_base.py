"""The model contract: AtomsBatch, irreps splitting, weights hashing, cards."""

import numpy as np
import pytest
import torch

from cpd_core.models.base import AtomsBatch, ModelCard, shared_dir, split_irreps, weights_hash


def _batch():
    rng = np.random.default_rng(0)
    sizes = (3, 1, 5)
    return AtomsBatch.from_arrays([rng.integers(1, 10, size=s) for s in sizes],
                                  [rng.normal(size=(s, 3)) for s in sizes], dtype=torch.float64)


def test_from_arrays_concatenates_in_order():
    b = _batch()
    assert b.n_structures == 3 and b.sizes.tolist() == [3, 1, 5] and b.ptr.tolist() == [0, 3, 4, 9]
    assert b.batch.tolist() == [0, 0, 0, 1, 2, 2, 2, 2, 2]
    assert b.positions.dtype == torch.float64 and b.cell is None


def test_padded_and_unpad_round_trip():
    b = _batch()
    z, r, mask = b.padded()
    assert z.shape == (3, 5) and r.shape == (3, 5, 3)
    assert mask.sum(1).tolist() == [3, 1, 5] and torch.all(z[~mask] == 0)
    torch.testing.assert_close(b.unpad(r), b.positions)
    torch.testing.assert_close(b.unpad(z), b.numbers)


def test_cells_and_ase_round_trip():
    cells = [np.eye(3) * 4, np.eye(3) * 5]
    b = AtomsBatch.from_arrays([[14, 14], [11]], [np.zeros((2, 3)), np.ones((1, 3))], cells=cells)
    atoms = b.to_ase()
    assert [len(a) for a in atoms] == [2, 1] and atoms[1].cell[0, 0] == 5 and all(atoms[0].pbc)
    molecules = _batch().to_ase()
    assert not any(molecules[0].pbc) and molecules[2].get_atomic_numbers().tolist() == _batch().numbers[4:].tolist()


def test_split_irreps_follows_e3nn_layout():
    irreps = [(2, 0), (2, 1), (1, 0), (1, 2)]  # 2x0e + 2x1o + 1x0o + 1x2e: 2 + 6 + 1 + 5 = 14 columns
    with pytest.raises(ValueError, match="14"):
        split_irreps(torch.zeros((3, 13)), irreps, "l")
    x = torch.arange(3 * 14.).reshape(3, 14)
    out = split_irreps(x, irreps, "layer2")
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "layer2/L0": (3, 3), "layer2/L1": (3, 2, 3), "layer2/L2": (3, 1, 5)}
    # the two 0e columns, then the 0o column after the vectors
    assert out["layer2/L0"][0].tolist() == [0.0, 1.0, 8.0]
    assert out["layer2/L1"][0, 1].tolist() == [5.0, 6.0, 7.0]


def test_weights_hash_sees_every_weight():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1))
    h = weights_hash(m)
    with torch.no_grad():
        m[1].bias += 1e-6
    assert weights_hash(m) != h


def test_model_card_rejects_unknown_status():
    with pytest.raises(ValueError, match="status"):
        ModelCard("x", family="f", status="borrowed", training_data="", source="", domain="", build=None)


def test_shared_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CPD_SHARED_DIR", str(tmp_path))
    assert shared_dir() == tmp_path
    monkeypatch.delenv("CPD_SHARED_DIR")
    assert shared_dir().name == "shared"
