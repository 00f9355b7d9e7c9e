r"""matgl 4.1.2 models (M3GNet, TensorNet, SO3Net, MEGNet): per-layer atom features from ``feature_dict``.

Every matgl network stores its intermediate outputs in ``model.feature_dict`` on each
forward pass (``embedding``, ``gc_1`` … ``gc_<nblocks>``, ``readout``, ...); this module reads
them from there, one forward pass per batch, and turns them into blocks:

* **M3GNet** (Chen & Ong 2022, *Nat. Comput. Sci.* 2, 718) and **MEGNet** (Chen et al. 2019,
  *Chem. Mater.* 31, 3564): invariant node features ``embedding/L0`` and ``layer{k}/L0``,
  (N, d), from ``feature_dict["embedding" | "gc_k"]["node_feat"]``. For MEGNet these are the
  features after the node encoder MLP (d = 32); for M3GNet, d = 64. M3GNet's ``readout/L0``
  (N, 1) is its per-atom energy (before the scale ``data_std``); MEGNet's readout is a
  per-structure Set2Set vector and is not returned.
* **TensorNet** (Simeon & De Fabritiis 2023, NeurIPS): each atom carries C rank-2 Cartesian
  tensors :math:`X` (``feature_dict["embedding" | "gc_k"]``, (N, C, 3, 3)) that rotate as
  :math:`X \to R X R^\top`. Each is split as

  .. math::

      X = \tfrac{\operatorname{tr} X}{3} I + A + S, \qquad A = \tfrac12 (X - X^\top),
      \qquad S = \tfrac12 (X + X^\top) - \tfrac{\operatorname{tr} X}{3} I,

  into ``L0`` :math:`= \operatorname{tr} X / \sqrt 3` (N, C) (the norm of the isotropic part),
  ``L1`` = the axial vector :math:`a` of :math:`A` (:math:`A v = a \times v`), (N, C, 3), and
  ``L2`` = the coordinates of :math:`S` in an orthonormal basis of symmetric traceless
  matrices, (N, C, 5), so that :math:`\lVert L2 \rVert = \lVert S \rVert_F`,
  :math:`\lVert A \rVert_F = \sqrt 2 \lVert a \rVert` and
  :math:`\lVert X \rVert_F^2 = L0^2 + 2 \lVert L1 \rVert^2 + \lVert L2 \rVert^2`
  (:func:`tensor_irreps`). Under a rotation L0 is unchanged, L1 rotates by :math:`R` and L2
  by an orthogonal 5 × 5 matrix. ``readout/L0`` (N, C) is the per-atom input of the energy
  head (LayerNorm + linear of the tensor norms of the last layer).
* **SO3Net** (Schütt et al. 2023, *J. Chem. Phys.* 158, 144801): spherical-harmonic
  coefficients (N, 9, C) for l = 0, 1, 2 (``embedding`` is the element embedding, (N, 1, C));
  returned channels first as ``L0`` (N, C), ``L1`` (N, C, 3) (real-SH order y, z, x) and
  ``L2`` (N, C, 5). ``readout/L0`` (N, 1) is the per-atom energy (``atomic_properties``).

Graphs: the whole :class:`AtomsBatch` becomes one PyG graph (``node_type`` = position of the
element in the model's ``element_types``, ``edge_index`` and ``pbc_offshift`` from
:func:`cpd_core.models.graph.radius_graph` with the model's cutoff, ``batch``), built in torch
without matgl's per-structure pymatgen converters (``Molecule2Graph``/``Structure2Graph``,
which list the same edges). Molecules (``batch.cell is None``) have no periodic images;
crystals use their cells. MEGNet needs a global state: zeros (2,) for the formation-energy
model (the default of matgl's ``Structure2Graph``, what it was trained with), the fidelity
index (``fidelity=0``: PBE) for the multi-fidelity band-gap model.

Checkpoints are matgl model folders (``model.json``, ``model.pt``, ``state.pt``), looked for
in ``$CPD_MATGL_MODELS``, else ``<shared>/models/matgl/pretrained_models``; when absent,
``matgl.load_model(name)`` fetches ``materialyze/<name>`` from the Hugging Face hub (not with
``HF_HUB_OFFLINE=1``). ``"matgl:/path/to/folder"`` loads any matgl checkpoint.

Random-initialisation twins rebuild the network from the checkpoint's own constructor
arguments (``model._init_args``, what matgl's ``IOMixIn`` saves in ``model.pt``) under
``torch.manual_seed(seed)``.

SO3Net's convolutions run :func:`so3_convolution`, the same sum as matgl's ``SO3Convolution``
contracted in another order (6x faster on a CPU, far less memory; equal to float round-off,
``tests/models/test_matgl.py``).

Checkpoint conventions. The checkpoints in ``../shared`` (matgl commit e9cde229, December
2025) were fit by matgl's DGL code (M3GNet, MEGNet, TensorNet-ANI-1x) or its first PyG port
(TensorNet-MatPES). matgl 4.1.2 runs the same weights through message passing that sums each
edge's message into the edge's *source* atom ("post-#761 aggregation convention", docstrings of
``M3GNetGraphConv`` and ``MEGNetGraphConv`` in ``matgl/layers/_graph_convolution.py``), where the
code that fit them summed into the *destination* (DGL ``update_all(copy_e, sum | mean)`` in
``M3GNetGraphConv.node_update_`` / ``MEGNetGraphConv.node_update_`` of
``src/matgl/layers/_graph_convolution_dgl.py`` at e9cde229; ``aggregate(..., edge_index[1])`` in
``TensorEmbedding.forward`` of ``src/matgl/layers/_embedding_pyg.py``). The message is built from
``[v_src, v_dst, e_src->dst]``, so atom *i* now reads its own features where the weights expect
its neighbour's and vice versa. Every atom of Si, Cu or Mo looks like its neighbours, which is
why elements came out right and compounds did not. Under plain 4.1.2, M3GNet-MP-2021 gives -1.30
(NaCl), -2.04 (MgO), +0.71 (LiF) eV/atom. :func:`legacy_conventions` (run by
:func:`load_checkpoint`) restores what the checkpoints were fit with:

* M3GNet, MEGNet: node updates sum (M3GNet) or average (MEGNet) into the destination atom
  (a subclass of the graph-convolution layer; same weights);
* TensorNet: the embedding reads ``emb2([x_j, x_i])`` and the antisymmetric part of the
  direction ``j -> i``. That is the same as swapping the two halves of the columns of
  ``emb2.weight`` and negating ``linears_tensor[1].weight`` (exact: the skew part enters only
  through that bias-free linear layer and norms);
* TensorNet trained under DGL (``@module`` ``matgl.models._tensornet_dgl`` in ``model.json``:
  TensorNet-ANI-1x): DGL's ``TensorNetInteraction._edge_udf`` built every message from
  ``edges.dst`` and summed it into ``dst``, so an atom's message is its *own* tensor times the
  radial filters. 4.1.2 uses the neighbour's (``x_I[edge_index[1]]``); the subclass uses the atom's own.

The ``emb3`` weights that 4.1.2 drops from TensorNet-ANI-1x were never used in DGL's forward pass.

Known answers, plain 4.1.2 -> restored (``tests/models/test_matgl.py`` checks them):

* M3GNet-MP-2021.2.8, matgl's own DGL-era tests (``tests/ext/test_ase_dgl.py`` at e9cde229):
  MoS (CsCl type, a = 4 Å) -10.824362 eV: -7.4539 -> -10.8244; Ac-Ala3-NHMe -250.16803 eV:
  -187.288 -> -250.1683. Energy per atom (eV) of NaCl, MgO, LiF, GaAs (NaCl, MgO: Materials
  Project PBE about -3.3, -5.9): -1.30, -2.04, +0.71, -4.03 -> -3.37, -5.96,
  -4.83, -4.18; Si, Cu unchanged (-5.42, -4.10). Lattice constants after relaxation (FrechetCellFilter + BFGS)
  against the checkpoint's README: GaAs 5.75044 Å: 5.7345 -> 5.7507; NbN 4.44784: 4.4450 -> 4.4478;
  CsI 4.6727: 4.816 -> 4.682.
* TensorNet-MatPES-PBE-v2025.1, matgl's PyG test (``tests/ext/test_ase_pyg.py``): Ac-Ala3-NHMe
  -247.286789 eV: -160.307 -> -247.28677. NaCl, MgO, LiF: -2.74, -2.27, -2.92 -> -3.36, -5.87,
  -4.78 eV/atom.
* M3GNet-ANI-1x and TensorNet-ANI-1x against ANI-1x (torchani) on ethanol, water,
  acetonitrile: +160, +360, +388 mHa -> +0.2, +0.4, -0.2 mHa (M3GNet); +1048, +105, +413 mHa ->
  -0.6, -0.6, -0.1 mHa (TensorNet).
* MEGNet-MP-2018.6.1-Eform: formation energies (eV/atom) of NaCl, MgO, CsCl (Materials Project
  about -2.1, -3.05, -2.2; matgl 1.2.1 under DGL gave -2.220 for CsCl at a = 4.1437):
  -1.76, -2.56, -1.92 -> -2.11, -3.08, -2.27.
* MEGNet-MP-2019.4.1-BandGap-mfi, PBE fidelity: mean absolute error against the PBE gaps of the
  first 300 crystals in ``matminer_dielectric_constant.csv``: 1.29 -> 0.80 eV (the checkpoint's
  README: validation MAE 0.31 eV). NaCl 4.59 -> 5.03 (PBE 5.0).

The band-gap model stays wrong after the fix (MgO 0.31 eV at PBE fidelity, PBE 4.45; BeO 1.35,
PBE 6.85), with no cause found. Its card keeps a caveat. SO3Net's convolution has no such
asymmetry and is unchanged. ``legacy=False`` loads a checkpoint as plain 4.1.2 runs it (for
models fit under matgl >= 4).
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import torch

from cpd_core.errors import InputError
from cpd_core.models.base import AtomsBatch, Featurizer, ModelCard, WeightsNotFoundError, seeded_card, shared_dir
from cpd_core.models.graph import radius_graph

#: Environment variable naming a folder of matgl checkpoint folders.
MODELS_ENV = "CPD_MATGL_MODELS"

ANI1X_DATA = "ANI-1x subset (ωB97X/6-31G*)"
#: How ANI-1x overlaps QM9 (the :attr:`ModelCard.qm9_overlap` of the ANI-1x checkpoints).
ANI1X_QM9_OVERLAP = ("ANI-1x: conformers of small organic molecules, largely GDB-derived (C, H, N, O): overlaps "
                     "QM9's chemical space; QM9 molecules themselves may be included (at other geometries)")
_SOURCE = "matgl 4.1.2, {} (../shared)"

#: registry name -> (checkpoint folder, architecture, domain, training data)
CHECKPOINTS = {
    "m3gnet-ani1x": ("M3GNet-ANI-1x-Subset-PES", "M3GNet", "molecules", ANI1X_DATA),
    "tensornet-ani1x": ("TensorNet-ANI-1x-Subset-PES", "TensorNet", "molecules", ANI1X_DATA),
    "so3net-ani1x": ("SO3Net-ANI-1x-Subset-PES", "SO3Net", "molecules", ANI1X_DATA),
    "m3gnet-mp-2021": ("M3GNet-MP-2021.2.8-PES", "M3GNet", "crystals",
                       "MP-2021.2.8: Materials Project relaxation trajectories as of 2021.2.8 (PBE/PBE+U "
                       "energies, forces, stresses; 167,378 training structures)"),
    "tensornet-matpes-pbe": ("TensorNet-MatPES-PBE-v2025.1-PES", "TensorNet", "crystals",
                             "MatPES v2025.1 PBE: 300 K MD snapshots and Materials Project ground states "
                             "(energies, forces, stresses; 391,240 training structures)"),
    "megnet-mp-eform": ("MEGNet-MP-2018.6.1-Eform", "MEGNet", "crystals",
                        "MP-2018.6.1: Materials Project formation energies as of 2018.6.1 "
                        "(62,315 training structures)"),
    "megnet-mp-bandgap": ("MEGNet-MP-2019.4.1-BandGap-mfi", "MEGNet", "crystals",
                          "MP-2019.4.1: Materials Project band gaps as of 2019.4.1, four fidelities "
                          "(PBE, GLLB-SC, HSE, SCAN; 48,912 training structures)"),
}
#: random twin -> the trained card whose hyper-parameters it copies
TWINS = {"m3gnet-random": "m3gnet-ani1x", "tensornet-random": "tensornet-ani1x",
         "so3net-random": "so3net-ani1x", "megnet-random": "megnet-mp-eform",
         "m3gnet-mp-random": "m3gnet-mp-2021", "tensornet-matpes-random": "tensornet-matpes-pbe"}


def models_dir() -> Path:
    """Where checkpoint folders live: ``$CPD_MATGL_MODELS``, else ``<shared>/models/matgl/pretrained_models``."""
    env = os.environ.get(MODELS_ENV)
    return Path(env) if env else shared_dir() / "models" / "matgl" / "pretrained_models"


def _offline() -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    try:
        from huggingface_hub import constants
    except ImportError:
        return True
    return bool(constants.HF_HUB_OFFLINE)


def load_checkpoint(checkpoint: str | Path, legacy: bool = True):
    """A matgl model (``Potential``, ``TransformedTargetModel`` or bare network), in eval mode.

    ``checkpoint`` is a folder holding ``model.json`` or the name of one inside
    :func:`models_dir`; otherwise it goes to ``matgl.load_model`` as a hub name. With
    ``legacy`` (the default: every checkpoint matgl released up to commit e9cde229, and their
    copies on the hub, was fit with them) the network runs the conventions it was fit with
    (:func:`legacy_conventions`, module docstring).

    Raises
    ------
    WeightsNotFoundError
        When neither the folder nor the hub has it.
    """
    import matgl
    import matgl.data.transformer as transformer

    # MEGNet's TransformedTargetModel pickles its target normaliser in model.pt
    torch.serialization.add_safe_globals([transformer.Normalizer, transformer.LogTransformer])
    path = Path(checkpoint)
    folder = path if (path / "model.json").is_file() else models_dir() / str(checkpoint)
    hint = (f"put the checkpoint folder (model.json, model.pt, state.pt) in {models_dir()} or point "
            f"${MODELS_ENV} (or $CPD_SHARED_DIR) at a copy of ../shared/models/matgl/pretrained_models, "
            f"or load a folder as 'matgl:/path/to/folder'")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Incompatible model version")
        if (folder / "model.json").is_file():
            model = matgl.load_model(folder)
        elif _offline():
            raise WeightsNotFoundError(f"matgl checkpoint {str(checkpoint)!r} not found: looked in {folder} "
                                       f"and the Hugging Face hub is off (HF_HUB_OFFLINE); {hint}")
        else:
            try:
                model = matgl.load_model(str(checkpoint))
            except Exception as err:
                raise WeightsNotFoundError(
                    f"matgl checkpoint {str(checkpoint)!r} not found: looked in {folder}, and "
                    f"matgl.load_model({str(checkpoint)!r}) could not get it from the hub ({err}); {hint}"
                ) from err
    model.requires_grad_(False)
    if legacy:
        legacy_conventions(model, dgl=_fit_under_dgl(folder))
    return model.eval()


def _fit_under_dgl(folder: Path) -> bool:
    """Whether ``folder/model.json`` names a DGL network module (``matgl.models._*_dgl``)."""
    import json

    try:
        meta = json.loads((folder / "model.json").read_text())
    except (OSError, ValueError):
        return False
    inner = meta.get("kwargs", {}).get("model", meta)
    return str(inner.get("@module", meta.get("@module", ""))).endswith("_dgl")


def legacy_conventions(model: torch.nn.Module, dgl: bool = False, weights: bool = True) -> torch.nn.Module:
    """Make matgl 4.1.2 run a network as the checkpoint was fit (see the module docstring), in place.

    Parameters
    ----------
    model : torch.nn.Module
        A matgl ``Potential``, ``TransformedTargetModel`` or bare network.
    dgl : bool
        The checkpoint was fit by matgl's DGL code (matters for TensorNet only: its messages then
        carry the receiving atom's own tensor).
    weights : bool
        Also rewrite the TensorNet embedding weights (``emb2`` halves swapped,
        ``linears_tensor[1]`` negated). Turn it off for random weights, whose distribution is
        unchanged by it.

    Returns
    -------
    torch.nn.Module
        ``model``. A second call does nothing.
    """
    if getattr(model, "_cpd_legacy_conventions", False):
        return model
    net = getattr(model, "model", model)
    if type(net).__name__ == "TensorNet" and getattr(net, "_use_warp", False):
        raise InputError("legacy_conventions covers matgl's PyG TensorNet only, not its warp kernels "
                         "(nvalchemi-toolkit-ops is installed): build the network with use_warp=False")
    classes = _legacy_classes()
    for sub in model.modules():
        cls = type(sub)
        if cls in classes["swap"]:
            sub.__class__ = classes["swap"][cls]
        elif cls is classes["interaction"] and dgl:
            sub.__class__ = classes["self_message"]
    if weights and type(net).__name__ == "TensorNet":
        emb = net.tensor_embedding
        with torch.no_grad():
            half = emb.emb2.weight.shape[1] // 2
            emb.emb2.weight.copy_(torch.cat([emb.emb2.weight[:, half:], emb.emb2.weight[:, :half]], dim=1))
            emb.linears_tensor[1].weight.neg_()
    model._cpd_legacy_conventions = True
    return model


_LEGACY_CLASSES: dict = {}


def _legacy_classes() -> dict:
    """Subclasses of matgl 4.1.2 layers that aggregate as the DGL-era code did (built once, on demand)."""
    if _LEGACY_CLASSES:
        return _LEGACY_CLASSES
    from matgl.layers._graph_convolution import M3GNetGraphConv, MEGNetGraphConv, TensorNetInteraction
    from matgl.utils.maths import new_radial_tensor, scatter_add, scatter_mean

    class DstM3GNetGraphConv(M3GNetGraphConv):
        """M3GNet node update summed into the destination atom (DGL ``fn.sum`` at ``dst``)."""

        def node_update_(self, edge_index, edge_feat, node_feat, rbf, u_per_edge, num_nodes):
            src, dst = edge_index[0], edge_index[1]
            parts = [node_feat[src], node_feat[dst], edge_feat] + ([u_per_edge] if self.include_state else [])
            mess = self.node_update_func(torch.hstack(parts)) * self.node_weight_func(rbf)
            return scatter_add(mess, dst, dim_size=num_nodes, dim=0)

    class DstMEGNetGraphConv(MEGNetGraphConv):
        """MEGNet node update from the mean of the edges into the atom (DGL ``fn.mean`` at ``dst``)."""

        def node_update_(self, edge_index, edge_feat, node_feat, u_per_node, num_nodes):
            ve = scatter_mean(edge_feat, edge_index[1], dim_size=num_nodes, dim=0)
            return self.node_func(torch.hstack([node_feat, ve, u_per_node]))

    class SelfMessageTensorNetInteraction(TensorNetInteraction):
        """TensorNet interaction of the DGL code: each edge carries the receiving atom's own tensor."""

        def message(self, edge_index, x_I, x_A, x_S, edge_attr):
            own = edge_index[0]  # messages are summed into edge_index[0]
            return new_radial_tensor(x_I[own], x_A[own], x_S[own], edge_attr[..., 0], edge_attr[..., 1],
                                     edge_attr[..., 2])

    _LEGACY_CLASSES.update(swap={M3GNetGraphConv: DstM3GNetGraphConv, MEGNetGraphConv: DstMEGNetGraphConv},
                           interaction=TensorNetInteraction, self_message=SelfMessageTensorNetInteraction)
    return _LEGACY_CLASSES


