r"""SevenNet-0: the node features after each of its five NequIP interaction blocks.

SevenNet (Park et al. 2024, *J. Chem. Theory Comput.* 20, 4857) is a NequIP-style
E(3)-equivariant message-passing network (Batzner et al. 2022, *Nat. Commun.* 13, 2453).
SevenNet-0 (11 Jul 2024) was trained on the Materials Project trajectory set MPtrj (PBE/PBE+U);
here it stands in for MACE-MP-0, whose weights cannot be had offline. Each atom starts from a
linear embedding of its element one-hot, :math:`h_i^0 = W\,\mathrm{onehot}(Z_i)` (128x0e), and
passes through 5 interaction blocks (cutoff 5 Å, 8 Bessel functions with an XPLOR envelope,
spherical harmonics up to :math:`l = 2`):

.. math::

    h_i^{t+1} = \mathrm{Gate}\Bigl(W_2^t \frac{1}{\sqrt{\bar n}} \sum_{j \in \mathcal N(i)}
        R^t(r_{ij}) \bigl(W_1^t h_j^t\bigr) \otimes Y(\hat r_{ij})
        + W_\text{sc}^t h_i^t\Bigr),

whose outputs are ``128x0e+64x1e+32x2e`` for blocks 1-4 and ``128x0e`` for block 5 (SevenNet-0
has no parity: every irrep is even, so ``1e`` vectors are pseudo-vectors; the blocks here use
only proper rotations). The energy is a per-atom linear readout of :math:`h^5` with per-element
shift and scale.

Blocks (per atom, in the batch's atom order), split with :func:`~cpd_core.models.base.split_irreps`
using the irreps of each gate module:

* ``embedding/L0`` — :math:`h^0`, (N, 128) (depends only on :math:`Z`);
* ``layer{k}/L0`` (N, 128), ``layer{k}/L1`` (N, 64, 3), ``layer{k}/L2`` (N, 32, 5) for k = 1 … 4;
* ``layer5/L0`` (N, 128).

SevenNet's API returns energies and forces only. The featurizer runs the network's own
children (``AtomGraphSequential`` is an ``nn.Sequential`` of modules that read and write one
dict) in order and reads ``data["x"]`` after each ``EquivariantGate``; this is the model's
forward pass with its type mapping done here and the autograd force/stress module left out.
The input is ONE graph for the whole batch: atom-type indices from the model's ``type_map``
(atomic number → one-hot index; SevenNet-0 numbers its 89 elements in alphabetical order of
their symbols, Ac = 0, Ag = 1, …, H = 28, …, Zr = 88), ``edge_index`` ``[i, j]`` and
``edge_vec`` :math:`\mathbf r_j + \mathbf S\mathbf L - \mathbf r_i` from
:func:`~cpd_core.models.graph.radius_graph` with the model's cutoff, and ``batch``. sevenn's
one-hot module always returns float32; the featurizer casts it to the model's dtype, so
float64 works.
"""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path

import torch

from cpd_core.errors import InputError
from cpd_core.models.base import AtomsBatch, Featurizer, ModelCard, WeightsNotFoundError, seeded_card, split_irreps
from cpd_core.models.graph import radius_graph

#: sevenn's name of the 11 Jul 2024 SevenNet-0 checkpoint in its wheel.
DEFAULT_CHECKPOINT = "7net-0"

SEVENNET_CARD = ModelCard(
    "sevennet-0", family="NequIP", status="stand-in", training_data="MPtrj (PBE)",
    source="sevenn 0.10.4 wheel, SevenNet_0__11Jul2024", domain="crystals", stands_in_for="MACE-MP-0",
    build=lambda **kw: SevenNetFeaturizer(**kw))
SEVENNET_RANDOM_CARD = ModelCard(
    "sevennet-0-random", family="NequIP", status="random-init", training_data="untrained",
    source="sevenn 0.10.4 model_build.build_E3_equivariant_model(SevenNet-0 config), seed 0",
    domain="crystals", twin_of="sevennet-0", build=lambda **kw: SevenNetFeaturizer(random_init=True, **kw))


