r"""ANI-2x: its atomic environment vector (AEV) and the hidden layers of its element networks.

**The AEV** is a handcrafted, weight-free descriptor.

The ANI AEV of atom :math:`i` (Smith, Isayev & Roitberg 2017; Devereux et al.
2020 for ANI-2x) concatenates radial terms per neighbour species :math:`Z`

.. math::

    G^R_{i,k,Z} = \sum_{j \ne i,\ Z_j = Z} e^{-\eta_R (r_{ij} - R_k)^2} f_c(r_{ij}),
    \qquad r_c = 5.1\ \text{Å},

and angular terms per species pair :math:`(Z, Z')`

.. math::

    G^A_{i,k,l,ZZ'} = 2^{1-\zeta}\sum_{j<k'} \left(1 + \cos(\theta_{ijk'} - \theta_l)\right)^{\zeta}
        e^{-\eta_A\left(\frac{r_{ij} + r_{ik'}}{2} - R_k\right)^2} f_c(r_{ij}) f_c(r_{ik'}),
    \qquad r_c = 3.5\ \text{Å},

7 species give 16 × 7 = 112 radial and 32 × 28 = 896 angular features, 1,008
in all. Every term is a sum over neighbours of functions of distances and
angles, so the AEV is invariant to rotation, translation and the order of atoms.
:class:`ANI2xAEV` uses torchani's own :meth:`torchani.aev.AEVComputer.like_2x`; no
weights are needed.

**The networks** (:class:`ANI2x`): each element :math:`e` has its own feed-forward network
(e.g. H: 1008 → 256 → 192 → 160 → 1, CELU activations), and ANI-2x averages 8 such
ensemble members. The hidden activations of different elements live in different spaces of
different widths, so block ``hidden<k>`` places atom :math:`a`'s layer-:math:`k` activations
in the segment of its own element and zeros elsewhere,

.. math::

    h^{(k)}_a = \big[\,\delta_{e_a, \mathrm H}\, h^{(k)}_{a,\mathrm H},\ \delta_{e_a, \mathrm C}\,
    h^{(k)}_{a,\mathrm C},\ \dots\big] \in \mathbb R^{\sum_e d^{(k)}_e},

then averages over the ensemble members (or takes one member, ``member=k``). Mean pooling
then gives, per element, the element's share of the molecule times its mean activation.
Weights: torchani's NeuroChem files (the ``ani-model-zoo`` release), found in
``$TORCHANI_DATA_DIR/Neurochem`` (torchani's own location), else in
``$CPD_SHARED_DIR/models/ani-model-zoo/resources`` (``../shared`` beside the repository);
online, :func:`torchani.models.ANI2x` downloads them.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import warnings
from pathlib import Path

import torch

from cpd_core.models.base import AtomsBatch, Featurizer, ModelCard, WeightsNotFoundError, seeded_card, shared_dir

#: ANI-2x species in the order of its networks (H C N O S F Cl).
ANI2X_ELEMENTS = (1, 6, 7, 8, 16, 9, 17)


AEV_CARD = ModelCard(
    "ani2x-aev", family="ANI", status="original", training_data="none (handcrafted descriptor)",
    source="torchani AEVComputer.like_2x()", domain="molecules", build=lambda **kw: ANI2xAEV(**kw))


class ANI2xAEV(Featurizer):
    """Featurizer (see :mod:`cpd_core.models.base`) returning ANI-2x AEV blocks per atom.

    Blocks: ``"radial"`` (112), ``"angular"`` (896) and ``"aev"`` (both, 1,008).

    Examples
    --------
    >>> import torch
    >>> f = ANI2xAEV()
    >>> b = AtomsBatch.from_arrays([[6, 1, 1, 1, 1]], [torch.randn(5, 3).numpy()])
    >>> {k: tuple(v.shape) for k, v in f(b).items()}
    {'aev': (5, 1008), 'aev/radial': (5, 112), 'aev/angular': (5, 896)}
    """

    card = AEV_CARD
    elements = ANI2X_ELEMENTS

    def __init__(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torchani.aev import AEVComputer

        self.computer = AEVComputer.like_2x()
        lookup = torch.full((max(ANI2X_ELEMENTS) + 1,), -1, dtype=torch.int64)
        lookup[list(ANI2X_ELEMENTS)] = torch.arange(len(ANI2X_ELEMENTS))
        self._lookup = lookup

    def spec(self) -> dict:
        """Everything that determines the output: the AEV hyper-parameters and torchani's version."""
        import torchani

        c = self.computer
        return {**super().spec(), "torchani": torchani.__version__,
                "buffers": {k: v.tolist() for k, v in c.state_dict().items()},
                "cutoffs": {"radial": float(c.radial.cutoff), "angular": float(c.angular.cutoff),
                            "function": type(c.radial.cutoff_fn).__name__},
                "elements": ANI2X_ELEMENTS}

    def species(self, numbers: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ANI species indices of padded atomic numbers (−1 on padding)."""
        species = self._lookup.to(numbers.device)[numbers]
        return torch.where(mask, species, torch.full_like(species, -1))

    def features(self, batch: AtomsBatch) -> dict:
        numbers, positions, mask = batch.padded()
        computer = self.computer.to(device=positions.device, dtype=positions.dtype)
        aev = batch.unpad(computer(self.species(numbers, mask), positions))
        n_rad = computer.radial_len
        return {"aev": aev, "aev/radial": aev[:, :n_rad], "aev/angular": aev[:, n_rad:]}



ANI2X_CARD = ModelCard(
    "ani2x", family="ANI", status="original", training_data="ANI-2x dataset (ωB97X/6-31G(d), 8.9 M conformers)",
    source="torchani 2.9 NeuroChem loader, ani-model-zoo tag ani-2x (../shared), or torchani.models.ANI2x()",
    domain="molecules", build=lambda **kw: ANI2x(**kw),
    qm9_overlap="ANI-2x data set: conformers of small organic molecules, largely GDB-derived (C, H, N, O, "
                "S, F, Cl): overlaps QM9's chemical space; QM9 molecules themselves may be included "
                "(at other geometries)")
ANI2X_RANDOM_CARD = ModelCard(
    "ani2x-random", family="ANI", status="random-init", training_data="untrained", twin_of="ani2x",
    source="torchani Assembler, ANI-2x architecture, seed 0", domain="molecules",
    build=lambda **kw: ANI2x(random_init=True, **kw))

_ZOO_INFO = "ani-2x_8x.info"


@contextlib.contextmanager
def _env(name: str, value: str):
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def _quiet_torchani():
    os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import torchani  # noqa: F401


def load_ani2x_model(member: int | None = None):
    """ANI-2x (torchani ``ANI`` module) from the first place that has its weights.

    Looks in ``$TORCHANI_DATA_DIR/Neurochem``, then in the shared model zoo
    (``$CPD_SHARED_DIR/models/ani-model-zoo/resources``), then downloads with
    :func:`torchani.models.ANI2x`. Raises :class:`WeightsNotFoundError` naming every
    place it tried when none works.
    """
    _quiet_torchani()
    from torchani.neurochem import load_model_from_name
    from torchani.models import ANI2x as online_ani2x

    tried = []
    own = os.environ.get("TORCHANI_DATA_DIR")
    if own and (Path(own) / "Neurochem" / _ZOO_INFO).exists():
        return load_model_from_name("ani2x", model_index=member)
    tried.append(f"$TORCHANI_DATA_DIR/Neurochem/{_ZOO_INFO} ({own or 'TORCHANI_DATA_DIR unset'})")
    zoo = shared_dir() / "models" / "ani-model-zoo" / "resources"
    if (zoo / _ZOO_INFO).exists():
        # torchani resolves the .info file's relative paths inside <TORCHANI_DATA_DIR>/Neurochem
        with tempfile.TemporaryDirectory(prefix="cpd-torchani-") as tmp:
            (Path(tmp) / "Neurochem").symlink_to(zoo.resolve(), target_is_directory=True)
            with _env("TORCHANI_DATA_DIR", tmp):
                return load_model_from_name("ani2x", model_index=member)
    tried.append(str(zoo / _ZOO_INFO))
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(10)
    try:
        return online_ani2x(model_index=member)
    except Exception as err:  # no network, hub unreachable, ...
        tried.append(f"torchani.models.ANI2x() download ({type(err).__name__}: {err})")
    finally:
        socket.setdefaulttimeout(old_timeout)
    raise WeightsNotFoundError(
        "ANI-2x weights not found; tried: " + "; ".join(tried) + ". Point CPD_SHARED_DIR at a folder "
        "holding models/ani-model-zoo/resources (the aiqm/ani-model-zoo release), or TORCHANI_DATA_DIR at "
        "a folder whose Neurochem/ subfolder holds it.")


def _random_ani2x(seed: int = 0):
    _quiet_torchani()
    from torchani.models import SYMBOLS_2X, Assembler

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        asm = Assembler(periodic_table_index=True)
        asm.set_symbols(SYMBOLS_2X)
        asm.set_global_cutoff_fn("cosine")
        asm.set_aev_computer(radial="ani2x", angular="ani2x", strategy="pyaev")
        asm.set_atomic_networks(ctor="ani2x")
        asm.set_neighborlist("all_pairs")
        asm.set_gsaes_as_self_energies("wb97x-631gd")
        return asm.assemble(8)


class ANI2x(Featurizer):
    """ANI-2x: its AEV and the hidden layers of its element networks (see the module docstring).

    Parameters
    ----------
    member : int, optional
        One ensemble member (0–7) instead of the mean over all 8.
    random_init : bool
        The same architecture with untrained weights: the ``ani2x-random`` twin.
    seed : int
        Seed of the twin's weights (``torch.manual_seed``; default 0). Only for ``random_init``.

    Blocks (per atom): ``aev`` (1,008), ``hidden1``/``hidden2``/``hidden3`` (element-segmented,
    1,344 / 1,088 / 864 wide) and ``atomic_energy`` (1: the network output plus the element's
    self energy, in Hartree; the molecule's ANI-2x energy is their sum).
    """

    elements = ANI2X_ELEMENTS

    def __init__(self, member: int | None = None, random_init: bool = False, seed: int = 0):
        self.card = seeded_card(ANI2X_RANDOM_CARD if random_init else ANI2X_CARD, seed)
        self.seed = int(seed)
        if member is not None and not 0 <= int(member) < 8:
            raise ValueError(f"ANI-2x has 8 ensemble members (0-7), got member={member}")
        self.member = None if member is None else int(member)
        model = _random_ani2x(self.seed) if random_init else load_ani2x_model()
        model.requires_grad_(False)
        self.module = model.eval()
        nets = model.neural_networks
        members = list(nets.members) if hasattr(nets, "members") else [nets]
        self.members = members if self.member is None else [members[self.member]]
        # the networks' element order (torchani's species index) -> atomic number
        self.symbols = tuple(model.symbols)
        self._lookup = torch.full((119,), -1, dtype=torch.int64)
        from ase.data import atomic_numbers

        self._lookup[[atomic_numbers[s] for s in self.symbols]] = torch.arange(len(self.symbols))
        first = self.members[0].atomics
        self.widths = [[net.layers[k].out_features for net in first.values()]
                       for k in range(len(next(iter(first.values())).layers))]

    def options(self) -> dict:
        return {"member": self.member, "symbols": self.symbols}

    def features(self, batch: AtomsBatch) -> dict:
        numbers, positions, mask = batch.padded()
        species = self._lookup.to(numbers.device)[numbers]
        species = torch.where(mask, species, torch.full_like(species, -1))
        aev = batch.unpad(self.module.aev_computer(species, positions))
        elem = self._lookup.to(numbers.device)[batch.numbers]
        shifts = self.module.energy_shifter.self_energies.to(aev.dtype)
        hidden = [aev.new_zeros((len(aev), sum(w))) for w in self.widths]
        energy = aev.new_zeros((len(aev), 1))
        for member in self.members:
            for e, net in enumerate(member.atomics.values()):
                rows = (elem == e).nonzero(as_tuple=True)[0]
                if len(rows) == 0:
                    continue
                h = aev[rows]
                for k, layer in enumerate(net.layers):
                    h = net.activation(layer(h))
                    start = sum(self.widths[k][:e])
                    hidden[k][rows, start:start + self.widths[k][e]] += h
                energy[rows] += net.final_layer(h)
        n = len(self.members)
        out = {"aev": aev}
        out.update({f"hidden{k + 1}": h / n for k, h in enumerate(hidden)})
        out["atomic_energy"] = energy / n + shifts[elem].unsqueeze(-1)
        return out


CARDS = [AEV_CARD, ANI2X_CARD, ANI2X_RANDOM_CARD]