def tensor_irreps(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Split 3 × 3 tensors (..., 3, 3) into degree 0, 1, 2 parts (...,), (..., 3), (..., 5).

    .. math::

        L0 = \frac{\operatorname{tr} X}{\sqrt 3},\quad
        L1 = (A_{zy}, A_{xz}, A_{yx}),\quad
        L2 = \Bigl(\sqrt2 S_{xy}, \sqrt2 S_{yz}, \sqrt2 S_{xz}, \frac{S_{xx} - S_{yy}}{\sqrt 2},
        \sqrt{\tfrac32} S_{zz}\Bigr),

    with :math:`A` and :math:`S` the antisymmetric and symmetric traceless parts of :math:`X`;
    L2 holds the coordinates of :math:`S` in an orthonormal basis, so :math:`\lVert L2\rVert
    = \lVert S\rVert_F`.

    Examples
    --------
    >>> x = torch.tensor([[1., 2, 0], [0, 1, 0], [0, 0, 1]])
    >>> l0, l1, l2 = tensor_irreps(x)
    >>> round(float(l0) ** 2, 6), l1.tolist(), round(float(l2.norm()) ** 2, 6)
    (3.0, [0.0, 0.0, -1.0], 2.0)
    """
    trace = x.diagonal(dim1=-2, dim2=-1).sum(-1)
    a = 0.5 * (x - x.transpose(-1, -2))
    s = 0.5 * (x + x.transpose(-1, -2))
    s_xx, s_yy, s_zz = (s[..., k, k] - trace / 3 for k in range(3))
    l1 = torch.stack([a[..., 2, 1], a[..., 0, 2], a[..., 1, 0]], dim=-1)
    l2 = torch.stack([math.sqrt(2) * s[..., 0, 1], math.sqrt(2) * s[..., 1, 2], math.sqrt(2) * s[..., 0, 2],
                      (s_xx - s_yy) / math.sqrt(2), math.sqrt(1.5) * s_zz], dim=-1)
    return trace / math.sqrt(3), l1, l2


def _tensor_blocks(x: torch.Tensor, prefix: str) -> dict:
    l0, l1, l2 = tensor_irreps(x)
    return {f"{prefix}/L0": l0, f"{prefix}/L1": l1, f"{prefix}/L2": l2}


def _sh_blocks(x: torch.Tensor, prefix: str) -> dict:
    # SO3Net keeps (N, (lmax + 1)^2, C), l blocks one after another
    out = {f"{prefix}/L0": x[:, 0]}
    for l in range(1, math.isqrt(x.shape[1])):
        out[f"{prefix}/L{l}"] = x[:, l * l:(l + 1) ** 2].transpose(1, 2)
    return out


def so3_convolution(conv, x: torch.Tensor, radial_ij: torch.Tensor, dir_ij: torch.Tensor, cutoff_ij: torch.Tensor,
                    idx_i: torch.Tensor, idx_j: torch.Tensor) -> torch.Tensor:
    r"""matgl's ``SO3Convolution.forward`` (``conv``: the module, for its weights and Clebsch-Gordan table), contracted per :math:`l_1`.

    matgl computes

    .. math::

        y_{i s f} = \sum_{j} \sum_{s_1 s_2} W_{l(s_1) f}(r_{ij})\, Y_{s_1}(\hat r_{ij})\,
        C^{s}_{s_1 s_2}\, x_{j s_2 f}

    by materialising one term per edge, non-zero coefficient :math:`C` and feature (an
    :math:`E \times n_C \times F` array, 83 coefficients for :math:`l_\max = 2`). The same sum,
    grouped by the degree :math:`l_1` of the filter,

    .. math::

        y_{i s f} = \sum_j \sum_{l_1} W_{l_1 f}(r_{ij}) \sum_{s_2} M^{(l_1)}_{s_2 s}(\hat r_{ij})\,
        x_{j s_2 f}, \qquad M^{(l_1)}_{s_2 s} = \sum_{s_1 :\, l(s_1) = l_1} Y_{s_1} C^{s}_{s_1 s_2},

    is a batched matrix product per edge with :math:`(l_\max + 1)^2`-square matrices: the
    largest intermediate is :math:`E \times (l_\max + 1)^2 \times F`.
    """
    S, L = (conv.lmax + 1) ** 2, conv.lmax + 1
    dense = getattr(conv, "_dense_cg", None)
    if dense is None or dense.dtype != x.dtype or dense.device != x.device:
        dense = torch.zeros(L, S, S, S, dtype=x.dtype, device=x.device)   # [l1, s1, s2, s]
        dense.index_put_((conv.Widx, conv.idx_in_1, conv.idx_in_2, conv.idx_out), conv.clebsch_gordan.to(x.dtype),
                         accumulate=True)
        conv._dense_cg = dense
    W = (conv.filternet(radial_ij) * cutoff_ij).reshape(-1, L, conv.n_atom_basis)   # [E, l1, F]
    xj = x[idx_j]                                                                       # [E, s2, F]
    M = torch.einsum("ea,labc->lecb", dir_ij, dense)                                    # [l1, E, s, s2]
    y = sum(W[:, l, None, :] * torch.bmm(M[l], xj) for l in range(L))                   # [E, s, F]
    return torch.zeros_like(x).index_add_(0, idx_i, y)


def _fast_so3(module: torch.nn.Module) -> None:
    """Make every matgl ``SO3Convolution`` in ``module`` run :func:`so3_convolution` (same weights, same sum)."""
    from matgl.layers._so3 import SO3Convolution

    class FastSO3Convolution(SO3Convolution):
        def forward(self, x, radial_ij, dir_ij, cutoff_ij, idx_i, idx_j):
            return so3_convolution(self, x, radial_ij, dir_ij, cutoff_ij, idx_i, idx_j)

    for sub in module.modules():
        if type(sub) is SO3Convolution:
            sub.__class__ = FastSO3Convolution


class MatGLFeaturizer(Featurizer):
    """Per-layer atom features of a matgl network (see the module docstring).

    Parameters
    ----------
    model : torch.nn.Module
        A matgl ``Potential``, ``TransformedTargetModel`` or bare network (M3GNet, TensorNet,
        SO3Net, MEGNet).
    card : ModelCard
    checkpoint : str
        What the model was loaded from (goes into :meth:`options`).
    fidelity : int
        State index of multi-state MEGNet models (band gap: 0 PBE, 1 GLLB-SC, 2 HSE, 3 SCAN).

    Examples
    --------
    >>> from ase.build import molecule
    >>> f = load("so3net-ani1x")  # doctest: +SKIP
    >>> water = molecule("H2O")
    >>> blocks = f(AtomsBatch.from_arrays([water.numbers], [water.positions]))  # doctest: +SKIP
    >>> {k: tuple(v.shape) for k, v in blocks.items()}  # doctest: +SKIP
    {'embedding/L0': (3, 64), 'layer1/L0': (3, 64), 'layer1/L1': (3, 64, 3), 'layer1/L2': (3, 64, 5), ...}
    """

    def __init__(self, model: torch.nn.Module, card: ModelCard, checkpoint: str = "", fidelity: int = 0):
        from pymatgen.core.periodic_table import Element

        self.card = card
        self.wrapper = model
        self.module = getattr(model, "model", model)
        self.architecture = type(self.module).__name__
        if self.architecture not in ("M3GNet", "TensorNet", "SO3Net", "MEGNet"):
            raise InputError(f"no feature reader for matgl {self.architecture} (from {checkpoint})")
        if self.architecture == "SO3Net":
            _fast_so3(self.module)
        self.checkpoint = str(checkpoint)
        self.fidelity = int(fidelity)
        self.elements = tuple(Element(s).Z for s in self.module.element_types)
        lookup = torch.full((119,), -1, dtype=torch.int64)
        lookup[list(self.elements)] = torch.arange(len(self.elements))
        self._lookup = lookup

    def options(self) -> dict:
        import matgl

        net = self.module
        out = {"checkpoint": self.checkpoint, "cutoff": float(net.cutoff), "matgl": matgl.__version__,
               # the message convention the network runs (legacy_conventions): part of every cache key
               "conventions": "fit-time" if getattr(self.wrapper, "_cpd_legacy_conventions", False)
               or getattr(self.module, "_cpd_legacy_conventions", False) else "matgl-4.1.2"}
        if hasattr(net, "threebody_cutoff"):
            out["threebody_cutoff"] = float(net.threebody_cutoff)
        if self.architecture == "MEGNet":
            out["state"] = self._state_values()
        return out

    def to(self, device, dtype: torch.dtype = torch.float32) -> "MatGLFeaturizer":
        self.wrapper.to(device=device, dtype=dtype)
        return self

    def _state_values(self) -> list:
        embedding = self.module.embedding
        if embedding.ntypes_state:
            return [self.fidelity]
        return [0.0] * int(embedding.dim_state_embedding)

    def state_attr(self, batch: AtomsBatch) -> torch.Tensor | None:
        """Per-structure global state of MEGNet ((S,) fidelity indices or (S, d) zeros); else None."""
        if self.architecture != "MEGNet":
            return None
        values = self._state_values()
        if self.module.embedding.ntypes_state:
            return torch.full((batch.n_structures,), values[0], dtype=torch.long, device=batch.positions.device)
        return batch.positions.new_zeros((batch.n_structures, len(values)))

    def graph(self, batch: AtomsBatch):
        """The batch as one PyG graph in matgl's layout (``node_type``, ``pos``, ``edge_index``,
        ``pbc_offshift``, ``batch``, ``num_graphs``)."""
        from torch_geometric.data import Data

        node_type = self._lookup.to(batch.numbers.device)[batch.numbers]
        if bool((node_type < 0).any()):
            missing = sorted(set(batch.numbers[node_type < 0].tolist()))
            raise InputError(f"{self.name} has no embedding for atomic numbers {missing}")
        edge_index, _, shifts = radius_graph(batch.positions, batch.batch, float(self.module.cutoff),
                                             batch.cell, batch.pbc)
        g = Data(node_type=node_type, pos=batch.positions, edge_index=edge_index, pbc_offshift=shifts,
                 batch=batch.batch, num_nodes=len(batch.numbers))
        g.num_graphs = batch.n_structures
        return g

    def run(self, batch: AtomsBatch) -> tuple[torch.Tensor, dict, object]:
        """One forward pass: the network's raw output (S,), its ``feature_dict`` and the graph."""
        g = self.graph(batch)
        with torch.no_grad():
            out = self.module(g=g, state_attr=self.state_attr(batch))
        return out.reshape(-1), self.module.feature_dict, g

    def predict(self, batch: AtomsBatch) -> torch.Tensor:
        """The model's own prediction per structure (S,) through this module's graphs.

        ``Potential``: total energy (eV), :math:`\\sigma\\, y + \\mu + \\sum_i E^\\text{ref}_{Z_i}`
        as in ``Potential.forward``; ``TransformedTargetModel``: the inverse-transformed target
        (eV/atom formation energy, eV band gap); a bare network: its raw output.
        """
        raw, _, g = self.run(batch)
        wrapper = self.wrapper
        if hasattr(wrapper, "data_std"):
            energy = wrapper.data_std * raw + wrapper.data_mean
            if wrapper.element_refs is not None:
                energy = energy + wrapper.element_refs(g).reshape(-1)
            return energy
        if hasattr(wrapper, "transformer"):
            return wrapper.transformer.inverse_transform(raw)
        return raw

    def features(self, batch: AtomsBatch) -> dict:
        _, fd, _ = self.run(batch)
        n = len(batch.numbers)
        layers = [k for k in fd if k.startswith("gc_")]
        arch = self.architecture
        blocks = {}
        if arch in ("M3GNet", "MEGNet"):
            blocks["embedding/L0"] = fd["embedding"]["node_feat"]
            for key in layers:
                blocks[f"layer{key[3:]}/L0"] = fd[key]["node_feat"]
        elif arch == "TensorNet":
            blocks.update(_tensor_blocks(fd["embedding"], "embedding"))
            for key in layers:
                blocks.update(_tensor_blocks(fd[key], f"layer{key[3:]}"))
        else:
            blocks["embedding/L0"] = fd["embedding"][:, 0]
            for key in layers:
                blocks.update(_sh_blocks(fd[key], f"layer{key[3:]}"))
        readout = fd.get("atomic_properties" if arch == "SO3Net" else "readout")
        if isinstance(readout, torch.Tensor) and readout.dim() == 2 and readout.shape[0] == n:
            blocks["readout/L0"] = readout
        return blocks