def _import_sevenn():
    # e3nn 0.4.4 unpickles its constants with torch.load, which fails under weights-only loading
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import sevenn._keys
        import sevenn.util
    return sevenn


def checkpoint_path(checkpoint: str = DEFAULT_CHECKPOINT) -> Path:
    """A checkpoint file: a path, or a name of a checkpoint in the sevenn wheel (``"7net-0"``, ``"7net-l3i5"``)."""
    sevenn = _import_sevenn()
    if os.path.isfile(checkpoint):
        return Path(checkpoint)
    try:
        path = Path(sevenn.util.pretrained_name_to_path(checkpoint))
    except ValueError:
        raise WeightsNotFoundError(
            f"{checkpoint!r} is neither a file nor a checkpoint name sevenn knows ('7net-0', "
            "'7net-0_22may2024', '7net-l3i5'); pass checkpoint='/path/to/checkpoint.pth'") from None
    if not path.is_file():
        raise WeightsNotFoundError(
            f"sevenn's checkpoint {checkpoint!r} is not at {path}; reinstall the wheel "
            "(`pip install sevenn==0.10.4`) or pass checkpoint='/path/to/checkpoint.pth'")
    return path


#: checkpoint file -> (config, non-trainable parameters): what a twin takes from its trained network,
#: kept per process so that twins of several seeds build the network once each (about 5 s on a CPU),
#: not twice
_TWIN_PARTS: dict[str, tuple[dict, dict]] = {}


def load_sevennet(checkpoint: str = DEFAULT_CHECKPOINT, random_init: bool = False, seed: int = 0):
    """SevenNet from a checkpoint, or (``random_init``) the same network with fresh weights.

    The twin is built by ``sevenn.model_build.build_E3_equivariant_model`` from the checkpoint's
    own config under ``torch.manual_seed(seed)``. The checkpoint's non-trainable parameters —
    the convolution denominators :math:`\\sqrt{\\bar n}` (the config stores 0 there and the value
    only in the weights) and the per-element energy shift and scale — are hyper-parameters, not
    learned weights, so the twin copies them.

    Returns
    -------
    model : sevenn.nn.sequential.AtomGraphSequential
        In eval mode, batched-input mode, gradients off.
    config : dict
        The checkpoint's config.
    """
    sevenn = _import_sevenn()
    path = str(checkpoint_path(checkpoint))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sevenn.model_build import build_E3_equivariant_model

        if not (random_init and path in _TWIN_PARTS):
            model, config = sevenn.util.model_from_checkpoint(path)
            fixed = {name: p.detach().clone() for name, p in model.named_parameters() if not p.requires_grad}
            _TWIN_PARTS[path] = (copy.deepcopy(config), fixed)
        if random_init:
            config, fixed = copy.deepcopy(_TWIN_PARTS[path][0]), _TWIN_PARTS[path][1]
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = build_E3_equivariant_model(config)
            model.load_state_dict(fixed, strict=False)
    model.set_is_batch_data(True)
    model.requires_grad_(False)
    return model.eval(), config


