r"""Neighbour lists in plain torch (no pyg-lib, torch-cluster or matscipy needed).

An edge :math:`i \to j` joins atoms of the same structure closer than the cutoff,

.. math::

    \mathbf d_{ij} = \mathbf r_j + \mathbf S_{ij} \mathbf L - \mathbf r_i,
    \qquad 0 < \lVert \mathbf d_{ij} \rVert < r_c,

where :math:`\mathbf L` holds the lattice vectors as rows and :math:`\mathbf S_{ij} \in
\mathbb Z^3` picks the periodic image of :math:`j` (zero for molecules). The convention
is matscipy's and ASE's ``neighbor_list("ijS")``, which MACE reads as (sender, receiver).
Both directions of every pair are listed.
"""

from __future__ import annotations

import math

import torch


def radius_graph(positions: torch.Tensor, batch: torch.Tensor, cutoff: float,
                 cell: torch.Tensor | None = None, pbc: torch.Tensor | None = None):
    """All pairs within ``cutoff`` in each structure.

    Parameters
    ----------
    positions : torch.Tensor
        (N, 3) coordinates in Å.
    batch : torch.Tensor
        (N,) non-decreasing structure index of each atom.
    cutoff : float
        In Å.
    cell, pbc : torch.Tensor, optional
        (S, 3, 3) lattice vectors as rows and (S, 3) periodic axes; omit both for molecules.

    Returns
    -------
    edge_index : torch.Tensor
        (2, E) int64 ``[i, j]``.
    unit_shifts : torch.Tensor
        (E, 3) integer image offsets :math:`\\mathbf S_{ij}` (as ``positions.dtype``).
    shifts : torch.Tensor
        (E, 3) Cartesian offsets :math:`\\mathbf S_{ij}\\mathbf L` in Å.

    Examples
    --------
    >>> r = torch.tensor([[0., 0, 0], [0, 0, 1], [0, 0, 5], [0, 0, 0]])
    >>> edge_index, _, _ = radius_graph(r, torch.tensor([0, 0, 0, 1]), cutoff=2.0)
    >>> edge_index.tolist()
    [[0, 1], [1, 0]]
    """
    if cutoff <= 0:
        raise ValueError(f"cutoff must be positive, got {cutoff}")
    if cell is None:
        return _molecular(positions, batch, cutoff)
    if pbc is None:
        pbc = torch.ones((cell.shape[0], 3), dtype=torch.bool, device=cell.device)
    return _periodic(positions, batch, cutoff, cell, pbc)


def _offsets(batch: torch.Tensor):
    n_structures = int(batch.max()) + 1 if len(batch) else 0
    sizes = torch.bincount(batch, minlength=n_structures)
    ptr = torch.cat([sizes.new_zeros(1), torch.cumsum(sizes, 0)])
    return sizes, ptr


def _molecular(positions, batch, cutoff):
    sizes, ptr = _offsets(batch)
    n, width = len(sizes), int(sizes.max()) if len(sizes) else 0
    slot = torch.arange(len(batch), device=batch.device) - ptr[batch]
    padded = positions.new_full((n, width, 3), float("nan"))
    padded[batch, slot] = positions
    d2 = ((padded[:, :, None, :] - padded[:, None, :, :]) ** 2).sum(-1)
    within = d2 < cutoff * cutoff  # NaN padding compares False
    within &= ~torch.eye(width, dtype=torch.bool, device=positions.device)
    s, a, b = within.nonzero(as_tuple=True)
    edge_index = torch.stack([ptr[s] + a, ptr[s] + b])
    zeros = positions.new_zeros((edge_index.shape[1], 3))
    return edge_index, zeros, zeros.clone()


def _periodic(positions, batch, cutoff, cell, pbc):
    sizes, ptr = _offsets(batch)
    edges, units = [], []
    for s in range(len(sizes)):
        r = positions[ptr[s]:ptr[s + 1]]
        lattice = cell[s]
        # images needed along axis k: cutoff / (spacing of lattice planes k) = cutoff * |b_k|
        recip = torch.linalg.inv(lattice.double()).T
        reach = [math.ceil(cutoff * float(recip[k].norm())) if bool(pbc[s, k]) else 0 for k in range(3)]
        grid = torch.stack(torch.meshgrid(*[torch.arange(-m, m + 1, device=r.device) for m in reach],
                                          indexing="ij"), -1).reshape(-1, 3).to(r.dtype)
        image = grid @ lattice  # (K, 3)
        d = r[None, None, :, :] + image[:, None, None, :] - r[None, :, None, :]  # (K, i, j, 3)
        within = (d ** 2).sum(-1) < cutoff * cutoff
        home = (grid == 0).all(-1)
        within[home] &= ~torch.eye(len(r), dtype=torch.bool, device=r.device)
        k, i, j = within.nonzero(as_tuple=True)
        edges.append(torch.stack([ptr[s] + i, ptr[s] + j]))
        units.append(grid[k])
    if not edges:
        empty = positions.new_zeros((0, 3))
        return torch.zeros((2, 0), dtype=torch.int64, device=positions.device), empty, empty
    edge_index = torch.cat(edges, dim=1)
    unit_shifts = torch.cat(units)
    shifts = torch.einsum("ek,ekl->el", unit_shifts, cell[batch[edge_index[0]]])
    return edge_index, unit_shifts, shifts


def triplets(edge_index: torch.Tensor, num_nodes: int):
    r"""Angle triplets :math:`k \to j \to i` of a directed graph, as torch-geometric's DimeNet expects.

    For every edge :math:`j \to i` (``edge_index[0] = j``, ``edge_index[1] = i``) and every
    edge :math:`k \to j` into its source with :math:`k \ne i`, one triplet. Plain torch
    (torch-geometric's own version needs torch-sparse); same outputs and order: triplets
    grouped by the edge :math:`j \to i`, each group ordered by :math:`k`.

    Returns
    -------
    col, row, idx_i, idx_j, idx_k, idx_kj, idx_ji : torch.Tensor
        ``col``/``row`` = ``edge_index[1]``/``edge_index[0]``; node indices of each triplet and
        the ids of its edges :math:`k \to j` and :math:`j \to i`.

    Examples
    --------
    >>> edge_index = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])  # the path 0 - 1 - 2, both ways
    >>> _, _, i, j, k, kj, ji = triplets(edge_index, 3)
    >>> list(zip(k.tolist(), j.tolist(), i.tolist()))
    [(2, 1, 0), (0, 1, 2)]
    """
    row, col = edge_index  # j -> i
    n_edges = row.numel()
    device = row.device
    # edges sorted by (target, source): the edges into node j are perm[ptr[j]:ptr[j + 1]], by source
    perm = torch.argsort(col * num_nodes + row, stable=True)
    counts = torch.bincount(col, minlength=num_nodes)
    ptr = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])
    per_edge = counts[row]  # edges k -> j into the source j of each edge j -> i
    idx_ji = torch.repeat_interleave(torch.arange(n_edges, device=device), per_edge)
    first = torch.cumsum(per_edge, 0) - per_edge
    within = torch.arange(idx_ji.numel(), device=device) - first[idx_ji]
    idx_kj = perm[ptr[row[idx_ji]] + within]
    idx_i, idx_j, idx_k = col[idx_ji], row[idx_ji], row[idx_kj]
    keep = idx_i != idx_k
    return col, row, idx_i[keep], idx_j[keep], idx_k[keep], idx_kj[keep], idx_ji[keep]