def build_trained(name: str, fidelity: int = 0) -> MatGLFeaturizer:
    """Featurizer of a registered checkpoint (``name`` in :data:`CHECKPOINTS`)."""
    return MatGLFeaturizer(load_checkpoint(CHECKPOINTS[name][0]), CARDS_BY_NAME[name], CHECKPOINTS[name][0],
                           fidelity=fidelity)


def build_random(name: str, seed: int = 0) -> MatGLFeaturizer:
    """The random twin ``name``: the network of :data:`TWINS`\\ [name] rebuilt from its own
    constructor arguments with weights drawn under ``torch.manual_seed(seed)``."""
    folder = CHECKPOINTS[TWINS[name]][0]
    trained = load_checkpoint(folder)
    net = getattr(trained, "model", trained)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        twin = type(net)(**net._init_args)
    twin.requires_grad_(False)
    # the same network as the trained one: its message passing, not its weight rewrite
    legacy_conventions(twin, dgl=_fit_under_dgl(models_dir() / folder), weights=False)
    featurizer = MatGLFeaturizer(twin.eval(), seeded_card(CARDS_BY_NAME[name], seed),
                                 f"{folder} (random init, seed {seed})")
    featurizer.seed = int(seed)
    return featurizer


def from_path(path: str, fidelity: int = 0, legacy: bool = True) -> MatGLFeaturizer:
    """Featurizer of any matgl checkpoint folder (or hub name): the ``"matgl:PATH"`` loader.

    ``legacy=False`` for a checkpoint fit under matgl >= 4 (see :func:`load_checkpoint`).
    """
    model = load_checkpoint(path, legacy=legacy)
    net = getattr(model, "model", model)
    card = ModelCard(f"matgl:{path}", family=type(net).__name__, status="original",
                     training_data=f"see {path}/README.md", source=f"matgl checkpoint {path}",
                     domain="molecules, crystals", build=lambda **kw: from_path(path, **kw))
    return MatGLFeaturizer(model, card, str(path), fidelity=fidelity)