class SevenNetFeaturizer(Featurizer):
    """SevenNet's per-layer node features (see the module docstring).

    Parameters
    ----------
    checkpoint : str
        A checkpoint name in the sevenn wheel (``"7net-0"``, the default) or a file.
    random_init : bool
        The same network with untrained weights: the ``sevennet-0-random`` twin.
    seed : int
        Seed of the twin's weights (``torch.manual_seed``; default 0). Only for ``random_init``.

    Examples
    --------
    >>> from ase.build import molecule  # doctest: +SKIP
    >>> w = molecule("H2O"); f = SevenNetFeaturizer()  # doctest: +SKIP
    >>> {k: tuple(v.shape) for k, v in f(AtomsBatch.from_arrays([w.numbers], [w.positions])).items()}
    ... # doctest: +SKIP
    {'embedding/L0': (3, 128), 'layer1/L0': (3, 128), 'layer1/L1': (3, 64, 3), 'layer1/L2': (3, 32, 5), ...,
     'layer5/L0': (3, 128)}
    """

    def __init__(self, checkpoint: str = DEFAULT_CHECKPOINT, random_init: bool = False, seed: int = 0):
        self.card = seeded_card(SEVENNET_RANDOM_CARD if random_init else SEVENNET_CARD, seed)
        self.seed = int(seed)
        self.checkpoint = checkpoint
        self.module, self.config = load_sevennet(checkpoint, random_init=random_init, seed=self.seed)
        self.cutoff = float(self.module.cutoff)
        #: atomic number -> one-hot index of the model
        self.type_map = dict(self.module.type_map)
        self.elements = tuple(sorted(self.type_map))
        lookup = torch.full((max(self.type_map) + 1,), -1, dtype=torch.int64)
        lookup[list(self.type_map)] = torch.tensor(list(self.type_map.values()))
        self._lookup = lookup
        from sevenn.nn.equivariant_gate import EquivariantGate

        #: name of each interaction block's gate module -> irreps of its output, in network order
        self.layer_irreps = {name: m.gate.irreps_out for name, m in self.module.named_children()
                             if isinstance(m, EquivariantGate)}

    def options(self) -> dict:
        return {"checkpoint": self.checkpoint, "cutoff": self.cutoff}

    def graph(self, batch: AtomsBatch) -> dict:
        """SevenNet's input dict for the whole batch (one graph, edges within the cutoff)."""
        from sevenn import _keys as KEY

        numbers = batch.numbers
        types = self._lookup.to(numbers.device)[numbers.clamp(max=len(self._lookup) - 1)]
        unknown = (types < 0) | (numbers >= len(self._lookup))
        if bool(unknown.any()):
            raise InputError(f"SevenNet has no type for atomic numbers {sorted(set(numbers[unknown].tolist()))}")
        r = batch.positions
        edge_index, _, shifts = radius_graph(r, batch.batch, self.cutoff, batch.cell, batch.pbc)
        return {KEY.NODE_FEATURE: types, KEY.ATOMIC_NUMBERS: numbers, KEY.EDGE_IDX: edge_index,
                KEY.EDGE_VEC: r[edge_index[1]] - r[edge_index[0]] + shifts, KEY.BATCH: batch.batch,
                KEY.NUM_ATOMS: batch.sizes}

    def run(self, batch: AtomsBatch, energy: bool = False) -> tuple[dict, torch.Tensor | None]:
        """Blocks for ``batch`` and, with ``energy``, SevenNet's total energy per structure (S,) in eV.

        Runs the model's children in order on :meth:`graph`'s dict, stopping after the last
        interaction block unless the energy is asked for, and never running ``force_output``.
        """
        from sevenn import _keys as KEY

        data = self.graph(batch)
        dtype = batch.positions.dtype
        last = "reduce_total_enegy" if energy else list(self.layer_irreps)[-1]
        blocks = {}
        layer = 0
        with torch.no_grad():
            for name, child in self.module.named_children():
                data = child(data)
                if name == "onehot_idx_to_onehot":
                    data[KEY.NODE_FEATURE] = data[KEY.NODE_ATTR] = data[KEY.NODE_FEATURE].to(dtype)
                elif name == "onehot_to_feature_x":
                    blocks["embedding/L0"] = data[KEY.NODE_FEATURE]
                elif name in self.layer_irreps:
                    layer += 1
                    blocks.update(split_irreps(data[KEY.NODE_FEATURE], self.layer_irreps[name], f"layer{layer}"))
                if name == last:
                    break
        return blocks, (data[KEY.PRED_TOTAL_ENERGY] if energy else None)

    def energy(self, batch: AtomsBatch) -> torch.Tensor:
        """SevenNet's total energy per structure (S,) in eV, from the same batched graph as the features."""
        return self.run(batch, energy=True)[1]

    def features(self, batch: AtomsBatch) -> dict:
        return self.run(batch)[0]


CARDS = [SEVENNET_CARD, SEVENNET_RANDOM_CARD]
