"""The training protocol end to end on a few synthetic molecules: it learns, it checkpoints, it reloads."""

import json

import numpy as np
import pytest
import torch

from cpd_core.cli import main
from cpd_core.errors import InputError
from cpd_core.models.trained import CHECKPOINT_FORMAT, load_checkpoint
from cpd_core.training import TrainConfig, train
from cpd_core.training.data import Normalisation, QM9Tensors, split_indices
from cpd_core.training.trainer import Regressor, _small_split, evaluate, learning_rate


class Ones(torch.nn.Module):
    def forward(self, numbers, positions, batch):
        return torch.ones(len(numbers), dtype=positions.dtype), {}


def test_regressor_pools_scales_and_adds_references():
    numbers, batch = torch.tensor([6, 1, 1, 8]), torch.tensor([0, 0, 0, 1])
    positions = torch.zeros(4, 3)
    ref = [0.0] * 10
    ref[1], ref[6], ref[8] = -0.5, -38.0, -75.0
    energy = Regressor(Ones(), Normalisation("sum", 2.0, 0.0, ref))(numbers, positions, batch, 2)
    assert energy.tolist() == [3 * 2.0 - 38.0 - 1.0, 2.0 - 75.0]
    gap = Regressor(Ones(), Normalisation("mean", 2.0, 5.0))(numbers, positions, batch, 2)
    assert gap.dtype == torch.float64 and gap.tolist() == [7.0, 7.0]


def test_learning_rate_warms_up_then_decays():
    lrs = [learning_rate(p, 1e-3) for p in np.linspace(0, 1, 101)]
    top = int(np.argmax(lrs))
    assert lrs[0] == 0 and lrs[top] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-5)
    assert all(a <= b for a, b in zip(lrs[:top], lrs[1:top + 1]))
    assert all(a >= b for a, b in zip(lrs[top:], lrs[top + 1:]))


def test_bad_settings_are_refused():
    with pytest.raises(InputError, match="architecture"):
        TrainConfig("nequip", "gap")
    with pytest.raises(InputError, match="target"):
        TrainConfig("painn", "dipole")
    with pytest.raises(InputError, match="n_train"):
        TrainConfig("painn", "gap", n_train=0)


def _molecules(n=80, seed=0):
    """Water-like triatomics whose 'gap' is the H-O-H angle's cosine (learnable from geometry only)."""
    rng = np.random.default_rng(seed)
    angle = rng.uniform(1.6, 2.4, n)
    bond = rng.uniform(0.9, 1.1, (n, 2))
    xyz = np.zeros((n, 3, 3))
    xyz[:, 1, 0] = bond[:, 0]
    xyz[:, 2, 0] = bond[:, 1] * np.cos(angle)
    xyz[:, 2, 1] = bond[:, 1] * np.sin(angle)
    return {"index": np.arange(1, n + 1), "n_atoms": np.full(n, 3), "z": np.tile([8, 1, 1], n),
            "xyz": xyz.reshape(-1, 3), "target_gap": 5.0 + np.cos(angle), "target_U0": -2000.0 + np.cos(angle)}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("painn-gap")
    data = QM9Tensors("gap", "cpu", _molecules())
    config = TrainConfig("painn", "gap", max_epochs=12, max_minutes=2, batch_size=8, lr=3e-3, patience=12,
                         hparams={"hidden": 16, "num_layers": 2, "num_rbf": 8}, device="cpu")
    manifest = train(config, out_dir=out, data=data, command="test", log=None)
    return out, data, manifest


def test_training_learns(trained):
    _, _, manifest = trained
    history = manifest["history"]
    assert history[-1]["train_loss"] < 0.7 * history[0]["train_loss"]
    assert manifest["result"]["val_mae_meV"] == min(h["val_mae_meV"] for h in history)


def test_checkpoint_reloads_to_the_recorded_test_mae(trained):
    out, data, manifest = trained
    net, ckpt = load_checkpoint(out / "model.pt")
    assert ckpt["format"] == CHECKPOINT_FORMAT and ckpt["arch"] == "painn"
    model = Regressor(net, Normalisation(**ckpt["normalisation"]))
    test_rows = split_indices(len(data), seed=0, sizes=_small_split(len(data)))["test"]
    mae = np.mean(np.abs(evaluate(model, data, test_rows) - data.y[test_rows].numpy())) * 1000
    assert mae == pytest.approx(manifest["result"]["test_mae_meV"], rel=1e-5)


def test_manifest_records_the_run(trained):
    out, _, manifest = trained
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["result"] == manifest["result"]
    for key in ("arch", "target", "hparams", "n_parameters", "split", "protocol", "normalisation", "device",
                "torch", "command", "date", "history"):
        assert key in on_disk, key
    assert on_disk["split"]["n_train"] + on_disk["split"]["n_val"] + on_disk["split"]["n_test"] == 80
    assert on_disk["hparams"] == {"hidden": 16, "num_layers": 2, "num_rbf": 8, "cutoff": 5.0, "max_z": 10}
    assert (out / "model.pt").stat().st_size < 5e6


def test_cli_rejects_bad_hyperparameters(capsys):
    assert main(["train", "--arch", "painn", "--target", "gap", "--hparams", "{hidden: 8"]) == 2
    assert "not JSON" in capsys.readouterr().err
