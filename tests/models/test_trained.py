"""Networks trained here, through the registry: checkpoints load, twins match, missing files say what to do."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cpd_core.errors import InputError
from cpd_core.models import REGISTRY, WeightsNotFoundError, load
from cpd_core.models.base import AtomsBatch
from cpd_core.models.trained import (
    ARCHITECTURES,
    TRAINED_TARGETS,
    build_network,
    checkpoint_root,
    load_checkpoint,
    load_snapshot,
    snapshot_paths,
)
from cpd_core.training.trainer import save


def test_every_architecture_has_three_cards():
    for arch in ARCHITECTURES:
        cards = [REGISTRY[f"{arch}-qm9-{s}"] for s in (*TRAINED_TARGETS, "random")]
        assert [c.status for c in cards] == ["trained-here", "trained-here", "random-init"]
        assert cards[2].twin_of == f"{arch}-qm9-gap" and len({c.family for c in cards}) == 1


def test_the_registry_imports_a_network_module_only_when_its_network_is_built():
    code = ("import sys; from cpd_core.models import trained; "
            "stacks = lambda: sorted({m.split('.')[0] if not m.startswith('cpd_core') else m for m in sys.modules "
            "if m.startswith(('cpd_core.models.trained.', 'torch_geometric', 'mace', 'e3nn'))}); "
            "print(stacks()); trained.build_network('painn', hidden=8); print(stacks())")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.stdout.split("\n")[:2] == ["[]", "['cpd_core.models.trained.painn']"], result.stderr


def test_checkpoint_root_is_the_repositorys_checkpoints_folder(monkeypatch):
    monkeypatch.delenv("CPD_CHECKPOINTS", raising=False)
    assert checkpoint_root() == Path(__file__).resolve().parents[2] / "checkpoints"
    monkeypatch.setenv("CPD_CHECKPOINTS", "/elsewhere")
    assert checkpoint_root() == Path("/elsewhere")


def test_missing_checkpoint_names_the_training_command(tmp_path, monkeypatch):
    monkeypatch.setenv("CPD_CHECKPOINTS", str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match="cpd train --arch painn --target U0"):
        load("painn-qm9-U0")


def _checkpoint(root, arch, target, hparams, seed=1):
    net = build_network(arch, seed=seed, **hparams)
    manifest = {"arch": arch, "target": target, "hparams": net.hparams,
                "normalisation": {"pooling": "mean", "scale": 1.0, "offset": 0.0, "atomref": [0.0] * 10}}
    save(net, manifest, root / "qm9" / f"{arch}-{target}")
    return net


def test_trained_card_loads_its_checkpoint_and_twin_copies_its_architecture(tmp_path, monkeypatch):
    monkeypatch.setenv("CPD_CHECKPOINTS", str(tmp_path))
    hparams = {"hidden": 8, "num_layers": 2, "num_rbf": 6}
    net = _checkpoint(tmp_path, "painn", "gap", hparams)
    featurizer = load("painn-qm9-gap", device="cpu")
    assert featurizer.card.status == "trained-here"
    for (name, a), b in zip(net.state_dict().items(), featurizer.module.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    twin = load("painn-qm9-random", device="cpu")
    assert twin.module.hparams == featurizer.module.hparams
    assert any(not torch.equal(a, b) for a, b in zip(twin.module.parameters(), featurizer.module.parameters()))
    batch = AtomsBatch.from_arrays([[8, 1, 1]], [np.array([[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])])
    blocks = featurizer(batch)
    assert set(blocks) == {"embedding/L0", "layer1/L0", "layer1/L1", "layer2/L0", "layer2/L1"}
    assert blocks["layer2/L1"].shape == (3, 8, 3)


def test_load_checkpoint_refuses_other_files(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "model.pt")
    with pytest.raises(InputError, match="not a cpd-qm9-net"):
        load_checkpoint(tmp_path / "model.pt")


def test_snapshots_load_under_their_own_names_and_hashes(tmp_path, monkeypatch):
    monkeypatch.setenv("CPD_CHECKPOINTS", str(tmp_path))
    hparams = {"hidden": 8, "num_layers": 2, "num_rbf": 6}
    final = _checkpoint(tmp_path, "painn", "gap", hparams)
    assert snapshot_paths("painn", "gap") == []  # a manifest without "snapshots" (the committed ones)
    with pytest.raises(WeightsNotFoundError, match="no snapshot after step 2 .* it has none .*--snapshots K"):
        load_snapshot("painn", "gap", 2)
    folder = tmp_path / "qm9" / "painn-gap"
    nets = {e: build_network("painn", seed=10 + e, **hparams) for e in (2, 5)}
    manifest = {"arch": "painn", "target": "gap", "hparams": final.hparams,
                "normalisation": {"pooling": "mean", "scale": 1.0, "offset": 0.0, "atomref": [0.0] * 10},
                "snapshots": [{"file": f"snapshots/step{e:07d}.pt", "step": e, "epoch": 1} for e in (5, 2)]}
    save(final, manifest, folder, snapshots={f"snapshots/step{e:07d}.pt": n.state_dict() for e, n in nets.items()})
    assert snapshot_paths("painn", "gap") == [(e, folder / f"snapshots/step{e:07d}.pt") for e in (2, 5)]
    specs = {load("painn-qm9-gap", device="cpu").spec()["weights"]}
    for step, net in nets.items():
        snap = load_snapshot("painn", "gap", step, device="cpu")
        assert snap.name == f"painn-qm9-gap@step{step}" and snap.card.status == "trained-here"
        assert type(snap) is type(load("painn-qm9-gap", device="cpu"))
        for (name, a), b in zip(net.state_dict().items(), snap.module.state_dict().values()):
            torch.testing.assert_close(a, b, msg=name)
        assert snap.card.build().spec() == snap.spec()
        specs.add(snap.spec()["weights"])
    assert len(specs) == 3
    with pytest.raises(WeightsNotFoundError, match=r"it has \[2, 5\]"):
        load_snapshot("painn", "gap", 3)
    with pytest.raises(InputError, match="no trained network painn-qm9-dipole"):
        load_snapshot("painn", "dipole", 2)
