r"""Pooling per-atom features into per-structure rows (torch only): what extraction and training share.

Every block is pooled over the atoms :math:`a` of structure :math:`s` with the batch index:

.. math::

    h_s^{\text{mean}} = \frac{1}{N_s}\sum_{a \in s} h_a, \qquad
    h_s^{\text{sum}} = \sum_{a \in s} h_a .

Blocks of degree :math:`L \ge 1` (per-atom tensors :math:`\mathbf v_{a,c} \in \mathbb R^{2L+1}`
for each channel :math:`c`) rotate with the structure; two rotation invariants keep different
information, and :func:`invariant_pool` returns both, named by a suffix:

``<block>@atom-norm``
    :math:`\operatorname{pool}_a \lVert \mathbf v_{a,c} \rVert`: the norm of each atom's
    vector, pooled afterwards. Blind to how the atoms' vectors are oriented relative to
    each other.
``<block>@pooled-norm``
    :math:`\lVert \operatorname{pool}_a \mathbf v_{a,c} \rVert`: the norm of the pooled vector.
    Keeps the cancellations between atoms that a molecular dipole is made of.

(Inner products between different pooled channels would add more invariants; they are not
computed.)
"""

from __future__ import annotations

import torch

from cpd_core.errors import InputError

POOLINGS = ("mean", "sum")
INVARIANTS = ("atom-norm", "pooled-norm")


def check_pooling(pooling: str) -> str:
    """``pooling`` if it is one of :data:`POOLINGS`, else :class:`InputError`."""
    if pooling not in POOLINGS:
        raise InputError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")
    return pooling


def pool_atoms(feats: torch.Tensor, batch: torch.Tensor, n_structures: int,
               pooling: str = "mean") -> torch.Tensor:
    """Pool per-atom rows (N, ...) into per-structure rows (S, ...) with the batch index.

    Examples
    --------
    >>> f = torch.tensor([[1.0], [3.0], [10.0]]); b = torch.tensor([0, 0, 1])
    >>> pool_atoms(f, b, 2, "mean").tolist(), pool_atoms(f, b, 2, "sum").tolist()
    ([[2.0], [10.0]], [[4.0], [10.0]])
    """
    check_pooling(pooling)
    total = feats.new_zeros((n_structures,) + tuple(feats.shape[1:])).index_add_(0, batch, feats)
    if pooling == "sum":
        return total
    counts = torch.bincount(batch, minlength=n_structures).to(feats.dtype)
    return total / counts.reshape((-1,) + (1,) * (feats.dim() - 1))


def invariant_pool(blocks: dict[str, torch.Tensor], batch: torch.Tensor, n_structures: int,
                   pooling: str = "mean") -> dict[str, torch.Tensor]:
    """Pool every block; an L ≥ 1 block (N, c, 2L+1) gives its two invariants (module docstring).

    Examples
    --------
    >>> v = torch.tensor([[[1.0, 0, 0]], [[-1.0, 0, 0]]])       # two atoms, opposite unit vectors
    >>> out = invariant_pool({"l1": v}, torch.tensor([0, 0]), 1)
    >>> out["l1@atom-norm"].tolist(), out["l1@pooled-norm"].tolist()
    ([[1.0]], [[0.0]])
    """
    out = {}
    for name, x in blocks.items():
        if x.dim() == 2:
            out[name] = pool_atoms(x, batch, n_structures, pooling)
        elif x.dim() == 3:
            out[f"{name}@atom-norm"] = pool_atoms(x.norm(dim=-1), batch, n_structures, pooling)
            out[f"{name}@pooled-norm"] = pool_atoms(x, batch, n_structures, pooling).norm(dim=-1)
        else:
            raise ValueError(f"block {name!r} has shape {tuple(x.shape)}; expected (N, d) or (N, c, 2L+1)")
    return out
