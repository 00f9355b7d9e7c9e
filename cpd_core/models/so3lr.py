r"""SO3LR: the invariant and equivariant atom features after each Euclidean transformer layer.

SO3LR (Kabylda et al. 2025, *J. Am. Chem. Soc.*, doi:10.1021/jacs.5c09558) is a SO3krates
network (Frank et al. 2024, *Nat. Commun.* 15, 6539) with physical long-range terms (ZBL
repulsion, electrostatics of learned partial charges, many-body-free dispersion from learned
Hirshfeld ratios). It was trained on a PBE0+MBD data set of about 4 million neutral and charged
molecules and molecular complexes (the wheel does not say which; see the paper); here it stands in
for MACE-OFF, whose weights cannot be had offline. Each atom carries invariant features
:math:`h_i \in \mathbb R^{128}` (an element embedding plus charge and spin embeddings) and one
channel of equivariant features per degree, :math:`\chi_i = (\chi_i^{(1)}, \dots,
\chi_i^{(4)})` with :math:`2l + 1` real spherical-harmonic components each (24 numbers; zero at
input). Three Euclidean transformer layers (cutoff 4.5 Å, 32 Bernstein radial functions, 4
heads) update both by attention over neighbours,

.. math::

    h_i \leftarrow h_i + \sum_{j} \alpha_{ij} \, v_j, \qquad
    \chi_i^{(l)} \leftarrow \chi_i^{(l)} + \sum_{j} \alpha^{(l)}_{ij} \, Y^{(l)}(\hat r_{ij}),

followed by an interaction block mixing :math:`h_i` with the per-degree invariants
:math:`\lVert\chi_i^{(l)}\rVert^2` (layer norms and a residual MLP on :math:`h`). Energies,
charges and Hirshfeld ratios are MLPs of the last layer's :math:`h`.

Blocks (per atom, in the batch's atom order):

* ``embedding/L0`` — the invariant input of layer 1, (N, 128);
* ``layer{k}/L0`` — :math:`h` after layer k, (N, 128), for k = 1, 2, 3;
* ``layer{k}/L{l}`` — :math:`\chi^{(l)}` after layer k, (N, 1, 2l + 1), for l = 1 … 4 (the model's
  ``degrees``, stored in that order, 3 + 5 + 7 + 9 = 24 columns).

The package returns the last layer only (``return_descriptors`` / ``return_eqv_descriptors``
of the forward pass; ``get_representation``); the featurizer reads every layer with forward
hooks on ``model.euclidean_transformers`` while running ``model.get_representation`` (the
network up to its heads) on ONE batch dict for the whole batch, built here: one-hot elements,
``edge_index`` ``[i, j]`` and ``shifts`` from :func:`~cpd_core.models.graph.radius_graph` with
the model's cutoff, ``batch``/``ptr``, total charge and spin per structure (0 by default: QM9
molecules are neutral closed-shell). The long-range terms act only on the energy, after the
descriptors, so the features need no long-range neighbour list; :meth:`SO3LRFeaturizer.energy`
builds one (all pairs within ``r_max_lr`` = 12 Å, no periodic images for molecules) for the
model's full forward pass. As in ``SO3LRCalculator``, ``r_max_lr`` = 12 Å and the dispersion
damping cutoff 2 Å are set on the model.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import inspect
import io
import warnings

import torch

from cpd_core.models.base import AtomsBatch, Featurizer, ModelCard, WeightsNotFoundError, seeded_card, split_irreps
from cpd_core.models.graph import radius_graph

#: Long-range cutoff (Å) and dispersion damping cutoff (Å): SO3LRCalculator's defaults.
R_MAX_LR = 12.0
DISPERSION_DAMPING = 2.0

SO3LR_CARD = ModelCard(
    "so3lr", family="SO3krates", status="stand-in",
    training_data="PBE0+MBD, ~4 M neutral and charged molecules and complexes (Kabylda et al. 2025)",
    source="so3krates-torch 0.2.1 wheel", domain="molecules", stands_in_for="MACE-OFF",
    build=lambda **kw: SO3LRFeaturizer(**kw),
    qm9_overlap="training data include QM7-X (GDB13-derived molecules up to 7 heavy atoms of C, N, O, S, Cl, "
                "with conformers) and SPICE (Kabylda et al. 2025): overlaps QM9's chemical space; QM9 "
                "molecules themselves may be included (its smaller ones, at other geometries)")
SO3LR_RANDOM_CARD = ModelCard(
    "so3lr-random", family="SO3krates", status="random-init", training_data="untrained",
    source="so3krates-torch 0.2.1, SO3LR(**hyper-parameters of the pretrained model), seed 0",
    domain="molecules", twin_of="so3lr", build=lambda **kw: SO3LRFeaturizer(random_init=True, **kw))

# constructor argument -> attribute the model stores it under, where the two names differ
_RENAMED = {"avg_num_neighbors": "avg_num_neighbors_param", "cutoff_fn": "cutoff_fn_name",
            "activation_fn": "activation_fn_name", "energy_activation_fn": "energy_activation_fn_name"}


def hyperparameters(model) -> dict:
    """The constructor arguments of an ``SO3LR`` model, read back from the attributes it stores."""
    from so3krates_torch.modules.models import SO3LR, So3krates

    names = [n for cls in (So3krates, SO3LR) for n, p in inspect.signature(cls.__init__).parameters.items()
             if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return {n: getattr(model, _RENAMED.get(n, n)) for n in names if hasattr(model, _RENAMED.get(n, n))}


def load_so3lr(random_init: bool = False, seed: int = 0):
    """The pretrained SO3LR from the wheel, or (``random_init``) the same network with fresh weights.

    The twin is ``SO3LR(**hyperparameters(pretrained))`` built under ``torch.manual_seed(seed)``.
    SO3LR's constructor sets torch's default dtype; it is restored afterwards.
    """
    resource = importlib.resources.files("so3krates_torch.pretrained.so3lr") / "so3lr.model"
    if not resource.is_file():
        raise WeightsNotFoundError(
            f"SO3LR weights are not at {resource}; reinstall the wheel (`pip install so3krates-torch==0.2.1`)")
    default_dtype = torch.get_default_dtype()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            with importlib.resources.as_file(resource) as path:
                model = torch.load(path, map_location="cpu", weights_only=False)
            model.r_max_lr = R_MAX_LR
            model.dispersion_energy_cutoff_lr_damping = DISPERSION_DAMPING
            if random_init:
                from so3krates_torch.modules.models import SO3LR

                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    model = SO3LR(**hyperparameters(model))
    finally:
        torch.set_default_dtype(default_dtype)
    model.requires_grad_(False)
    return model.eval()


class SO3LRFeaturizer(Featurizer):
    """SO3LR's per-layer atom features (see the module docstring).

    Parameters
    ----------
    random_init : bool
        The same network with untrained weights: the ``so3lr-random`` twin.
    seed : int
        Seed of the twin's weights (``torch.manual_seed``; default 0). Only for ``random_init``.
    total_charge, total_spin : float
        Per-structure charge (e) and spin (number of unpaired electrons / 2) fed to SO3LR's
        charge and spin embeddings, the same for every structure.

    Examples
    --------
    >>> from ase.build import molecule  # doctest: +SKIP
    >>> w = molecule("H2O"); f = SO3LRFeaturizer()  # doctest: +SKIP
    >>> {k: tuple(v.shape) for k, v in f(AtomsBatch.from_arrays([w.numbers], [w.positions])).items()}
    ... # doctest: +SKIP
    {'embedding/L0': (3, 128), 'layer1/L0': (3, 128), 'layer1/L1': (3, 1, 3), 'layer1/L2': (3, 1, 5),
     'layer1/L3': (3, 1, 7), 'layer1/L4': (3, 1, 9), 'layer2/L0': (3, 128), ...}
    """

    def __init__(self, random_init: bool = False, total_charge: float = 0.0, total_spin: float = 0.0,
                 seed: int = 0):
        self.card = seeded_card(SO3LR_RANDOM_CARD if random_init else SO3LR_CARD, seed)
        self.seed = int(seed)
        self.module = load_so3lr(random_init=random_init, seed=self.seed)
        self.total_charge = float(total_charge)
        self.total_spin = float(total_spin)
        self.elements = tuple(range(1, self.module.num_elements + 1))
        #: the equivariant features' layout: one channel per degree, in the model's order
        self.irreps = [(self.module.num_features, 0)] + [(1, int(l)) for l in self.module.degrees]

    def options(self) -> dict:
        return {"r_max": float(self.module.r_max), "total_charge": self.total_charge,
                "total_spin": self.total_spin}

    def graph(self, batch: AtomsBatch, long_range: bool = False) -> dict:
        """SO3LR's input dict for the whole batch; ``long_range`` adds the pairs within ``r_max_lr``."""
        model = self.module
        r, b, s = batch.positions, batch.batch, batch.n_structures
        edge_index, unit_shifts, shifts = radius_graph(r, b, float(model.r_max), batch.cell, batch.pbc)
        if long_range:
            edge_index_lr, unit_shifts_lr, shifts_lr = radius_graph(r, b, float(model.r_max_lr), batch.cell,
                                                                    batch.pbc)
        else:
            edge_index_lr, unit_shifts_lr, shifts_lr = edge_index[:, :0], unit_shifts[:0], shifts[:0]
        cell = r.new_zeros((s, 3, 3)) if batch.cell is None else batch.cell
        per_structure = r.new_ones(s)
        return {
            # prepare_graph sets requires_grad on the positions it is given: pass a detached view
            "positions": r.detach(), "atomic_numbers": batch.numbers,
            "node_attrs": torch.nn.functional.one_hot(batch.numbers - 1, model.num_elements).to(r.dtype),
            "batch": b, "ptr": batch.ptr, "cell": cell.reshape(-1, 3),
            "edge_index": edge_index, "shifts": shifts, "unit_shifts": unit_shifts,
            "edge_index_lr": edge_index_lr, "shifts_lr": shifts_lr, "unit_shifts_lr": unit_shifts_lr,
            "head": torch.zeros(s, dtype=torch.int64, device=r.device),
            "total_charge": per_structure * self.total_charge, "total_spin": per_structure * self.total_spin,
        }

    @contextlib.contextmanager
    def _layer_hooks(self, captured: dict):
        transformers = self.module.euclidean_transformers

        def first_input(module, args, kwargs):
            captured["embedding/L0"] = kwargs["inv_features"] if "inv_features" in kwargs else args[0]

        def keep(k):
            def hook(module, args, output):
                inv, ev = output[0], output[1]
                captured.update(split_irreps(torch.cat([inv, ev], dim=1), self.irreps, f"layer{k}"))
            return hook

        handles = [transformers[0].register_forward_pre_hook(first_input, with_kwargs=True)]
        handles += [t.register_forward_hook(keep(k + 1)) for k, t in enumerate(transformers)]
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    def features(self, batch: AtomsBatch) -> dict:
        captured: dict = {}
        with self._layer_hooks(captured), torch.no_grad():
            self.module.get_representation(self.graph(batch))
        return captured

    def forward(self, batch: AtomsBatch) -> tuple[dict, dict]:
        """Blocks and the model's own full forward output (energy, forces, charges, last-layer
        descriptors ``inv_features`` and ``ev_features``) for ``batch``, long-range terms included."""
        captured: dict = {}
        precision = torch._tensor_str.PRINT_OPTS.precision  # SO3LR.forward sets print precision 8
        try:
            with self._layer_hooks(captured), torch.enable_grad():
                out = self.module(self.graph(batch, long_range=True), return_descriptors=True,
                                  return_eqv_descriptors=True)
        finally:
            torch.set_printoptions(precision=precision)
        detach = {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in out.items()}
        return {k: v.detach() for k, v in captured.items()}, detach

    def energy(self, batch: AtomsBatch) -> torch.Tensor:
        """SO3LR's total energy per structure (S,) in eV, long-range terms included."""
        return self.forward(batch)[1]["energy"]


CARDS = [SO3LR_CARD, SO3LR_RANDOM_CARD]
