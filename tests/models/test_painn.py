"""PaiNN: blocks, invariance and equivariance, batching, gradients, init, and known answers."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch
from ase.build import molecule

from cpd_core.errors import InputError
from cpd_core.models.trained import ARCHITECTURES, network_class
from cpd_core.models.trained.painn import NORM_EPS, PaiNN, cosine_cutoff, sinc_rbf
from cpd_core.testing import random_rotation

HIDDEN = 16


def _random_molecule(rng, n=8, min_dist=0.9):
    """n atoms of H C N O F in a 3.5 Å box, no two closer than ``min_dist``."""
    pos = []
    while len(pos) < n:
        p = rng.uniform(0, 3.5, size=3)
        if all(np.linalg.norm(p - q) >= min_dist for q in pos):
            pos.append(p)
    return rng.choice([1, 6, 7, 8, 9], size=n), np.array(pos)


def _mol(name):
    m = molecule(name)
    return m.numbers, m.positions


def _run(net, numbers_list, positions_list):
    z = torch.as_tensor(np.concatenate(numbers_list), dtype=torch.int64)
    r = torch.as_tensor(np.concatenate(positions_list), dtype=torch.float64)
    b = torch.repeat_interleave(torch.arange(len(numbers_list)), torch.tensor([len(a) for a in numbers_list]))
    return net(z, r, b)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return PaiNN(hidden=HIDDEN, num_layers=3).double()


@pytest.fixture(scope="module")
def mols():
    return [_mol("CH3CH2OH"), _mol("CH4"), _random_molecule(np.random.default_rng(1))]


def test_blocks_and_shapes(net, mols):
    z, r = mols[0]
    out, blocks = _run(net, [z], [r])
    n = len(z)
    assert out.shape == (n,) and out.dtype == torch.float64
    assert list(blocks) == ["embedding/L0", "layer1/L0", "layer1/L1", "layer2/L0", "layer2/L1",
                            "layer3/L0", "layer3/L1"]
    for name, t in blocks.items():
        assert tuple(t.shape) == ((n, HIDDEN, 3) if name.endswith("L1") else (n, HIDDEN)), name
        assert torch.isfinite(t).all()
    assert net.arch == "painn" and network_class("painn") is PaiNN
    assert [arch for arch, (module, _, _) in ARCHITECTURES.items() if module == PaiNN.__module__] == ["painn"]


def test_defaults_and_size():
    net = PaiNN()
    assert net.hparams == {"hidden": 128, "num_layers": 3, "num_rbf": 20, "cutoff": 5.0, "max_z": 10}
    assert net.cutoff == 5.0 and isinstance(net.cutoff, float)
    assert sum(p.numel() for p in net.parameters()) == 577_537
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    assert buf.tell() < 4.5e6


@pytest.mark.parametrize("k", [0, 1, 2])
def test_rotation_translation(net, mols, k):
    z, r = mols[k]
    R = random_rotation(np.random.default_rng(k))
    out, blocks = _run(net, [z], [r])
    out2, blocks2 = _run(net, [z], [r @ R.T + np.array([1.3, -2.0, 0.7])])
    Rt = torch.as_tensor(R)
    torch.testing.assert_close(out2, out, atol=1e-9, rtol=1e-9)
    for name, t in blocks.items():
        expected = t @ Rt.T if name.endswith("L1") else t
        torch.testing.assert_close(blocks2[name], expected, atol=1e-9, rtol=1e-9, msg=name)


def test_inversion_flips_vectors(net, mols):
    """Under r -> -r scalars stay, every vector block changes sign: block(-x) == -block(x)."""
    z, r = mols[2]
    out, blocks = _run(net, [z], [r])
    out2, blocks2 = _run(net, [z], [-r])
    torch.testing.assert_close(out2, out, atol=1e-10, rtol=1e-10)
    for name, t in blocks.items():
        torch.testing.assert_close(blocks2[name], -t if name.endswith("L1") else t, atol=1e-10, rtol=1e-10)
        if name.endswith("L1"):
            assert t.abs().max() > 1e-3, name  # the check is not vacuous


def test_permutation(net, mols):
    z, r = mols[2]
    perm = np.random.default_rng(3).permutation(len(z))
    out, blocks = _run(net, [z], [r])
    out2, blocks2 = _run(net, [z[perm]], [r[perm]])
    torch.testing.assert_close(out2, out[perm], atol=1e-10, rtol=1e-10)
    for name, t in blocks.items():
        torch.testing.assert_close(blocks2[name], t[perm], atol=1e-10, rtol=1e-10)


def test_batching_equals_alone(net, mols):
    # the molecules overlap in space: only the batch index keeps them apart
    out, blocks = _run(net, [m[0] for m in mols], [m[1] for m in mols])
    start = 0
    for z, r in mols:
        o, bl = _run(net, [z], [r])
        sl = slice(start, start + len(z))
        torch.testing.assert_close(out[sl], o, atol=1e-10, rtol=1e-10)
        for name, t in bl.items():
            torch.testing.assert_close(blocks[name][sl], t, atol=1e-10, rtol=1e-10)
        start += len(z)


def test_gradients_reach_all_parameters(mols):
    torch.manual_seed(0)
    net = PaiNN(hidden=HIDDEN)
    z, r = mols[0]
    r = torch.as_tensor(r, dtype=torch.float32).requires_grad_(True)
    out, _ = net(torch.as_tensor(z), r, torch.zeros(len(z), dtype=torch.int64))
    out.sum().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []
    assert r.grad is not None and torch.isfinite(r.grad).all() and r.grad.abs().sum() > 0


def test_seeded_init_and_hparams_round_trip():
    torch.manual_seed(5)
    a = PaiNN(hidden=HIDDEN, num_layers=2, num_rbf=8, cutoff=4.0, max_z=12)
    torch.manual_seed(5)
    b = type(a)(**json.loads(json.dumps(a.hparams)))
    assert b.hparams == a.hparams and b.cutoff == 4.0
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_bad_atomic_number(net):
    r = torch.tensor([[0.0, 0, 0], [1.0, 0, 0]], dtype=torch.float64)
    with pytest.raises(InputError, match=r"\[10\]"):
        net(torch.tensor([6, 10]), r, torch.zeros(2, dtype=torch.int64))


def test_rbf_and_cutoff_known_values():
    rc = 5.0
    d = torch.tensor([0.5, 1.0, 2.5, 4.0], dtype=torch.float64)
    rbf = sinc_rbf(d, 20, rc)
    assert rbf.shape == (4, 20)
    for a, dist in enumerate(d.tolist()):
        for n in (1, 2, 7, 20):
            assert rbf[a, n - 1].item() == pytest.approx(math.sin(n * math.pi * dist / rc) / dist, abs=1e-12)
    assert rbf[2, 0].item() == pytest.approx(0.4)  # sin(pi/2) / 2.5
    assert rbf[2, 1].item() == pytest.approx(0.0, abs=1e-12)  # sin(pi) / 2.5
    fc = cosine_cutoff(torch.tensor([0.0, 1.25, 2.5, 3.75, 4.999, 5.0, 7.0], dtype=torch.float64), rc)
    expected = [1.0, 0.5 * (math.cos(math.pi / 4) + 1), 0.5, 0.5 * (math.cos(3 * math.pi / 4) + 1)]
    assert fc[:4].tolist() == pytest.approx(expected, abs=1e-12)
    assert 0 < fc[4].item() < 1e-6 and fc[5].item() == 0.0 and fc[6].item() == 0.0


def test_isolated_atom_by_hand(net):
    """No neighbours: vectors stay exactly zero, and only the update MLPs' a_ss changes the scalars."""
    z = torch.tensor([6])
    out, blocks = net(z, torch.zeros((1, 3), dtype=torch.float64), torch.zeros(1, dtype=torch.int64))
    s = net.embedding(z)
    for k, update in enumerate(net.updates, start=1):
        assert torch.equal(blocks[f"layer{k}/L1"], torch.zeros(1, HIDDEN, 3, dtype=torch.float64))
        norm = torch.full_like(s, math.sqrt(NORM_EPS))
        s = s + update.mlp(torch.cat([s, norm], dim=-1))[:, 2 * HIDDEN:]
        torch.testing.assert_close(blocks[f"layer{k}/L0"], s, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(out, net.readout(s).squeeze(-1), atol=1e-12, rtol=1e-12)


def test_atoms_beyond_cutoff_do_not_interact(net, mols):
    """Two groups farther apart than the cutoff in one structure give the outputs of each alone."""
    (z1, r1), (z2, r2) = mols[0], mols[1]
    far = r2 + np.array([net.cutoff + 10.0, 0, 0])
    out, blocks = _run(net, [np.concatenate([z1, z2])], [np.concatenate([r1, far])])
    o1, b1 = _run(net, [z1], [r1])
    o2, b2 = _run(net, [z2], [r2])
    torch.testing.assert_close(out, torch.cat([o1, o2]), atol=1e-10, rtol=1e-10)
    for name in blocks:
        torch.testing.assert_close(blocks[name], torch.cat([b1[name], b2[name]]), atol=1e-10, rtol=1e-10)
    # and a single H atom far from a C atom behaves like a lone atom
    pair, _ = net(torch.tensor([6, 1]), torch.tensor([[0.0, 0, 0], [0, 0, 5.5]], dtype=torch.float64),
                  torch.zeros(2, dtype=torch.int64))
    lone_c, _ = net(torch.tensor([6]), torch.zeros((1, 3), dtype=torch.float64), torch.zeros(1, dtype=torch.int64))
    assert pair[0].item() == pytest.approx(lone_c.item(), abs=1e-12)


def test_float32_forward(mols):
    torch.manual_seed(0)
    net = PaiNN(hidden=HIDDEN)
    z, r = mols[1]
    out, blocks = net(torch.as_tensor(z), torch.as_tensor(r, dtype=torch.float32),
                      torch.zeros(len(z), dtype=torch.int64))
    assert out.dtype == torch.float32 and all(t.dtype == torch.float32 for t in blocks.values())
