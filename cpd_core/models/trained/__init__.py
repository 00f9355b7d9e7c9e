r"""Networks trained on QM9 by this project (issue 4): SchNet, DimeNet++, PaiNN, ViSNet, MACE.

No pretrained weights of these architectures can be had offline, and published checkpoints
differ in data and supervision; so the project trains each one itself under one protocol
(:mod:`cpd_core.training`) on the HOMO-LUMO gap and on U0, and commits the small checkpoints
under ``checkpoints/qm9/<arch>-<target>/`` (``model.pt`` and ``manifest.json``).

Registry names: ``<arch>-qm9-gap`` and ``<arch>-qm9-U0`` (status ``trained-here``) and
``<arch>-qm9-random``, the same network untrained (seed 0; ``load(name, seed=k)`` draws another), the
control for both. Blocks are
the network's own per-layer features (``embedding/L0``, ``layer{k}/L0``, ``layer{k}/L1``; see
each network's docstring).

Where the networks live: in this package, one module per implementation, listed in
:data:`ARCHITECTURES` (the one table of architectures; :func:`network_class` imports a module only
when its network is built):

==========  =====================================================  ========================
arch        class                                                  implementation
==========  =====================================================  ========================
schnet      :class:`~cpd_core.models.trained.pyg.SchNetNet`        torch-geometric layers
dimenet++   :class:`~cpd_core.models.trained.pyg.DimeNetPPNet`     torch-geometric layers
painn       :class:`~cpd_core.models.trained.painn.PaiNN`          written here
visnet      :class:`~cpd_core.models.trained.pyg.ViSNetNet`        torch-geometric layers
mace        :class:`~cpd_core.models.trained.mace_net.MACENet`     mace-torch
==========  =====================================================  ========================

Checkpoints (format :data:`CHECKPOINT_FORMAT`) store the arch name, hyper-parameters and weights,
not a module path: :func:`load_checkpoint` builds the network through this table.

A run also keeps snapshots of its weights part-way through training (``cpd train
--snapshots``): :func:`snapshot_paths` lists them, :func:`load_snapshot` loads one as
``<arch>-qm9-<target>@step<S>``.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from cpd_core.errors import InputError
from cpd_core.models.base import AtomsBatch, Featurizer, ModelCard, WeightsNotFoundError, seeded_card
from cpd_core.datasets.qm9 import QM9_ELEMENTS  # H, C, N, O, F: what the trained networks support

if TYPE_CHECKING:  # the network modules, named for readers (type checkers, scripts/notebook_deps.py), not imported
    from cpd_core.models.trained import mace_net, painn, pyg  # noqa: F401

#: arch -> (module, class name, family); modules are imported only when a network is built.
ARCHITECTURES = {
    "schnet": ("cpd_core.models.trained.pyg", "SchNetNet", "SchNet"),
    "dimenet++": ("cpd_core.models.trained.pyg", "DimeNetPPNet", "DimeNet++"),
    "painn": ("cpd_core.models.trained.painn", "PaiNN", "PaiNN"),
    "visnet": ("cpd_core.models.trained.pyg", "ViSNetNet", "ViSNet"),
    "mace": ("cpd_core.models.trained.mace_net", "MACENet", "MACE"),
}
#: Targets the networks are trained on.
TRAINED_TARGETS = ("gap", "U0")
#: :attr:`ModelCard.qm9_overlap` of the networks trained here.
TRAINED_OVERLAP = ("trained on QM9 itself: molecules of its training split (split seed 0), early-stopped on its "
                   "validation split; probe on its test split (cpd_core.training.data.probe_rows)")
#: Format tag of the checkpoints :mod:`cpd_core.training` writes.
CHECKPOINT_FORMAT = "cpd-qm9-net/1"


def network_class(arch: str) -> type:
    """The network class of ``arch`` (imports its model stack).

    Examples
    --------
    >>> network_class("painn").__name__
    'PaiNN'
    >>> network_class("nequip")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cpd_core.errors.InputError: unknown architecture 'nequip'; known: ['schnet', 'dimenet++', ...]
    """
    if arch not in ARCHITECTURES:
        raise InputError(f"unknown architecture {arch!r}; known: {list(ARCHITECTURES)}")
    module, name, _ = ARCHITECTURES[arch]
    return getattr(importlib.import_module(module), name)


def build_network(arch: str, seed: int = 0, **hparams) -> torch.nn.Module:
    """``arch``'s network with hyper-parameters ``hparams`` (defaults otherwise), initialised from ``seed``.

    The global RNG is left as it was; the same ``(arch, seed, hparams)`` gives the same weights.
    """
    cls = network_class(arch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(**hparams)


def checkpoint_root() -> Path:
    """``$CPD_CHECKPOINTS``, else ``checkpoints/`` at the top of the repository."""
    env = os.environ.get("CPD_CHECKPOINTS")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "checkpoints"


def checkpoint_dir(arch: str, target: str, root: str | Path | None = None) -> Path:
    """``<root>/qm9/<arch>-<target>``: where ``cpd train`` writes and the registry reads."""
    return Path(root or checkpoint_root()) / "qm9" / f"{arch}-{target}"


def train_command(arch: str, target: str) -> str:
    """The command that trains ``arch`` on ``target`` into the registry's folder."""
    return f"cpd train --arch {arch} --target {target}"


