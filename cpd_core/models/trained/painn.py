r"""PaiNN: the polarizable atom interaction neural network, in plain torch, for training on QM9.

PaiNN (Schütt, Unke and Gastegger 2021, *ICML*, "Equivariant message passing for the
prediction of tensorial properties and molecular spectra") gives every atom :math:`i` scalar
features :math:`\mathbf s_i \in \mathbb R^F` and vector features :math:`\vec{\mathbf v}_i \in
\mathbb R^{F \times 3}`. Scalars start as an embedding of the atomic number, vectors at zero.
Each of the layers applies a *message* block and then an *update* block, both residual.

Edges come from :func:`~cpd_core.models.graph.radius_graph` as ``[i, j]``; atom :math:`i`
(``edge_index[0]``) aggregates the messages of its neighbours :math:`j` (``edge_index[1]``),
and the edge direction points from :math:`i` to :math:`j`:

.. math::

    \vec r_{ij} = \mathbf r_j - \mathbf r_i, \qquad r_{ij} = \lVert \vec r_{ij} \rVert .

**Message.** With :math:`\phi(\mathbf s) = W_2\,\mathrm{SiLU}(W_1 \mathbf s)` (:math:`F \to F \to 3F`)
and the filter :math:`\mathcal W(r) = (W_r\, \mathbf e(r) + \mathbf b_r)\, f_c(r)` (:math:`20 \to 3F`),
both split into three :math:`F`-blocks (:math:`ss`, :math:`vv`, :math:`vs`),

.. math::

    \Delta \mathbf s_i = \sum_j \phi_{ss}(\mathbf s_j) \circ \mathcal W_{ss}(r_{ij}), \qquad
    \Delta \vec{\mathbf v}_i = \sum_j \phi_{vv}(\mathbf s_j) \circ \mathcal W_{vv}(r_{ij})\,
    \vec{\mathbf v}_j + \phi_{vs}(\mathbf s_j) \circ \mathcal W_{vs}(r_{ij})\,
    \frac{\vec r_{ij}}{r_{ij}},

with :math:`n_{\rm rbf} = 20` sinc radial functions and a cosine cutoff at :math:`r_c`,

.. math::

    e_n(r) = \frac{\sin(n \pi r / r_c)}{r}, \quad n = 1, \dots, 20, \qquad
    f_c(r) = \tfrac12 \left(\cos(\pi r / r_c) + 1\right) \text{ for } r < r_c, \text{ else } 0.

**Update.** With channel mixings :math:`U, V` (:math:`F \to F`, no bias, acting on the channel
index of each Cartesian component) and :math:`\mathbf a = W_4\,\mathrm{SiLU}(W_3 [\mathbf s_i,
\lVert V \vec{\mathbf v}_i \rVert])` (:math:`2F \to F \to 3F`, split into :math:`vv, sv, ss`),

.. math::

    \Delta \vec{\mathbf v}_i = \mathbf a_{vv} \circ U \vec{\mathbf v}_i, \qquad
    \Delta \mathbf s_i = \mathbf a_{ss} + \mathbf a_{sv} \circ
    \langle U \vec{\mathbf v}_i, V \vec{\mathbf v}_i \rangle,

where the per-channel norm is :math:`\sqrt{\sum_{x,y,z} (V\vec{\mathbf v}_i)^2 + 10^{-8}}`
(differentiable where the vectors vanish, as in schnetpack). **Readout:** a
:math:`F \to F/2 \to 1` SiLU MLP of the last scalars gives ``atom_out``.

Under a rotation :math:`R` of the positions the scalars are unchanged and every vector block
rotates, :math:`\vec{\mathbf v} \to \vec{\mathbf v} R^\top`; under the inversion
:math:`\mathbf r \to -\mathbf r` the scalars are unchanged and the vectors flip sign (they are
polar vectors, built from :math:`\vec r_{ij}`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cpd_core.models.base import check_numbers
from cpd_core.models.graph import radius_graph

#: Added under the square root of the vector norms in the update block.
NORM_EPS = 1e-8


def sinc_rbf(distances: torch.Tensor, num_rbf: int, cutoff: float) -> torch.Tensor:
    r"""PaiNN's sinc radial basis, :math:`e_n(r) = \sin(n \pi r / r_c) / r`, :math:`n = 1 \dots n_{\rm rbf}`.

    Parameters
    ----------
    distances : torch.Tensor
        (E,) positive distances in Å.
    num_rbf : int
        Number of functions.
    cutoff : float
        :math:`r_c` in Å.

    Returns
    -------
    torch.Tensor
        (E, num_rbf).

    Examples
    --------
    >>> sinc_rbf(torch.tensor([2.5, 5 / 3]), 3, 5.0).round(decimals=4)  # e.g. sin(pi/2)/2.5 = 0.4
    tensor([[ 0.4000,  0.0000, -0.4000],
            [ 0.5196,  0.5196,  0.0000]])
    """
    n = torch.arange(1, num_rbf + 1, device=distances.device, dtype=distances.dtype)
    return torch.sin(n * math.pi * distances[:, None] / cutoff) / distances[:, None]


def cosine_cutoff(distances: torch.Tensor, cutoff: float) -> torch.Tensor:
    r"""The cosine cutoff :math:`f_c(r) = \frac12(\cos(\pi r / r_c) + 1)` below :math:`r_c`, zero from it on.

    Examples
    --------
    >>> cosine_cutoff(torch.tensor([0.0, 2.5, 5.0, 6.0]), 5.0)
    tensor([1.0000, 0.5000, 0.0000, 0.0000])
    """
    value = 0.5 * (torch.cos(math.pi * distances / cutoff) + 1.0)
    return value * (distances < cutoff).to(distances.dtype)


class PaiNNMessage(nn.Module):
    """PaiNN's message block (see the module docstring): neighbours' scalars and vectors → residuals."""

    def __init__(self, hidden: int, num_rbf: int):
        super().__init__()
        self.hidden = hidden
        self.phi = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 3 * hidden))
        self.filter = nn.Linear(num_rbf, 3 * hidden)

    def forward(self, s, v, edge_index, rbf, fcut, direction):
        """``s`` (N, F), ``v`` (N, 3, F), ``rbf`` (E, n_rbf), ``fcut`` (E,), ``direction`` (E, 3) → (Δs, Δv)."""
        i, j = edge_index
        x = self.phi(s)[j] * (self.filter(rbf) * fcut[:, None])
        ds, dvv, dvs = torch.split(x, self.hidden, dim=-1)
        dv = dvv[:, None, :] * v[j] + dvs[:, None, :] * direction[:, :, None]
        return (torch.zeros_like(s).index_add_(0, i, ds), torch.zeros_like(v).index_add_(0, i, dv))


class PaiNNUpdate(nn.Module):
    """PaiNN's update block (see the module docstring): per-atom mixing of scalars and vectors → residuals."""

    def __init__(self, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.U = nn.Linear(hidden, hidden, bias=False)
        self.V = nn.Linear(hidden, hidden, bias=False)
        self.mlp = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, 3 * hidden))

    def forward(self, s, v):
        """``s`` (N, F), ``v`` (N, 3, F) → (Δs, Δv)."""
        uv, vv = self.U(v), self.V(v)
        norm = torch.sqrt((vv ** 2).sum(dim=1) + NORM_EPS)
        avv, asv, ass = torch.split(self.mlp(torch.cat([s, norm], dim=-1)), self.hidden, dim=-1)
        return ass + asv * (uv * vv).sum(dim=1), avv[:, None, :] * uv


