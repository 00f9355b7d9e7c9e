"""The training protocol end to end on a few synthetic molecules: it learns, it checkpoints, it reloads,
it keeps snapshots, it resumes."""

import json
import math
import pathlib
import shutil
import types

import numpy as np
import pytest
import torch

from cpd_core.cli import main
from cpd_core.errors import InputError
from cpd_core.models import load
from cpd_core.models.base import AtomsBatch
from cpd_core.models.trained import CHECKPOINT_FORMAT, load_checkpoint, load_snapshot, snapshot_paths
from cpd_core.training import TrainConfig, train, trainer
from cpd_core.training.data import Normalisation, QM9Tensors, split_indices
from cpd_core.training.trainer import RESTART_SCHEDULE, Regressor, _small_split, evaluate, learning_rate


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


HPARAMS = {"hidden": 16, "num_layers": 2, "num_rbf": 8}


def _config(**changes):
    settings = dict(max_epochs=12, max_minutes=2, batch_size=8, lr=3e-3, patience=12, hparams=HPARAMS, device="cpu")
    return TrainConfig("painn", "gap", **{**settings, **changes})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """12 epochs (4 snapshots, the default) into ``<root>/qm9/painn-gap``, where the registry looks."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("checkpoints") / "qm9" / "painn-gap"
    data = QM9Tensors("gap", "cpu", _molecules())
    manifest = train(_config(), out_dir=out, data=data, command="test", log=None)
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
    assert on_disk["hparams"] == {**HPARAMS, "cutoff": 5.0, "max_z": 10}
    assert (out / "model.pt").stat().st_size < 5e6


def test_cli_rejects_bad_hyperparameters(capsys):
    assert main(["train", "--arch", "painn", "--target", "gap", "--hparams", "{hidden: 8"]) == 2
    assert "not JSON" in capsys.readouterr().err


# --- snapshots --------------------------------------------------------------------------------------------


def test_snapshots_follow_the_epoch_budget(trained):
    out, _, manifest = trained
    snaps = manifest["snapshots"]
    assert [s["epoch"] for s in snaps] == [3, 6, 9, 12]  # 12 epochs, K = 4: after epochs 12/4, 2·12/4, ...
    assert [s["epochs"] for s in snaps] == [3, 6, 9, 12]  # whole epochs: no mark falls inside one
    by_epoch = {h["epoch"]: h for h in manifest["history"]}
    assert [s["file"] for s in snaps] == [f"snapshots/step{by_epoch[e]['steps']:07d}.pt" for e in (3, 6, 9, 12)]
    for s in snaps:
        assert (s["step"], s["minutes"], s["val_mae_meV"]) == tuple(by_epoch[s["epoch"]][k]
                                                                   for k in ("steps", "minutes", "val_mae_meV"))
        ckpt = torch.load(out / s["file"], weights_only=True)
        assert ckpt["format"] == CHECKPOINT_FORMAT and set(ckpt) == set(torch.load(out / "model.pt", weights_only=True))
        assert all(v.dtype == torch.float32 for v in ckpt["state_dict"].values() if v.is_floating_point())
        assert (out / s["file"]).stat().st_size < 1.2 * (out / "model.pt").stat().st_size
    assert sorted(p.name for p in (out / "snapshots").iterdir()) == [pathlib.Path(s["file"]).name for s in snaps]
    assert snapshot_paths("painn", "gap", out.parents[1]) == [(s["step"], out / s["file"]) for s in snaps]


def test_snapshots_fall_inside_an_epoch_when_the_clock_says_so(tmp_path, monkeypatch):
    """A fake clock, 0.9 s a reading (one a step, one a validation): 12 steps an epoch, 11.7 s; a 60 s budget.

    Marks at 20 s and 40 s fall part-way through epochs: those snapshots are taken at the
    first step that reaches them, with the epochs trained as a fraction; the last is the cut epoch.
    """
    ticks = iter(range(10**6))
    monkeypatch.setattr(trainer, "time", types.SimpleNamespace(monotonic=lambda: 0.9 * next(ticks)))
    data = QM9Tensors("gap", "cpu", _molecules(120))  # 96 training molecules: 12 batches of 8
    manifest = train(_config(max_minutes=1, max_epochs=100, snapshots=3), out_dir=tmp_path, data=data, log=None)
    history, snaps = manifest["history"], manifest["snapshots"]
    assert manifest["result"]["stopped_by"] == "time" and history[-1]["partial"]
    assert len(snaps) == 3 and snaps[-1]["epoch"] == history[-1]["epoch"]  # the cut epoch is the last snapshot
    assert snaps[-1]["step"] == history[-1]["steps"]
    for i, s in enumerate(snaps[:-1], start=1):  # mid-epoch, at the first step past i/3 of the minute
        assert s["minutes"] >= i / 3 and s["epochs"] % 1 != 0 and s["epoch"] == math.ceil(s["epochs"])
        assert s["step"] == round(s["epochs"] * 12)
        assert s["val_mae_meV"] not in {h["val_mae_meV"] for h in history}  # validated on its own
    assert [s["step"] for s in snaps] == sorted({s["step"] for s in snaps})
    assert all((tmp_path / s["file"]).is_file() for s in snaps)


def test_no_snapshots_and_stale_ones_removed(trained, tmp_path):
    out, data, _ = trained
    shutil.copytree(out, tmp_path / "run")
    manifest = train(_config(max_epochs=2, snapshots=0), out_dir=tmp_path / "run", data=data, log=None)
    assert manifest["snapshots"] == [] and list((tmp_path / "run" / "snapshots").iterdir()) == []


def test_snapshots_load_with_their_own_weights(trained, monkeypatch):
    out, _, manifest = trained
    root = out.parents[1]
    monkeypatch.setenv("CPD_CHECKPOINTS", str(root))
    final = load("painn-qm9-gap", device="cpu")
    water = AtomsBatch.from_arrays([[8, 1, 1]], [np.array([[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])])
    hashes = set()
    epoch_of = {s["step"]: s["epoch"] for s in manifest["snapshots"]}
    for step, _ in snapshot_paths("painn", "gap", root):
        snap = load_snapshot("painn", "gap", step, root=root, device="cpu")
        assert snap.name == f"painn-qm9-gap@step{step}" and snap.card.status == "trained-here"
        same = snap.spec()["weights"] == final.spec()["weights"]
        assert same == (epoch_of[step] == manifest["result"]["best_epoch"])  # model.pt: the best epoch's weights
        if not same:
            assert not torch.allclose(snap(water)["layer2/L0"], final(water)["layer2/L0"])
        hashes.add(snap.spec()["weights"])
    assert len(hashes) == 4


# --- resuming ---------------------------------------------------------------------------------------------


def test_resume_continues_the_run(trained, tmp_path):
    out, data, before = trained
    run = tmp_path / "run"
    shutil.copytree(out, run)
    after = train(_config(max_epochs=4, snapshots=2), out_dir=run, data=data, command="again", log=None,
                  resume=True)
    history = after["history"]
    assert history[:12] == before["history"] and [h["epoch"] for h in history[12:]] == [13, 14, 15, 16]
    assert all(np.isfinite([h["train_loss"], h["val_mae_meV"]]).all() for h in history[12:])
    assert history[12]["steps"] == before["result"]["steps"] + 8 and after["result"]["epochs"] == 16
    assert after["resumed_from"] == {"epochs": 12, "steps": before["result"]["steps"],
                                     "train_minutes": before["result"]["train_minutes"],
                                     "val_mae_meV": before["result"]["val_mae_meV"],
                                     "best_epoch": before["result"]["best_epoch"],
                                     "lr": before["history"][-1]["lr"], "schedule": RESTART_SCHEDULE}
    # a warm restart: the schedule again over the 4 new epochs (8 batches an epoch; lr of each epoch's last batch)
    assert before["history"][-1]["lr"] == pytest.approx(learning_rate((11 + 7 / 8) / 12, 3e-3))
    assert [h["lr"] for h in history[12:]] == pytest.approx([learning_rate((e + 7 / 8) / 4, 3e-3) for e in range(4)])
    assert after["result"]["train_minutes"] > before["result"]["train_minutes"]
    assert after["commands"] == ["test", "again"] and after["command"] == "again"
    assert after["result"]["val_mae_meV"] == min(h["val_mae_meV"] for h in history)
    assert [s["epoch"] for s in after["snapshots"]] == [3, 6, 9, 12, 14, 16]
    assert all((run / s["file"]).is_file() for s in after["snapshots"])
    assert json.loads((run / "manifest.json").read_text())["history"] == history


def test_resumed_run_matches_the_uninterrupted_one(tmp_path):
    """3 + 3 epochs resumed = 6 epochs in one go, to the bit, at a constant learning rate.

    The equality needs the same schedule in both runs: a resumed segment restarts warm-up and
    cosine over its own budget, so with the default schedule the two runs differ by design
    (:func:`test_resume_continues_the_run` checks the restart); ``warmup=0, final_lr=1`` makes
    the rate constant. What must then carry over exactly is everything else: the weights, Adam's
    moments and step counts, the EMA and its step-dependent decay, the batch-order RNG and the best
    weights. Epoch budgets only (a wall-time budget is not repeatable).
    """
    data = QM9Tensors("gap", "cpu", _molecules(40))
    config = dict(warmup=0.0, final_lr=1.0, patience=100, snapshots=0)
    whole = train(_config(max_epochs=6, **config), out_dir=tmp_path / "whole", data=data, log=None)
    train(_config(max_epochs=3, **config), out_dir=tmp_path / "split", data=data, log=None)
    split = train(_config(max_epochs=3, **config), out_dir=tmp_path / "split", data=data, log=None, resume=True)
    strip = [{k: v for k, v in h.items() if k != "minutes"} for h in whole["history"]]
    assert [{k: v for k, v in h.items() if k != "minutes"} for h in split["history"]] == strip
    assert split["result"]["test_mae_meV"] == whole["result"]["test_mae_meV"]
    a, b = (torch.load(tmp_path / name / "state.pt", weights_only=True) for name in ("whole", "split"))
    for key in ("weights", "ema", "optimizer", "best", "rng"):
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_resume_errors(trained, tmp_path, capsys):
    out, data, _ = trained
    with pytest.raises(InputError, match="no state.pt in .*train without --resume"):
        train(_config(), out_dir=tmp_path, data=data, log=None, resume=True)
    run = tmp_path / "run"
    shutil.copytree(out, run)
    with pytest.raises(InputError, match="is a painn run on gap, not painn on U0"):
        train(TrainConfig("painn", "U0", hparams=HPARAMS), out_dir=run, data=data, log=None, resume=True)
    with pytest.raises(InputError, match=r"hparams \{'hidden': 16.*asked \{'hidden': 8"):
        train(_config(hparams={**HPARAMS, "hidden": 8}), out_dir=run, data=data, log=None, resume=True)
    with pytest.raises(InputError, match=r"batch_size 8 \(asked 4\), lr 0.003 \(asked 0.001\).*its command: test"):
        train(_config(batch_size=4, lr=1e-3), out_dir=run, data=data, log=None, resume=True)
    assert main(["train", "--arch", "painn", "--target", "gap", "--out", str(tmp_path / "none"), "--resume"]) == 2
    assert "no state.pt" in capsys.readouterr().err
    with pytest.raises(InputError, match="snapshots"):
        _config(snapshots=-1)
