"""The pure-torch neighbour list against ASE's (a brute-force, independent implementation)."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.neighborlist import neighbor_list

from cpd_core.models.graph import radius_graph


def _as_set(i, j, S):
    return {(int(a), int(b), *map(int, s)) for a, b, s in zip(i, j, np.asarray(S))}


def _ours(structures, cutoff, periodic=False):
    pos = torch.tensor(np.concatenate([a.positions for a in structures]))
    batch = torch.repeat_interleave(torch.arange(len(structures)), torch.tensor([len(a) for a in structures]))
    kw = {}
    if periodic:
        kw = dict(cell=torch.tensor(np.stack([a.cell.array for a in structures])),
                  pbc=torch.tensor(np.stack([a.pbc for a in structures])))
    return radius_graph(pos, batch, cutoff, **kw), pos


def _reference(structures, cutoff):
    edges, offset = set(), 0
    for a in structures:
        i, j, S = neighbor_list("ijS", a, cutoff)
        edges |= _as_set(i + offset, j + offset, S)
        offset += len(a)
    return edges


@pytest.mark.parametrize("cutoff", [1.2, 2.5, 5.0])
def test_molecules_match_ase(cutoff):
    mols = [molecule(n) for n in ("CH3CH2OH", "H2O", "C6H6", "CH3CN")]
    (edge_index, unit, shifts), _ = _ours(mols, cutoff)
    assert _as_set(edge_index[0], edge_index[1], unit) == _reference(mols, cutoff)
    assert torch.all(shifts == 0)
    # both directions, no self-loops, no edges across structures
    assert not torch.any(edge_index[0] == edge_index[1])


def test_no_edges_between_structures_even_when_they_overlap():
    a = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.7]])
    b = Atoms("H2", positions=[[0, 0, 0.1], [0, 0, 0.8]])  # lies on top of a
    (edge_index, _, _), _ = _ours([a, b], 2.0)
    assert sorted(map(tuple, edge_index.T.tolist())) == [(0, 1), (1, 0), (2, 3), (3, 2)]


@pytest.mark.parametrize("cutoff", [3.0, 5.0, 6.0])
def test_periodic_crystals_match_ase(cutoff):
    rng = np.random.default_rng(0)
    crystals = [bulk("Si", "diamond", a=5.43), bulk("NaCl", "rocksalt", a=5.64),
                bulk("Cu", "fcc", a=3.6, cubic=True)]
    rattled = crystals[2].copy()
    rattled.positions += rng.normal(scale=0.1, size=rattled.positions.shape)
    crystals[2] = rattled
    (edge_index, unit, shifts), pos = _ours(crystals, cutoff, periodic=True)
    assert _as_set(edge_index[0], edge_index[1], unit) == _reference(crystals, cutoff)
    d = pos[edge_index[1]] + shifts - pos[edge_index[0]]
    assert float(d.norm(dim=1).max()) < cutoff and float(d.norm(dim=1).min()) > 0


def test_slab_periodic_in_two_directions_only():
    slab = bulk("Cu", "fcc", a=3.6, cubic=True)
    slab.pbc = [True, True, False]
    (edge_index, unit, _), _ = _ours([slab], 4.0, periodic=True)
    assert _as_set(edge_index[0], edge_index[1], unit) == _reference([slab], 4.0)
    assert torch.all(unit[:, 2] == 0)


def test_bad_cutoff_raises():
    with pytest.raises(ValueError, match="positive"):
        radius_graph(torch.zeros((2, 3)), torch.tensor([0, 0]), 0.0)


def test_triplets_match_brute_force():
    from cpd_core.models.graph import triplets

    mols = [molecule(n) for n in ("CH3CH2OH", "C6H6", "H2O")]
    (edge_index, _, _), _ = _ours(mols, 2.0)
    n = sum(len(m) for m in mols)
    col, row, i, j, k, kj, ji = triplets(edge_index, n)
    assert torch.equal(row, edge_index[0]) and torch.equal(col, edge_index[1])
    # every triplet is consistent with its two edges
    assert torch.equal(edge_index[0, ji], j) and torch.equal(edge_index[1, ji], i)
    assert torch.equal(edge_index[0, kj], k) and torch.equal(edge_index[1, kj], j)
    src, dst = edge_index.tolist()
    expected = {(f, e) for e in range(len(src)) for f in range(len(src))
                if dst[f] == src[e] and src[f] != dst[e]}
    got = list(zip(kj.tolist(), ji.tolist()))
    assert len(got) == len(set(got)) and set(got) == expected
    # grouped by the edge j -> i, each group ordered by k (torch-geometric's order)
    assert ji.tolist() == sorted(ji.tolist())
    for e in set(ji.tolist()):
        ks = k[ji == e].tolist()
        assert ks == sorted(ks)


def test_triplets_of_an_empty_graph():
    from cpd_core.models.graph import triplets

    out = triplets(torch.zeros((2, 0), dtype=torch.int64), 3)
    assert all(t.numel() == 0 for t in out)