class PaiNN(nn.Module):
    r"""PaiNN for training on QM9, as a network of :mod:`cpd_core.training` (issue 4).

    Defaults are the paper's QM9 settings: :math:`F` = ``hidden`` = 128, 3 layers (message +
    update each, separate weights per layer), 20 sinc radial functions, cosine cutoff 5 Å,
    a two-layer SiLU readout :math:`F \to F/2 \to 1`; 577,537 parameters. Atomic numbers index
    an embedding of size ``max_z`` = 10 (H … F). Departures from the paper: none in the
    architecture; the readout returns per-atom values (the trainer pools and scales them).

    ``forward(numbers, positions, batch)`` returns ``(atom_out, blocks)``: ``atom_out`` (N,)
    the readout of the last scalars, and blocks ``embedding/L0`` (N, F), then for each layer
    :math:`k` ``layer{k}/L0`` (N, F) and ``layer{k}/L1`` (N, F, 3) (Cartesian x, y, z) after
    the update block of layer :math:`k`.

    Examples
    --------
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <...>
    >>> net = PaiNN(hidden=8, num_layers=2)
    >>> z = torch.tensor([8, 1, 1]); r = torch.tensor([[0., 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    >>> out, blocks = net(z, r, torch.zeros(3, dtype=torch.long))
    >>> out.shape, list(blocks), tuple(blocks["layer2/L1"].shape)
    (torch.Size([3]), ['embedding/L0', 'layer1/L0', 'layer1/L1', 'layer2/L0', 'layer2/L1'], (3, 8, 3))
    >>> sum(p.numel() for p in PaiNN().parameters())
    577537
    """

    arch = "painn"

    def __init__(self, *, hidden: int = 128, num_layers: int = 3, num_rbf: int = 20, cutoff: float = 5.0,
                 max_z: int = 10):
        super().__init__()
        self.hparams = {"hidden": hidden, "num_layers": num_layers, "num_rbf": num_rbf, "cutoff": cutoff,
                        "max_z": max_z}
        self.hidden, self.num_rbf, self.max_z = hidden, num_rbf, max_z
        self.cutoff = float(cutoff)
        self.embedding = nn.Embedding(max_z, hidden)
        self.messages = nn.ModuleList(PaiNNMessage(hidden, num_rbf) for _ in range(num_layers))
        self.updates = nn.ModuleList(PaiNNUpdate(hidden) for _ in range(num_layers))
        self.readout = nn.Sequential(nn.Linear(hidden, hidden // 2), nn.SiLU(), nn.Linear(hidden // 2, 1))

    def forward(self, numbers: torch.Tensor, positions: torch.Tensor, batch: torch.Tensor):
        check_numbers(numbers, self.max_z, "PaiNN")
        edge_index, _, _ = radius_graph(positions, batch, self.cutoff)
        i, j = edge_index
        vec = positions[j] - positions[i]
        dist = torch.linalg.vector_norm(vec, dim=-1)
        direction = vec / dist[:, None]
        rbf = sinc_rbf(dist, self.num_rbf, self.cutoff)
        fcut = cosine_cutoff(dist, self.cutoff)

        s = self.embedding(numbers).to(positions.dtype)
        v = s.new_zeros((len(s), 3, self.hidden))
        blocks = {"embedding/L0": s}
        for k, (message, update) in enumerate(zip(self.messages, self.updates), start=1):
            ds, dv = message(s, v, edge_index, rbf, fcut, direction)
            s, v = s + ds, v + dv
            ds, dv = update(s, v)
            s, v = s + ds, v + dv
            blocks[f"layer{k}/L0"] = s
            blocks[f"layer{k}/L1"] = v.transpose(1, 2)
        return self.readout(s).squeeze(-1), blocks
