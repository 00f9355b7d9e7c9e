r"""SchNet, DimeNet++ and ViSNet for training on QM9, built from torch-geometric's own layers (issue 4).

Each network follows the training protocol of :mod:`cpd_core.training`: ``forward(numbers,
positions, batch)`` returns ``(atom_out, blocks)``, the per-atom output of the readout head
(before any pooling over atoms) and the per-atom hidden features of every layer. The layers
are torch-geometric 2.7's (``torch_geometric.nn.models.schnet``, ``.dimenet``, ``.visnet``),
under their own parameter names, so a stock torch-geometric model's ``state_dict`` loads into
these networks (its element embedding cut to ``max_z`` rows). What torch-geometric builds with
torch-cluster or torch-sparse is replaced: the neighbour list is
:func:`cpd_core.models.graph.radius_graph` and DimeNet's angle triplets
:func:`cpd_core.models.graph.triplets`, both in plain torch. Given the same graph, the stock
models' per-structure predictions are the sums of ``atom_out`` (``tests/models/test_pyg.py``).

Every edge :math:`j \to i` joins two atoms of one molecule closer than the cutoff
:math:`r_c`, at distance :math:`r_{ij} = \lVert \mathbf r_i - \mathbf r_j \rVert`.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import torch
from torch_geometric.nn.models.dimenet import (
    BesselBasisLayer,
    EmbeddingBlock,
    InteractionPPBlock,
    OutputPPBlock,
    SphericalBasisLayer,
)
from torch_geometric.nn.models.schnet import GaussianSmearing, InteractionBlock, ShiftedSoftplus
from torch_geometric.nn.models.visnet import EquivariantScalar, ViSNetBlock
from torch_geometric.nn.resolver import activation_resolver
from torch_geometric.utils import scatter

from cpd_core.errors import InputError
from cpd_core.models.base import check_numbers
from cpd_core.models.graph import radius_graph, triplets


def _distances(positions: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
    return (positions[edge_index[0]] - positions[edge_index[1]]).norm(dim=-1)


class SchNetNet(torch.nn.Module):
    r"""SchNet (Schütt et al. 2018, *J. Chem. Phys.* 148, 241722) from torch-geometric's blocks.

    Atoms start from an element embedding :math:`h_i^{(0)} = E[Z_i]` and each of the
    ``num_interactions`` layers adds a continuous-filter convolution,

    .. math::

        h_i^{(k)} = h_i^{(k-1)} + \mathrm{Lin}\,\mathrm{ssp}\Big(\mathrm{Lin}_2 \sum_{j}
        \mathrm{Lin}_1 h_j^{(k-1)} \odot W\big(e(r_{ij})\big)\,
        \tfrac12\big(\cos(\pi r_{ij}/r_c) + 1\big)\Big),

    with :math:`e` ``num_gaussians`` Gaussians on :math:`[0, r_c]`, :math:`W` a two-layer
    filter network and :math:`\mathrm{ssp}(x) = \ln(1 + e^x) - \ln 2`. The per-atom output is
    :math:`\mathrm{Lin}(\mathrm{ssp}(\mathrm{Lin}(h_i^{(K)})))` (hidden → hidden/2 → 1), what
    torch-geometric's ``SchNet`` sums over atoms.

    Defaults are the published QM9 settings (128 features and filters, 6 interactions, 50
    Gaussians) except the cutoff, 5 Å instead of 10 Å; 444 289 parameters. torch-geometric's
    embedding has 100 rows (row 0 a zero padding row); here it has ``max_z``, row 0 kept as padding.

    Blocks: ``embedding/L0`` = :math:`h^{(0)}` and ``layer{k}/L0`` = :math:`h^{(k)}`, (N, hidden).

    Examples
    --------
    >>> net = SchNetNet(hidden_channels=16, num_filters=16, num_interactions=2, num_gaussians=10)
    >>> z = torch.tensor([8, 1, 1]); r = torch.tensor([[0., 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    >>> out, blocks = net(z, r, torch.zeros(3, dtype=torch.long))
    >>> out.shape, {k: tuple(v.shape) for k, v in blocks.items()}
    (torch.Size([3]), {'embedding/L0': (3, 16), 'layer1/L0': (3, 16), 'layer2/L0': (3, 16)})
    """

    arch = "schnet"

    def __init__(self, *, hidden_channels: int = 128, num_filters: int = 128, num_interactions: int = 6,
                 num_gaussians: int = 50, cutoff: float = 5.0, max_z: int = 10):
        super().__init__()
        self.hparams = dict(hidden_channels=hidden_channels, num_filters=num_filters,
                            num_interactions=num_interactions, num_gaussians=num_gaussians, cutoff=cutoff,
                            max_z=max_z)
        self.cutoff = float(cutoff)
        self.max_z = max_z
        self.embedding = torch.nn.Embedding(max_z, hidden_channels, padding_idx=0)
        self.distance_expansion = GaussianSmearing(0.0, cutoff, num_gaussians)
        self.interactions = torch.nn.ModuleList([
            InteractionBlock(hidden_channels, num_gaussians, num_filters, cutoff) for _ in range(num_interactions)])
        self.lin1 = torch.nn.Linear(hidden_channels, hidden_channels // 2)
        self.act = ShiftedSoftplus()
        self.lin2 = torch.nn.Linear(hidden_channels // 2, 1)
        self.reset_parameters()

    def reset_parameters(self):
        """torch-geometric ``SchNet``'s initialisation."""
        self.embedding.reset_parameters()
        for interaction in self.interactions:
            interaction.reset_parameters()
        for lin in (self.lin1, self.lin2):
            torch.nn.init.xavier_uniform_(lin.weight)
            lin.bias.data.fill_(0)

    def forward(self, numbers: torch.Tensor, positions: torch.Tensor, batch: torch.Tensor):
        check_numbers(numbers, self.max_z, type(self).__name__)
        edge_index, _, _ = radius_graph(positions, batch, self.cutoff)
        edge_weight = _distances(positions, edge_index)
        edge_attr = self.distance_expansion(edge_weight)
        h = self.embedding(numbers)
        blocks = {"embedding/L0": h}
        for k, interaction in enumerate(self.interactions, start=1):
            h = h + interaction(h, edge_index, edge_weight, edge_attr)
            blocks[f"layer{k}/L0"] = h
        atom_out = self.lin2(self.act(self.lin1(h)))
        return atom_out.squeeze(-1), blocks


#: Spherical Bessel forms shipped with the package (``bessel_basis.json``, written by
#: ``scripts/bessel_table.py``): sympy's ``srepr`` of ``dimenet_utils.bessel_basis(n, k)`` per ``"n,k"``,
#: read back exactly (``tests/models/test_pyg.py`` compares them with torch-geometric's own).
BESSEL_TABLE = Path(__file__).with_name("bessel_basis.json")


def shipped_bessel_basis(n: int, k: int):
    """torch-geometric's ``bessel_basis(n, k)`` from the table shipped with the package, or None if it holds no such setting.

    Computing the forms with sympy takes ~25 s for DimeNet++'s 7 × 6 on one core, once per machine
    (the disk cache keeps them after that); the table makes a fresh machine's first build as fast.
    """
    import sympy

    try:
        table = json.loads(BESSEL_TABLE.read_text())
    except (OSError, ValueError):
        return None
    forms = table.get("forms", {}).get(f"{n},{k}")
    return None if forms is None else [[sympy.sympify(f) for f in row] for row in forms]


@functools.cache
def spherical_basis(num_spherical: int, num_radial: int, cutoff: float, envelope_exponent: int):
    """torch-geometric's ``SphericalBasisLayer``, built once per setting.

    The layer holds no parameters or buffers, so networks may share it. Its spherical Bessel forms
    come from sympy (``dimenet_utils.bessel_basis``: ~25 s for 7 × 6 on one core): DimeNet++'s default
    setting is read from the table shipped with the package (:func:`shipped_bessel_basis`), any other
    is computed once and kept on disk under the cache (:func:`cpd_core.cache.cache_dir`, keyed by the
    setting and the torch-geometric version), so later processes build the layer in milliseconds.
    """
    import torch_geometric
    import torch_geometric.nn.models.dimenet_utils as dimenet_utils

    original = dimenet_utils.bessel_basis

    def cached_bessel_basis(n: int, k: int):
        import pickle

        from cpd_core.cache import cache_dir

        shipped = shipped_bessel_basis(n, k)
        if shipped is not None:
            return shipped
        path = cache_dir() / "sympy" / f"bessel_basis-{n}-{k}-pyg{torch_geometric.__version__}.pkl"
        try:
            return pickle.loads(path.read_bytes())
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError):
            forms = original(n, k)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(pickle.dumps(forms))
            tmp.replace(path)
            return forms

    dimenet_utils.bessel_basis = cached_bessel_basis  # SphericalBasisLayer imports it when built
    try:
        return SphericalBasisLayer(num_spherical, num_radial, cutoff, envelope_exponent)
    finally:
        dimenet_utils.bessel_basis = original


def dimenet_angles(positions: torch.Tensor, idx_i: torch.Tensor, idx_j: torch.Tensor,
                   idx_k: torch.Tensor) -> torch.Tensor:
    r"""DimeNet++'s angle of each triplet :math:`k \to j \to i`, as torch-geometric computes it.

    .. math::

        \alpha_{kji} = \operatorname{atan2}\big(\lVert \mathbf r_{ij} \times \mathbf r_{jk} \rVert,\;
        \mathbf r_{ij} \cdot \mathbf r_{jk}\big), \qquad \mathbf r_{ij} = \mathbf r_i - \mathbf r_j,\;
        \mathbf r_{jk} = \mathbf r_j - \mathbf r_k,

    the angle between the bonds :math:`j \to i` and :math:`k \to j` (π minus the bond angle at j).

    Examples
    --------
    >>> r = torch.tensor([[1., 0, 0], [0, 0, 0], [0, 1, 0]])
    >>> float(dimenet_angles(r, torch.tensor([0]), torch.tensor([1]), torch.tensor([2])))  # doctest: +ELLIPSIS
    1.5707...
    """
    pos_jk = positions[idx_j] - positions[idx_k]
    pos_ij = positions[idx_i] - positions[idx_j]
    a = (pos_ij * pos_jk).sum(dim=-1)
    b = torch.cross(pos_ij, pos_jk, dim=1).norm(dim=-1)
    return torch.atan2(b, a)


class DimeNetPPNet(torch.nn.Module):
    r"""DimeNet++ (Gasteiger et al. 2020, arXiv:2011.14115) from torch-geometric's blocks.

    DimeNet++ passes messages :math:`m_{ji}` along directed edges. The embedding block makes
    :math:`m_{ji}^{(0)}` from the two elements and a radial Bessel basis
    :math:`e_{\mathrm{RBF}}(r_{ji})`; each of ``num_blocks`` interaction blocks updates every
    message from the messages :math:`m_{kj}` into its source, weighted by a 2-D spherical
    Fourier–Bessel basis :math:`a_{\mathrm{SBF}}(r_{kj}, \alpha_{kji})`
    (:func:`dimenet_angles`). After the embedding and after each interaction, an output block
    ``t`` pools the messages into atoms and maps them to a scalar,

    .. math::

        u_i^{(t)} = \mathrm{act}\,\mathrm{Lin} \cdots \mathrm{act}\,\mathrm{Lin}\;\mathrm{Lin}_{\uparrow}
        \sum_j \mathrm{Lin}_{\mathrm{RBF}}\big(e_{\mathrm{RBF}}(r_{ji})\big) \odot m_{ji}^{(t)},
        \qquad t_i^{(t)} = \mathrm{Lin}\big(u_i^{(t)}\big),

    and the network's per-atom output is :math:`\sum_{t=0}^{T} t_i^{(t)}` (torch-geometric's
    ``DimeNetPlusPlus`` sums it over the atoms of each structure). The forward loop is written
    here, calling torch-geometric's blocks, to read :math:`u^{(t)}`.

    Defaults: the published QM9 settings (hidden 128, 4 blocks, int_emb 64, basis_emb 8,
    7 spherical × 6 radial basis functions, envelope exponent 5, 1 residual layer before and
    2 after the skip, 3 output layers, swish, zero-initialised final output layers), cutoff 5 Å,
    except **out_emb_channels 136 instead of 256**, the least cut that brings the network
    under 1.1 M parameters (1 090 150; 1 874 950 with 256). The element embedding has
    ``max_z`` rows instead of 95.

    Blocks: ``layer{t}/L0`` = :math:`u^{(t)}`, (N, out_emb_channels), t = 0 (embedding
    block) … ``num_blocks``.

    With ``output_initializer="zeros"`` (DimeNet++'s) ``atom_out`` is 0 at initialisation and only
    the final output layers get a gradient at the first step; ``"glorot_orthogonal"`` avoids that.

    Examples
    --------
    >>> net = DimeNetPPNet(hidden_channels=16, num_blocks=2, int_emb_size=8, basis_emb_size=4,
    ...                    out_emb_channels=16, num_spherical=3, num_radial=4)
    >>> z = torch.tensor([8, 1, 1]); r = torch.tensor([[0., 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    >>> out, blocks = net(z, r, torch.zeros(3, dtype=torch.long))
    >>> out.shape, {k: tuple(v.shape) for k, v in blocks.items()}
    (torch.Size([3]), {'layer0/L0': (3, 16), 'layer1/L0': (3, 16), 'layer2/L0': (3, 16)})
    """

    arch = "dimenet++"

    def __init__(self, *, hidden_channels: int = 128, num_blocks: int = 4, int_emb_size: int = 64,
                 basis_emb_size: int = 8, out_emb_channels: int = 136, num_spherical: int = 7,
                 num_radial: int = 6, cutoff: float = 5.0, envelope_exponent: int = 5, num_before_skip: int = 1,
                 num_after_skip: int = 2, num_output_layers: int = 3, act: str = "swish",
                 output_initializer: str = "zeros", max_z: int = 10):
        super().__init__()
        self.hparams = dict(hidden_channels=hidden_channels, num_blocks=num_blocks, int_emb_size=int_emb_size,
                            basis_emb_size=basis_emb_size, out_emb_channels=out_emb_channels,
                            num_spherical=num_spherical, num_radial=num_radial, cutoff=cutoff,
                            envelope_exponent=envelope_exponent, num_before_skip=num_before_skip,
                            num_after_skip=num_after_skip, num_output_layers=num_output_layers, act=act,
                            output_initializer=output_initializer, max_z=max_z)
        self.cutoff = float(cutoff)
        self.max_z = max_z
        act_fn = activation_resolver(act)
        self.rbf = BesselBasisLayer(num_radial, cutoff, envelope_exponent)
        self.sbf = spherical_basis(num_spherical, num_radial, float(cutoff), envelope_exponent)
        self.emb = EmbeddingBlock(num_radial, hidden_channels, act_fn)
        self.emb.emb = torch.nn.Embedding(max_z, hidden_channels)
        self.output_blocks = torch.nn.ModuleList([
            OutputPPBlock(num_radial, hidden_channels, out_emb_channels, 1, num_output_layers, act_fn,
                          output_initializer) for _ in range(num_blocks + 1)])
        self.interaction_blocks = torch.nn.ModuleList([
            InteractionPPBlock(hidden_channels, int_emb_size, basis_emb_size, num_spherical, num_radial,
                               num_before_skip, num_after_skip, act_fn) for _ in range(num_blocks)])
        self.reset_parameters()

    def reset_parameters(self):
        """torch-geometric ``DimeNetPlusPlus``'s initialisation (embedding uniform in ±√3)."""
        self.rbf.reset_parameters()
        self.emb.reset_parameters()
        for block in (*self.output_blocks, *self.interaction_blocks):
            block.reset_parameters()

    @staticmethod
    def _output_hidden(block: OutputPPBlock, x, rbf, i, num_nodes: int) -> torch.Tensor:
        """``OutputPPBlock.forward`` up to (not including) its final linear layer ``lin``."""
        x = scatter(block.lin_rbf(rbf) * x, i, dim=0, dim_size=num_nodes, reduce="sum")
        x = block.lin_up(x)
        for lin in block.lins:
            x = block.act(lin(x))
        return x

    def forward(self, numbers: torch.Tensor, positions: torch.Tensor, batch: torch.Tensor):
        check_numbers(numbers, self.max_z, type(self).__name__)
        n = numbers.size(0)
        edge_index, _, _ = radius_graph(positions, batch, self.cutoff)
        i, j, idx_i, idx_j, idx_k, idx_kj, idx_ji = triplets(edge_index, num_nodes=n)
        dist = (positions[i] - positions[j]).pow(2).sum(dim=-1).sqrt()
        angle = dimenet_angles(positions, idx_i, idx_j, idx_k)
        rbf = self.rbf(dist)
        sbf = self.sbf(dist, angle, idx_kj)

        x = self.emb(numbers, rbf, i, j)
        blocks, atom_out = {}, positions.new_zeros(n)
        for t, output_block in enumerate(self.output_blocks):
            if t > 0:
                x = self.interaction_blocks[t - 1](x, rbf, sbf, idx_kj, idx_ji)
            u = self._output_hidden(output_block, x, rbf, i, n)
            blocks[f"layer{t}/L0"] = u
            atom_out = atom_out + output_block.lin(u).squeeze(-1)
        return atom_out, blocks


class ViSNetNet(torch.nn.Module):
    r"""ViSNet (Wang et al. 2024, *Nat. Commun.* 15, 313) with lmax = 1, from torch-geometric's blocks.

    Each atom carries scalars :math:`x_i \in \mathbb R^F` and vectors
    :math:`\vec v_i \in \mathbb R^{3 \times F}` (zero at input); each edge carries scalars
    :math:`f_{ij}` and the unit vector :math:`\hat{\mathbf d}_{ij}`. After a neighbour
    embedding of the elements, each layer (``ViS_MP``) runs multi-head attention with
    distance-modulated keys and values,

    .. math::

        \Delta x_i, \Delta\vec v_i = \mathrm{ViS\_MP}\big(x, \vec v, f, \hat{\mathbf d}\big)_i,
        \qquad x_i \leftarrow x_i + \Delta x_i,\quad \vec v_i \leftarrow \vec v_i + \Delta \vec v_i,

    where :math:`\Delta x_i` mixes in the invariants :math:`\langle U\vec v_i, V\vec v_i\rangle`
    and :math:`\Delta\vec v_i` sums neighbour vectors and :math:`\hat{\mathbf d}_{ij}` gated by
    scalars; all but the last layer also update :math:`f_{ij}` from the vectors' components
    orthogonal to the edge. As in torch-geometric, the graph includes a self-loop per atom
    (distance 0, zero direction). The readout is ``EquivariantScalar``: two gated equivariant
    blocks on :math:`(\mathrm{LayerNorm}(x_i), \vec v_i)` giving one scalar per atom, which
    torch-geometric's ``ViSNet`` sums (``reduce_op``) over atoms.

    Defaults: lmax 1, hidden 128, 8 heads, 32 exp-normal radial functions (fixed),
    cutoff 5 Å, no vector norm, **3 layers** (872 834 parameters; 4 would be 1 136 642, over
    the 1.1 M budget). The published QM9 models are larger (6–9 layers, hidden 256–512).

    Blocks: ``embedding/L0`` = :math:`x` after the neighbour embedding (input of layer 1),
    ``layer{k}/L0`` = :math:`x` after layer k (N, F) and ``layer{k}/L1`` = :math:`\vec v`
    after layer k as (N, F, 3), Cartesian x, y, z (the last layer's before the output norms,
    which the readout applies).

    Examples
    --------
    >>> net = ViSNetNet(hidden_channels=16, num_heads=2, num_rbf=8, num_layers=2)
    >>> z = torch.tensor([8, 1, 1]); r = torch.tensor([[0., 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    >>> out, blocks = net(z, r, torch.zeros(3, dtype=torch.long))
    >>> out.shape, {k: tuple(v.shape) for k, v in blocks.items()}  # doctest: +NORMALIZE_WHITESPACE
    (torch.Size([3]), {'embedding/L0': (3, 16), 'layer1/L0': (3, 16), 'layer1/L1': (3, 16, 3),
                       'layer2/L0': (3, 16), 'layer2/L1': (3, 16, 3)})
    """

    arch = "visnet"

    def __init__(self, *, hidden_channels: int = 128, num_layers: int = 3, num_heads: int = 8, num_rbf: int = 32,
                 cutoff: float = 5.0, lmax: int = 1, vecnorm_type: str | None = None,
                 trainable_vecnorm: bool = False, trainable_rbf: bool = False, max_z: int = 10):
        super().__init__()
        if lmax != 1:
            raise InputError(f"ViSNetNet supports lmax = 1 only, got {lmax}")
        self.hparams = dict(hidden_channels=hidden_channels, num_layers=num_layers, num_heads=num_heads,
                            num_rbf=num_rbf, cutoff=cutoff, lmax=lmax, vecnorm_type=vecnorm_type,
                            trainable_vecnorm=trainable_vecnorm, trainable_rbf=trainable_rbf, max_z=max_z)
        self.cutoff = float(cutoff)
        self.max_z = max_z
        # forward() calls this block's layers, never its own forward (its graph needs torch-cluster)
        self.representation_model = ViSNetBlock(
            lmax=lmax, vecnorm_type=vecnorm_type, trainable_vecnorm=trainable_vecnorm, num_heads=num_heads,
            num_layers=num_layers, hidden_channels=hidden_channels, num_rbf=num_rbf, trainable_rbf=trainable_rbf,
            max_z=max_z, cutoff=cutoff)
        self.output_model = EquivariantScalar(hidden_channels=hidden_channels)

    def forward(self, numbers: torch.Tensor, positions: torch.Tensor, batch: torch.Tensor):
        check_numbers(numbers, self.max_z, type(self).__name__)
        rep = self.representation_model
        n = numbers.size(0)
        edge_index, _, _ = radius_graph(positions, batch, self.cutoff)
        edge_vec = positions[edge_index[0]] - positions[edge_index[1]]
        dist = edge_vec.norm(dim=-1)
        loops = torch.arange(n, device=numbers.device)
        edge_index = torch.cat([edge_index, torch.stack([loops, loops])], dim=1)
        edge_weight = torch.cat([dist, dist.new_zeros(n)])
        edge_dir = torch.cat([edge_vec / dist.unsqueeze(1), edge_vec.new_zeros((n, 3))])
        edge_dir = rep.sphere(edge_dir)
        edge_attr = rep.distance_expansion(edge_weight)

        x = rep.neighbor_embedding(numbers, rep.embedding(numbers), edge_index, edge_weight, edge_attr)
        vec = x.new_zeros((n, 3, x.size(1)))
        edge_attr = rep.edge_embedding(edge_index, edge_attr, x)
        blocks = {"embedding/L0": x}
        for k, layer in enumerate(rep.vis_mp_layers, start=1):
            dx, dvec, dedge_attr = layer(x, vec, edge_index, edge_weight, edge_attr, edge_dir)
            x, vec = x + dx, vec + dvec
            if dedge_attr is not None:
                edge_attr = edge_attr + dedge_attr
            blocks[f"layer{k}/L0"] = x
            blocks[f"layer{k}/L1"] = vec.transpose(1, 2)
        atom_out = self.output_model.pre_reduce(rep.out_norm(x), rep.vec_out_norm(vec))
        return atom_out.squeeze(-1), blocks