def load_checkpoint(path: str | Path) -> tuple[torch.nn.Module, dict]:
    """The network stored in ``path`` (a ``model.pt``) in eval mode, and the checkpoint dict.

    Raises
    ------
    WeightsNotFoundError
        If the file is missing.
    InputError
        If it is not a checkpoint of :mod:`cpd_core.training`.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"no checkpoint at {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path} is not a {CHECKPOINT_FORMAT} checkpoint (written by `cpd train`)")
    net = build_network(ckpt["arch"], **ckpt["hparams"])
    net.load_state_dict(ckpt["state_dict"])
    return net.eval(), ckpt


def read_manifest(arch: str, target: str, root: str | Path | None = None) -> dict:
    """The ``manifest.json`` of a trained network (``{}`` if there is none)."""
    path = checkpoint_dir(arch, target, root) / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else {}


class NetFeaturizer(Featurizer):
    """Per-layer atom features of a network trained here (or of its random-init twin).

    Examples
    --------
    >>> f = NetFeaturizer(card=REGISTRY_CARDS["painn-qm9-random"], net=build_network("painn", hidden=8))
    >>> import numpy as np
    >>> blocks = f(AtomsBatch.from_arrays([[8, 1, 1]], [np.eye(3)]))
    >>> sorted(blocks)[:3], tuple(blocks["layer1/L1"].shape)
    (['embedding/L0', 'layer1/L0', 'layer1/L1'], (3, 8, 3))
    """

    elements = QM9_ELEMENTS

    def __init__(self, card: ModelCard, net: torch.nn.Module):
        self.card = card
        self.module = net.eval().requires_grad_(False)

    def features(self, batch: AtomsBatch) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            _, blocks = self.module(batch.numbers, batch.positions, batch.batch)
        return blocks


def _trained(arch: str, target: str, card_name: str):
    def build(**options):
        if options:
            raise InputError(f"{card_name} takes no options, got {sorted(options)}")
        path = checkpoint_dir(arch, target) / "model.pt"
        if not path.is_file():
            raise WeightsNotFoundError(f"{card_name}: no checkpoint at {path}; train it with "
                                       f"`{train_command(arch, target)}` (or set CPD_CHECKPOINTS)")
        net, _ = load_checkpoint(path)
        return NetFeaturizer(REGISTRY_CARDS[card_name], net)
    return build


def _random(arch: str, card_name: str):
    def build(seed: int = 0):
        # the architecture of the gap-trained network when there is one, else the defaults
        hparams = read_manifest(arch, "gap").get("hparams", {})
        card = seeded_card(REGISTRY_CARDS[card_name], seed)
        featurizer = NetFeaturizer(card, build_network(arch, seed=seed, **hparams))
        featurizer.seed = int(seed)
        return featurizer
    return build


def _cards() -> list[ModelCard]:
    cards = []
    for arch, (module, cls, family) in ARCHITECTURES.items():
        for target in TRAINED_TARGETS:
            name = f"{arch}-qm9-{target}"
            cards.append(ModelCard(
                name, family=family, status="trained-here",
                training_data=f"QM9 {target} (this project's split; see checkpoints/qm9/{arch}-{target})",
                source=f"checkpoints/qm9/{arch}-{target}/model.pt ({module}.{cls})", domain="molecules",
                build=_trained(arch, target, name), qm9_overlap=TRAINED_OVERLAP))
        name = f"{arch}-qm9-random"
        cards.append(ModelCard(
            name, family=family, status="random-init", training_data="untrained",
            source=f"{module}.{cls}, hyper-parameters of {arch}-qm9-gap, seed 0", domain="molecules",
            twin_of=f"{arch}-qm9-gap", build=_random(arch, name)))
    return cards


CARDS = _cards()
REGISTRY_CARDS = {c.name: c for c in CARDS}


def snapshot_paths(arch: str, target: str, root: str | Path | None = None) -> list[tuple[int, Path]]:
    """``(step, path)`` of the weight snapshots a run of ``cpd train`` kept, by training step, from its manifest.

    Empty when there are none (a run before ``--snapshots`` existed, ``--snapshots 0``, no run).
    """
    folder = checkpoint_dir(arch, target, root)
    return sorted((int(s["step"]), folder / s["file"]) for s in read_manifest(arch, target, root).get("snapshots", []))


def load_snapshot(arch: str, target: str, step: int, root: str | Path | None = None,
                  device: str | None = "auto") -> NetFeaturizer:
    """The network ``<arch>-qm9-<target>`` as it was after training step ``step``, as a featurizer.

    Its card is the registry's, named ``<arch>-qm9-<target>@step<step>``; with the weights
    hash in :meth:`~cpd_core.models.base.Featurizer.spec`, features of every snapshot are cached
    apart.

    Parameters
    ----------
    arch, target : str
    step : int
        One of the steps of :func:`snapshot_paths`.
    root : path, optional
        The checkpoint root (default :func:`checkpoint_root`).
    device : str, optional
        As in :func:`cpd_core.models.load`.

    Raises
    ------
    WeightsNotFoundError
        If the run kept no snapshot after ``step`` (the message lists those it kept).
    """
    from cpd_core.models.base import resolve_device

    base = REGISTRY_CARDS.get(f"{arch}-qm9-{target}")
    if base is None:
        raise InputError(f"no trained network {arch}-qm9-{target}; architectures {list(ARCHITECTURES)}, "
                         f"targets {list(TRAINED_TARGETS)}")
    paths = dict(snapshot_paths(arch, target, root))
    if step not in paths:
        raise WeightsNotFoundError(f"{base.name} has no snapshot after step {step} in "
                                   f"{checkpoint_dir(arch, target, root)}; it has {sorted(paths) or 'none'} "
                                   f"(`{train_command(arch, target)} --snapshots K` keeps K)")
    net, _ = load_checkpoint(paths[step])
    card = dataclasses.replace(base, name=f"{base.name}@step{step}", source=f"{paths[step]} (snapshot)",
                               training_data=f"{base.training_data}, after step {step}",
                               build=functools.partial(load_snapshot, arch, target, step, root=root, device="cpu"))
    featurizer = NetFeaturizer(card, net)
    featurizer.spec()  # hash the weights as loaded, as cpd_core.models.load does
    return featurizer.to(resolve_device(device), featurizer.dtype)
