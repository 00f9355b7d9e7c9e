r"""MACE (Batatia et al., NeurIPS 2022): per-layer node features of MACE-MP-0 and MACE-OFF23.

MACE is an equivariant message-passing network. Layer :math:`t` pools neighbour
messages into an atomic basis :math:`A_i`, raises it to body order
:math:`\nu \le` ``correlation`` by symmetric tensor products, and mixes the result
linearly with a species-dependent self-connection:

.. math::

    A^{(t)}_{i,klm} = \sum_{j \in \mathcal N(i)} R^{(t)}_{kl}(r_{ij})\, Y_{lm}(\hat{\mathbf r}_{ij})\,
        \mathbf W^{(t)} \mathbf h^{(t-1)}_j, \qquad
    \mathbf h^{(t)}_i = \mathrm{Linear}\Big(\sum_{\nu} \mathbf c^{(t)}_{z_i,\nu} \cdot
        \mathbf B^{(t),\nu}_i\Big) + \mathbf W_{z_i} \mathbf h^{(t-1)}_i .

The features returned here are the model's own ``out["node_feats"]``, the
concatenation of :math:`\mathbf h^{(t)}` over layers, split at each layer's irreps
(``model.products[t].linear.irreps_out``) into blocks ``layer{t}/L{l}``:
``(N, c)`` for scalars, ``(N, c, 2l + 1)`` for degree-l channels in e3nn's real
basis. The released foundation models keep only scalars in their last layer, so
MACE-MP-0 medium and MACE-OFF23 medium give ``layer1/L0`` (N, 128), ``layer1/L1``
(N, 128, 3) and ``layer2/L0`` (N, 128).

Registered models:

- ``mace-mp-0-medium`` (Batatia et al. 2023, arXiv:2401.00096) and ``mace-off-medium``
  (Kovács et al. 2023, arXiv:2312.15211): the published weights, fetched the way
  ``mace.calculators.mace_mp`` / ``mace_off`` fetch them (cached under
  ``$XDG_CACHE_HOME/mace``, default ``~/.cache/mace``), or read from the file named by
  ``$CPD_MACE_MP_MODEL`` / ``$CPD_MACE_OFF_MODEL``. Without a network and without
  the file, building them raises :class:`WeightsNotFoundError`.
- ``mace-mp-0-medium-random`` and ``mace-off-medium-random``: the same networks,
  untrained (``torch.manual_seed(seed)``, default 0).
- ``"mace:<path>"``: any MACE ``.model`` file (see :func:`from_file`).

The input graph of a whole :class:`AtomsBatch` is built in torch
(:func:`cpd_core.models.graph.radius_graph` with the model's ``r_max``), not through
MACE's per-structure ``AtomicData``; both give the same energies (tested).

The small MACE this project trains on QM9 is :class:`cpd_core.models.trained.mace_net.MACENet`.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path

import torch

from cpd_core.errors import InputError
from cpd_core.models.base import AtomsBatch, Featurizer, ModelCard, WeightsNotFoundError, seeded_card, split_irreps
from cpd_core.models.graph import radius_graph

#: URLs of the released checkpoints, as in ``mace.calculators.foundations_models``
#: (``mace_mp_urls["medium"]``, ``mace_off_urls["medium"]``).
MACE_MP_0_MEDIUM_URL = ("https://github.com/ACEsuit/mace-mp/releases/download/mace_mp_0/"
                        "2023-12-03-mace-128-L1_epoch-199.model")
MACE_OFF23_MEDIUM_URL = ("https://raw.githubusercontent.com/ACEsuit/mace-off/main/mace_off23/"
                         "MACE-OFF23_medium.model")

#: Seconds without a byte from the server before a download is given up.
DOWNLOAD_TIMEOUT_S = 15.0

#: The 89 elements of MACE-MP-0 (MPtrj): H-Bi and Ac-Pu.
MP0_ELEMENTS = tuple(range(1, 84)) + tuple(range(89, 95))
#: The 10 elements of MACE-OFF23: H C N O F P S Cl Br I.
OFF23_ELEMENTS = (1, 6, 7, 8, 9, 15, 16, 17, 35, 53)

# Hyper-parameters of the released medium models. MACE-MP-0 medium: the training command
# github.com/ACEsuit/mace-mp/blob/main/mace_mp_0/2023-12-03-mace-128-L1.sh; avg_num_neighbors,
# scale and shift as stored in the checkpoint (MPtrj statistics, r_max 6 Å). The network has
# 4,688,656 parameters, the released checkpoint's count. MACE-OFF23 medium: Kovács et al. 2023
# (128 channels, L = 1, r_max 5 Å, mace's defaults otherwise). Its avg_num_neighbors is
# not in mace's code or docs; we use the mean number of neighbours within 5 Å over 1000 QM9
# molecules (load_qm9(n=1000, seed=0)), the statistic mace's trainer computes. Both
# checkpoints predate mace's reduced Clebsch-Gordan basis, hence use_reduced_cg=False.
MP0_MEDIUM = dict(
    atomic_numbers=MP0_ELEMENTS, r_max=6.0, num_bessel=10, num_polynomial_cutoff=5, max_ell=3,
    hidden_irreps="128x0e+128x1o", MLP_irreps="16x0e", num_interactions=2, correlation=3,
    radial_MLP=[64, 64, 64], avg_num_neighbors=61.964672446250916,
    atomic_inter_scale=0.8041538754478097, atomic_inter_shift=0.16409696359187365)
OFF23_MEDIUM = dict(
    atomic_numbers=OFF23_ELEMENTS, r_max=5.0, num_bessel=8, num_polynomial_cutoff=5, max_ell=3,
    hidden_irreps="128x0e+128x1o", MLP_irreps="16x0e", num_interactions=2, correlation=3,
    radial_MLP=[64, 64, 64], avg_num_neighbors=15.52,
    atomic_inter_scale=1.0, atomic_inter_shift=0.0)


def _import_mace():
    """Import mace (which sets ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` that e3nn 0.4.4 needs).

    mace prints a notice that cuequivariance is absent on import; it is swallowed here.
    """
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        import mace.modules  # noqa: F401
    return mace


def layer_irreps(model: torch.nn.Module) -> list[list[tuple[int, int]]]:
    """(multiplicity, l) of each layer's slice of ``node_feats``, in e3nn order.

    Each layer's features are the output of its product block's final linear map.
    """
    from e3nn import o3

    return [[(mul, ir.l) for mul, ir in o3.Irreps(str(product.linear.irreps_out))]
            for product in model.products]


class MACEFeaturizer(Featurizer):
    """Featurizer (see :mod:`cpd_core.models.base`) returning a MACE model's node features per layer.

    One forward pass per batch (``compute_force=False``, no autograd); blocks
    ``layer{t}/L{l}`` are slices of ``out["node_feats"]`` (see the module docstring).

    Parameters
    ----------
    model : torch.nn.Module
        A mace ``MACE`` or ``ScaleShiftMACE`` (anything with ``products``, ``r_max``,
        ``atomic_numbers`` and the mace ``forward(data, training, compute_force)``).
    card : ModelCard
    head : str, optional
        Readout head of a multi-head model; default as ``MACECalculator``: the only head,
        else the one named "default". It picks the energy readout (and E0s) of
        :meth:`mace_input`'s energies; the node features do not depend on it.
    """

    def __init__(self, model: torch.nn.Module, card: ModelCard, head: str | None = None):
        self.card = card
        self.module = model.eval()
        self.elements = tuple(int(z) for z in model.atomic_numbers)
        self.r_max = float(model.r_max)
        self.layer_irreps = layer_irreps(model)
        heads = list(getattr(model, "heads", None) or ["Default"])
        if head is None:
            named = [h for h in heads if h.lower() == "default"]
            if len(heads) > 1 and not named:
                raise InputError(f"{card.name}: pick a head with head=...; the model has {heads}")
            head = heads[0] if len(heads) == 1 else named[0]
        if head not in heads:
            raise InputError(f"{card.name}: unknown head {head!r}; the model has {heads}")
        self.heads, self.head = heads, head
        self._index = torch.full((max(self.elements) + 1,), -1, dtype=torch.int64)
        self._index[list(self.elements)] = torch.arange(len(self.elements))
        self._weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}

    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> "MACEFeaturizer":
        """Move to ``device``/``dtype``, casting from the weights as loaded.

        A float64 checkpoint moved to float32 and back would otherwise keep float32-rounded
        weights; here every move recasts the stored originals.
        """
        self.module.to(device=device, dtype=dtype)
        self.module.load_state_dict(self._weights)
        return self

    def options(self) -> dict:
        """The cutoff of the input graph."""
        return {"r_max": self.r_max}

    def mace_input(self, batch: AtomsBatch) -> dict[str, torch.Tensor]:
        """MACE's input dictionary for the whole batch (what its ``DataLoader`` would give)."""
        numbers = batch.numbers
        bad = sorted(set(numbers.unique().tolist()) - set(self.elements))
        if bad:
            raise InputError(f"{self.name} does not support atomic numbers {bad}")
        # mace's forward calls positions.requires_grad_(): give it a copy, not the caller's tensor
        positions = batch.positions.detach().clone()
        species = self._index.to(numbers.device)[numbers]
        node_attrs = torch.nn.functional.one_hot(species, len(self.elements)).to(positions.dtype)
        edge_index, unit_shifts, shifts = radius_graph(positions, batch.batch, self.r_max,
                                                       batch.cell, batch.pbc)
        n = batch.n_structures
        cell = (batch.cell.to(positions.dtype).reshape(3 * n, 3) if batch.cell is not None
                else positions.new_zeros((3 * n, 3)))
        data = {"positions": positions, "node_attrs": node_attrs, "edge_index": edge_index,
                "shifts": shifts, "unit_shifts": unit_shifts, "cell": cell,
                "batch": batch.batch, "ptr": batch.ptr}
        if len(self.heads) > 1:
            data["head"] = torch.full((n,), self.heads.index(self.head), dtype=torch.int64,
                                      device=numbers.device)
        return data

    def features(self, batch: AtomsBatch) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            node_feats = self.module(self.mace_input(batch), training=False,
                                     compute_force=False)["node_feats"]
        blocks, start = {}, 0
        for t, irreps in enumerate(self.layer_irreps, start=1):
            width = sum(mul * (2 * l + 1) for mul, l in irreps)
            blocks.update(split_irreps(node_feats[:, start:start + width], irreps, f"layer{t}"))
            start += width
        if start != node_feats.shape[1]:
            raise RuntimeError(f"layer irreps cover {start} of {node_feats.shape[1]} node features")
        return blocks


# --- weights ---------------------------------------------------------------------------------


def load_model_file(path: str | Path) -> torch.nn.Module:
    """Unpickle a MACE ``.model`` file onto the CPU.

    This runs ``torch.load(weights_only=False)``, which **executes pickled code**: load
    only files you trust (the released MACE checkpoints are full pickled modules).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(f"no MACE model file at {path}")
    _import_mace()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = torch.load(path, map_location="cpu", weights_only=False)
    if not hasattr(model, "products") or not hasattr(model, "r_max"):
        raise InputError(f"{path} holds a {type(model).__name__}, not a MACE model")
    return model


def _download(url: str, path: Path) -> None:
    """Fetch ``url`` to ``path`` with mace's own downloader, giving up after a short silence."""
    from mace.calculators import foundations_models as fm

    path.parent.mkdir(parents=True, exist_ok=True)
    _, info = fm._urlretrieve_with_timeout(url, str(path), timeout=DOWNLOAD_TIMEOUT_S)
    if "text/html" in str(info.get("Content-Type", "")):
        path.unlink(missing_ok=True)
        raise OSError(f"{url} answered with an HTML page, not a model file")


def _cached_path(kind: str) -> Path:
    """Where ``mace_mp(model="medium")`` / ``mace_off(model="medium")`` cache their file."""
    from mace.tools.utils import get_cache_dir

    if kind == "mp":
        # mace_mp keeps only letters, digits and "_" of the file name
        name = "".join(c for c in os.path.basename(MACE_MP_0_MEDIUM_URL) if c.isalnum() or c == "_")
    else:
        name = os.path.basename(MACE_OFF23_MEDIUM_URL)
    return Path(get_cache_dir()) / name


def _released_weights(kind: str, env: str, url: str, label: str) -> Path:
    """The file of a released checkpoint: ``$env``, else mace's cache, else downloaded into it."""
    howto = (f"Download {url} elsewhere and point at it with {env}=/path/to/file.model, "
             f"or load('mace:/path/to/file.model').")
    if os.environ.get(env):
        path = Path(os.environ[env]).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(f"{label}: {env}={os.environ[env]} is not a file. {howto}")
        return path
    _import_mace()
    path = _cached_path(kind)
    if path.is_file():
        return path
    try:
        _download(url, path)
    except Exception as err:  # network down, DNS, timeout, HTTP error, read-only cache
        raise WeightsNotFoundError(
            f"{label} weights not found: {env} is unset, mace's cache file {path} does not exist, "
            f"and downloading {url} failed ({type(err).__name__}: {err}). {howto}") from err
    return path


def _random(card: ModelCard, hypers: dict, seed: int = 0) -> MACEFeaturizer:
    """The random-init twin ``card``: a MACE with the ``hypers`` of a released model, drawn with ``seed``."""
    featurizer = MACEFeaturizer(build_mace(hypers, seed), seeded_card(card, seed))
    featurizer.seed = int(seed)
    return featurizer


def _released(card: ModelCard, kind: str, env: str, url: str, head: str | None = None) -> MACEFeaturizer:
    path = _released_weights(kind, env, url, card.name)
    return MACEFeaturizer(load_model_file(path), card, head=head)


def from_file(path: str, head: str | None = None, status: str = "original",
              training_data: str = "unknown (local file)",
              domain: str = "molecules, crystals") -> MACEFeaturizer:
    """Featurizer of a local MACE ``.model`` file, registered as ``"mace:<path>"``.

    The file is unpickled with ``torch.load(weights_only=False)``, which executes code
    stored in it: use trusted files only.

    Examples
    --------
    >>> from cpd_core.models import load
    >>> load("mace:/nowhere/MACE-OFF23_medium.model")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cpd_core.models.base.WeightsNotFoundError: no MACE model file at /nowhere/MACE-OFF23_medium.model
    """
    card = ModelCard(f"mace:{path}", family="MACE", status=status, training_data=training_data,
                     source=str(path), domain=domain, build=lambda **kw: from_file(path, **kw))
    return MACEFeaturizer(load_model_file(path), card, head=head)


def _scale_shift_mace(hypers: dict, keep_last_layer_irreps: bool = False) -> torch.nn.Module:
    """A ``ScaleShiftMACE`` with residual interaction blocks, drawn from the global RNG, in float64."""
    import numpy as np

    _import_mace()
    from e3nn import o3
    from mace import modules

    h = dict(hypers)
    zs = list(h.pop("atomic_numbers"))
    h.update(hidden_irreps=o3.Irreps(h["hidden_irreps"]), MLP_irreps=o3.Irreps(h["MLP_irreps"]))
    residual = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
    previous = torch.get_default_dtype()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.set_default_dtype(torch.float64)
        try:
            return modules.ScaleShiftMACE(
                **h,
                interaction_cls=residual, interaction_cls_first=residual, num_elements=len(zs),
                atomic_numbers=zs, atomic_energies=np.zeros(len(zs)), gate=torch.nn.functional.silu,
                radial_type="bessel", use_reduced_cg=False, keep_last_layer_irreps=keep_last_layer_irreps)
        finally:
            torch.set_default_dtype(previous)


def build_mace(hypers: dict, seed: int = 0, keep_last_layer_irreps: bool = False) -> torch.nn.Module:
    """An untrained ``ScaleShiftMACE`` with residual interaction blocks, drawn with ``seed``.

    Built in float64 (e3nn's coupling constants stay exact; cast later) without touching
    the global RNG. E0s are zero: they shift the energy, not the node features.
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return _scale_shift_mace(hypers, keep_last_layer_irreps).eval()


MP_CARD = ModelCard(
    "mace-mp-0-medium", family="MACE", status="original", training_data="MPtrj (PBE, 1.6 M structures)",
    source=f'mace.calculators.mace_mp(model="medium"): {MACE_MP_0_MEDIUM_URL}', domain="crystals",
    build=lambda **kw: _released(MP_CARD, "mp", "CPD_MACE_MP_MODEL", MACE_MP_0_MEDIUM_URL, **kw),
    offline=False)
OFF_CARD = ModelCard(
    "mace-off-medium", family="MACE", status="original", training_data="SPICE (ωB97M-D3(BJ))",
    source=f'mace.calculators.mace_off(model="medium"): {MACE_OFF23_MEDIUM_URL}', domain="molecules",
    build=lambda **kw: _released(OFF_CARD, "off", "CPD_MACE_OFF_MODEL", MACE_OFF23_MEDIUM_URL, **kw),
    offline=False,
    qm9_overlap="SPICE (small drug-like and organic molecules from PubChem, dimers, dipeptides; H C N O F "
                "P S Cl Br I): overlaps QM9's chemical space; QM9 molecules themselves may be included")
MP_RANDOM_CARD = ModelCard(
    "mace-mp-0-medium-random", family="MACE", status="random-init", training_data="untrained",
    source="mace-torch ScaleShiftMACE with MACE-MP-0 medium hyper-parameters, torch.manual_seed(0)",
    domain="crystals", twin_of="mace-mp-0-medium",
    build=lambda seed=0: _random(MP_RANDOM_CARD, MP0_MEDIUM, seed))
OFF_RANDOM_CARD = ModelCard(
    "mace-off-medium-random", family="MACE", status="random-init", training_data="untrained",
    source="mace-torch ScaleShiftMACE with MACE-OFF23 medium hyper-parameters, torch.manual_seed(0)",
    domain="molecules", twin_of="mace-off-medium",
    build=lambda seed=0: _random(OFF_RANDOM_CARD, OFF23_MEDIUM, seed))

CARDS = [MP_CARD, OFF_CARD, MP_RANDOM_CARD, OFF_RANDOM_CARD]
PREFIXES = {"mace": from_file}
