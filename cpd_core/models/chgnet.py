r"""CHGNet 0.3.0: the atom features after each of its atom-convolution layers.

CHGNet (Deng et al. 2023, *Nat. Mach. Intell.* 5, 1031) is a crystal graph network trained
on the Materials Project trajectory set MPtrj (PBE/PBE+U energies, forces, stresses and
magnetic moments). Each atom starts from a learned embedding of its element,
:math:`v_i^0 = E[Z_i]`, and passes through ``n_conv`` = 4 residual, gated atom
convolutions over the atom graph (neighbours within 6 Å),

.. math::

    v_i^{t+1} = v_i^t + L_v^t\Bigl(\sum_{j \in \mathcal N(i)}
        \tilde e_{ij}\, \phi_v^t\bigl(v_i^t \oplus v_j^t \oplus e_{ij}^t\bigr)\Bigr),

interleaved with bond and angle updates on the bond graph (bonds shorter than 3 Å). The
messages see only distances (Bessel bases) and bond angles (Fourier bases), so every
:math:`v^t` is rotation invariant; all blocks are invariant (L = 0).

Blocks (per atom, in the batch's atom order):

* ``embedding/L0`` — :math:`v^0`, (N, 64), the element embedding (read by a forward hook on
  ``model.atom_embedding``; it depends only on :math:`Z`);
* ``layer{k}/L0`` for k = 1 … 4 — :math:`v^k`, (N, 64), the output of
  ``model.atom_conv_layers[k - 1]`` (forward hooks: CHGNet's API returns one layer only).
  ``layer3/L0`` is what ``model(..., return_atom_feas=True)`` calls ``atom_fea`` (the
  features its magnetic-moment head reads); the site energies are an MLP of
  ``LayerNorm(layer4/L0)``, whose sum over atoms is the package's ``crystal_fea``.

Molecules (``batch.cell is None``): CHGNet's graph converter needs a pymatgen
``Structure`` with a lattice, so each molecule sits in a cubic box of edge

.. math::

    a = \max_\alpha \bigl(\max_i r_{i\alpha} - \min_i r_{i\alpha}\bigr)
        + 2 \max(r_\text{atom}, r_\text{bond}) + \text{margin} = \text{extent} + 12\ \text{Å} + 1\ \text{Å},

so every periodic image of an atom is more than 12 Å from every atom of the molecule, twice
the largest cutoff: no atom sees an image and the box emulates a free molecule (the tests
check that a larger box gives the same features). Crystals (``batch.cell`` given) use their
own lattice. CHGNet's converter (pymatgen neighbour list + CHGNet's C graph builder) runs
**once per structure** in Python; the converted graphs of a whole batch then go through the
network in one call (CHGNet's ``BatchedGraph``). On QM9 on one CPU thread the conversion takes
about 15 % of the time and the network the rest (its angle updates run over ~60 bond pairs
per atom); :meth:`CHGNetFeaturizer.run` records both in ``timings``.
"""

from __future__ import annotations

import contextlib
import io
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from cpd_core.models.base import AtomsBatch, Featurizer, ModelCard, WeightsNotFoundError, seeded_card

#: Elements CHGNet embeds (its embedding table has 94 rows: H … Pu).
CHGNET_ELEMENTS = tuple(range(1, 95))

CHGNET_CARD = ModelCard(
    "chgnet-0.3.0", family="CHGNet", status="original", training_data="MPtrj (PBE, with magnetic moments)",
    source="chgnet 0.4.2 wheel (CHGNet.load(), v0.3.0 weights)", domain="crystals",
    build=lambda **kw: CHGNetFeaturizer(**kw))
CHGNET_RANDOM_CARD = ModelCard(
    "chgnet-0.3.0-random", family="CHGNet", status="random-init", training_data="untrained",
    source="chgnet 0.4.2, CHGNet(**model_args of v0.3.0), seed 0", domain="crystals",
    twin_of="chgnet-0.3.0", build=lambda **kw: CHGNetFeaturizer(random_init=True, **kw))