#: checkpoints whose predictions do not reproduce what they were fit to, even with
#: :func:`legacy_conventions` (module docstring): the network that runs may not be the one that was fit.
SUSPECT = {
    "megnet-mp-eform": "right to ~0.05 eV/atom under matgl 4.1.2 with the DGL-era aggregation restored "
                       "(NaCl -2.11, MgO -3.08; MP about -2.1, -3.05), but CsCl (a = 4.1437) gives -2.27 "
                       "where matgl 1.2.1 under DGL gave -2.220 on the same weights: a residual difference "
                       "not found, perhaps the one that breaks the band-gap model",
    "megnet-mp-bandgap": "PBE-fidelity band gaps far from PBE under matgl 4.1.2, even with the DGL-era "
                         "aggregation restored: MgO 0.31 eV (PBE 4.45), BeO 1.35 (6.85); MAE 0.80 eV on "
                         "300 MP dielectrics (README: validation MAE 0.31 eV); cause not found",
}


def _trained_card(name: str) -> ModelCard:
    folder, family, domain, data = CHECKPOINTS[name]
    return ModelCard(name, family=family, status="original", training_data=data, source=_SOURCE.format(folder),
                     domain=domain, build=lambda **kw: build_trained(name, **kw), caveat=SUSPECT.get(name, ""),
                     qm9_overlap=ANI1X_QM9_OVERLAP if data == ANI1X_DATA else "")


def _twin_card(name: str) -> ModelCard:
    trained = TWINS[name]
    folder, family, domain, _ = CHECKPOINTS[trained]
    caveat = f"twin of {trained}, which has a caveat" if trained in SUSPECT else ""
    return ModelCard(name, family=family, status="random-init", training_data="untrained",
                     source=_SOURCE.format(folder) + ", constructor arguments only, seed 0", domain=domain,
                     twin_of=trained, build=lambda **kw: build_random(name, **kw), caveat=caveat)


CARDS = [_trained_card(n) for n in CHECKPOINTS] + [_twin_card(n) for n in TWINS]
CARDS_BY_NAME = {c.name: c for c in CARDS}
PREFIXES = {"matgl": from_path}
