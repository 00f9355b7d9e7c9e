r"""MACENet: the small MACE this project trains on QM9 (issue 4), a network of :mod:`cpd_core.models.trained`.

A ``ScaleShiftMACE`` from mace-torch, built by the helper that builds the foundation models'
random-init twins (``cpd_core.models.mace._scale_shift_mace``) and split per layer as they are
(:func:`cpd_core.models.mace.layer_irreps`). The adapter for the released MACE-MP-0 and
MACE-OFF23 is :mod:`cpd_core.models.mace`. mace-torch is imported only when a network is built.
"""

from __future__ import annotations

import torch

from cpd_core.datasets.qm9 import QM9_ELEMENTS
from cpd_core.errors import InputError
from cpd_core.models.base import split_irreps
from cpd_core.models.graph import radius_graph
from cpd_core.models.mace import _scale_shift_mace, layer_irreps


class MACENet(torch.nn.Module):
    r"""A small MACE for training on QM9, as a network of :mod:`cpd_core.training` (issue 4).

    ``ScaleShiftMACE`` from mace-torch with residual interaction blocks and **L = 1 kept in
    the last layer** (``keep_last_layer_irreps=True``), so every layer has scalar and vector
    channels. Defaults: ``hidden_irreps = "64x0e+64x1o"``, 2 interactions, correlation 3,
    ``max_ell`` 3, 8 Bessel functions, cutoff 5 Å, radial MLP [64, 64, 64], readout MLP 16x0e,
    avg_num_neighbors 15.52 (the mean within 5 Å over 1000 QM9 molecules), no E0s, scale 1 and
    shift 0 (the trainer standardises the target); the MACE-OFF23 *small* width (64 channels)
    rather than medium, to train in minutes on a GPU.

    ``forward(numbers, positions, batch)`` returns ``(atom_out, blocks)``: ``atom_out`` is the
    model's ``node_energy`` (the sum of its per-layer readouts, per atom) and ``blocks`` the
    model's own ``node_feats`` split per layer into ``layer{t}/L0`` (N, c) and ``layer{t}/L1``
    (N, c, 3), the latter in e3nn's real basis, components ordered (y, z, x).

    Examples
    --------
    >>> net = MACENet(hidden_irreps="8x0e+8x1o")
    >>> z = torch.tensor([8, 1, 1]); r = torch.tensor([[0., 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    >>> out, blocks = net(z, r, torch.zeros(3, dtype=torch.long))
    >>> out.shape, {k: tuple(v.shape) for k, v in blocks.items()}
    (torch.Size([3]), {'layer1/L0': (3, 8), 'layer1/L1': (3, 8, 3), 'layer2/L0': (3, 8), 'layer2/L1': (3, 8, 3)})
    """

    arch = "mace"

    def __init__(self, *, hidden_irreps: str = "64x0e+64x1o", num_interactions: int = 2, correlation: int = 3,
                 max_ell: int = 3, num_bessel: int = 8, cutoff: float = 5.0, radial_mlp: tuple = (64, 64, 64),
                 mlp_irreps: str = "16x0e", avg_num_neighbors: float = 15.52,
                 atomic_numbers: tuple = QM9_ELEMENTS):
        super().__init__()
        self.hparams = dict(hidden_irreps=hidden_irreps, num_interactions=num_interactions,
                            correlation=correlation, max_ell=max_ell, num_bessel=num_bessel, cutoff=cutoff,
                            radial_mlp=list(radial_mlp), mlp_irreps=mlp_irreps,
                            avg_num_neighbors=avg_num_neighbors, atomic_numbers=list(atomic_numbers))
        self.cutoff = float(cutoff)
        hypers = dict(atomic_numbers=tuple(atomic_numbers), r_max=cutoff, num_bessel=num_bessel,
                      num_polynomial_cutoff=5, max_ell=max_ell, hidden_irreps=hidden_irreps,
                      MLP_irreps=mlp_irreps, num_interactions=num_interactions, correlation=correlation,
                      radial_MLP=list(radial_mlp), avg_num_neighbors=avg_num_neighbors,
                      atomic_inter_scale=1.0, atomic_inter_shift=0.0)
        self.model = _scale_shift_mace(hypers, keep_last_layer_irreps=True).float()
        self.layer_irreps = layer_irreps(self.model)
        index = torch.full((max(atomic_numbers) + 1,), -1, dtype=torch.int64)
        index[list(atomic_numbers)] = torch.arange(len(atomic_numbers))
        self.register_buffer("species_index", index, persistent=False)

    def forward(self, numbers: torch.Tensor, positions: torch.Tensor, batch: torch.Tensor):
        if bool((numbers >= len(self.species_index)).any()) or bool((self.species_index[
                numbers.clamp(max=len(self.species_index) - 1)] < 0).any()):
            bad = sorted(set(numbers.unique().tolist()) - set(self.hparams["atomic_numbers"]))
            raise InputError(f"MACENet supports atomic numbers {self.hparams['atomic_numbers']}, got {bad}")
        node_attrs = torch.nn.functional.one_hot(self.species_index[numbers],
                                                 len(self.hparams["atomic_numbers"])).to(positions.dtype)
        edge_index, unit_shifts, shifts = radius_graph(positions, batch, self.cutoff)
        n = int(batch[-1]) + 1 if len(batch) else 0
        sizes = torch.bincount(batch, minlength=n)
        data = {"positions": positions, "node_attrs": node_attrs, "edge_index": edge_index, "shifts": shifts,
                "unit_shifts": unit_shifts, "cell": positions.new_zeros((3 * n, 3)), "batch": batch,
                "ptr": torch.cat([sizes.new_zeros(1), torch.cumsum(sizes, 0)])}
        out = self.model(data, training=self.training, compute_force=False)
        node_feats, blocks, start = out["node_feats"], {}, 0
        for t, irreps in enumerate(self.layer_irreps, start=1):
            width = sum(mul * (2 * ell + 1) for mul, ell in irreps)
            blocks.update(split_irreps(node_feats[:, start:start + width], irreps, f"layer{t}"))
            start += width
        return out["node_energy"].to(positions.dtype), blocks