def _checkpoint(model_name: str) -> Path:
    """Path of a pretrained checkpoint inside the chgnet wheel (raises when it is absent)."""
    import chgnet.model.model as chgnet_model

    pretrained = Path(chgnet_model.module_dir).parent / "pretrained" / model_name
    files = sorted(pretrained.glob("*.pth.tar"))
    if not files:
        raise WeightsNotFoundError(
            f"no CHGNet {model_name} checkpoint (*.pth.tar) in {pretrained}; reinstall the chgnet wheel "
            "(`pip install chgnet==0.4.2`), which ships the 0.3.0 weights")
    return files[0]


def load_chgnet(model_name: str = "0.3.0", random_init: bool = False, seed: int = 0):
    """CHGNet from the wheel's checkpoint, or (``random_init``) the same network with fresh weights.

    The twin is built from the checkpoint's own constructor arguments (``model_args``)
    under ``torch.manual_seed(seed)``; only its fitted per-element reference energies
    (``AtomRef``, built from the same arguments) are not random, and they do not touch the
    features. The graph converter is told to ignore atoms with no neighbour within 6 Å
    (CHGNet's default is to raise): such atoms keep their embedding plus self-updates.
    """
    from chgnet.model import CHGNet as _CHGNet

    _checkpoint(model_name)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = _CHGNet.load(model_name=model_name, use_device="cpu", verbose=False)
        if random_init:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = _CHGNet(**model.model_args)
    model.graph_converter.set_isolated_atom_response("ignore")
    model.requires_grad_(False)
    return model.eval()


class CHGNetFeaturizer(Featurizer):
    """CHGNet's per-layer atom features (see the module docstring).

    Parameters
    ----------
    model_name : str
        Checkpoint in the chgnet wheel (``"0.3.0"``).
    random_init : bool
        The same network with untrained weights: the ``chgnet-0.3.0-random`` twin.
    seed : int
        Seed of the twin's weights (``torch.manual_seed``; default 0). Only for ``random_init``.
    box_margin : float
        Extra edge (Å) of the box a molecule is put in, beyond extent + 2 × cutoff.

    Examples
    --------
    >>> from ase.build import molecule
    >>> water = molecule("H2O")
    >>> f = CHGNetFeaturizer()
    >>> blocks = f(AtomsBatch.from_arrays([water.numbers], [water.positions]))
    >>> {k: tuple(v.shape) for k, v in blocks.items()}
    {'embedding/L0': (3, 64), 'layer1/L0': (3, 64), 'layer2/L0': (3, 64), 'layer3/L0': (3, 64), 'layer4/L0': (3, 64)}
    """

    elements = CHGNET_ELEMENTS

    def __init__(self, model_name: str = "0.3.0", random_init: bool = False, box_margin: float = 1.0,
                 seed: int = 0):
        if model_name != "0.3.0":
            raise ValueError(f"only the 0.3.0 checkpoint has a card here, got model_name={model_name!r}")
        self.card = seeded_card(CHGNET_RANDOM_CARD if random_init else CHGNET_CARD, seed)
        self.seed = int(seed)
        self.model_name = model_name
        self.box_margin = float(box_margin)
        self.module = load_chgnet(model_name, random_init=random_init, seed=self.seed)
        converter = self.module.graph_converter
        self.cutoff = max(converter.atom_graph_cutoff, converter.bond_graph_cutoff)
        self.n_layers = len(self.module.atom_conv_layers)
        #: seconds spent in CHGNet's graph converter and in the network by the last :meth:`run`
        self.timings = {"convert": 0.0, "network": 0.0}

    def options(self) -> dict:
        converter = self.module.graph_converter
        return {"model_name": self.model_name, "atom_graph_cutoff": float(converter.atom_graph_cutoff),
                "bond_graph_cutoff": float(converter.bond_graph_cutoff)}

    def to(self, device, dtype: torch.dtype = torch.float32) -> "CHGNetFeaturizer":
        self.module.to(device=device, dtype=dtype)
        # AtomRef builds float32 composition vectors; its energy is added in place, so it stays float32
        if self.module.composition_model is not None:
            self.module.composition_model.to(torch.float32)
        return self

    def box_edge(self, positions: np.ndarray) -> float:
        """Edge (Å) of the cubic box a molecule goes in: extent + 2 × max cutoff + margin."""
        extent = float(np.ptp(positions, axis=0).max()) if len(positions) else 0.0
        return extent + 2 * self.cutoff + self.box_margin

    def structures(self, batch: AtomsBatch) -> list:
        """The batch as pymatgen ``Structure``\\ s: molecules centred in boxes, crystals in their cells."""
        from pymatgen.core import Lattice, Structure

        ptr = batch.ptr.tolist()
        z = batch.numbers.cpu().numpy()
        r = batch.positions.detach().cpu().double().numpy()
        out = []
        for s in range(batch.n_structures):
            zs, rs = z[ptr[s]:ptr[s + 1]], r[ptr[s]:ptr[s + 1]]
            if batch.cell is None:
                edge = self.box_edge(rs)
                lattice = Lattice.cubic(edge)
                rs = rs - (rs.max(0) + rs.min(0)) / 2 + edge / 2
            else:
                pbc = tuple(bool(p) for p in batch.pbc[s].tolist()) if batch.pbc is not None else (True,) * 3
                lattice = Lattice(batch.cell[s].detach().cpu().double().numpy(), pbc=pbc)
            out.append(Structure(lattice, zs.tolist(), rs, coords_are_cartesian=True))
        return out

    def graphs(self, structures: list, dtype: torch.dtype, device) -> list:
        """CHGNet ``CrystalGraph``\\ s, one converter call per structure, coordinates in ``dtype``.

        The converter stores coordinates and lattice in float32; they are replaced by the
        structure's own (float64) values cast to ``dtype``.
        """
        converter = self.module.graph_converter
        out = []
        for structure in structures:
            g = converter(structure)
            g.atom_frac_coord = torch.as_tensor(structure.frac_coords, dtype=dtype)
            g.lattice = torch.tensor(structure.lattice.matrix, dtype=dtype)
            g.neighbor_image = g.neighbor_image.to(dtype)
            out.append(g.to(device))
        return out

    def run(self, batch: AtomsBatch, task: str = "e") -> tuple[dict, dict]:
        """Blocks and CHGNet's own prediction (``model(graphs, task=task, return_atom_feas=True,
        return_crystal_feas=True)``) for ``batch``; times the two stages in :attr:`timings`."""
        model = self.module
        param = model.atom_embedding.embedding.weight
        t0 = time.perf_counter()
        graphs = self.graphs(self.structures(batch), param.dtype, param.device)
        t1 = time.perf_counter()
        captured = {}

        def keep(name):
            return lambda module, args, output: captured.__setitem__(name, output)

        hooks = [model.atom_embedding.register_forward_hook(keep("embedding/L0"))]
        hooks += [layer.register_forward_hook(keep(f"layer{k + 1}/L0"))
                  for k, layer in enumerate(model.atom_conv_layers)]
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # chgnet's torch.tensor(list of tensors) for volumes
                prediction = model(graphs, task=task, return_atom_feas=True, return_crystal_feas=True)
        finally:
            for h in hooks:
                h.remove()
        self.timings = {"convert": t1 - t0, "network": time.perf_counter() - t1}
        names = ["embedding/L0"] + [f"layer{k}/L0" for k in range(1, self.n_layers + 1)]
        return {name: captured[name] for name in names}, prediction

    def features(self, batch: AtomsBatch) -> dict:
        return self.run(batch)[0]


CARDS = [CHGNET_CARD, CHGNET_RANDOM_CARD]
