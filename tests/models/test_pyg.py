"""SchNet, DimeNet++ and ViSNet nets: protocol, invariances, gradients, and agreement with torch-geometric's models."""

import io
import json

import numpy as np
import pytest
import torch
from ase.build import molecule

from cpd_core import InputError
from cpd_core.models.graph import radius_graph, triplets
from cpd_core.models.trained import ARCHITECTURES, network_class, pyg
from cpd_core.testing import random_rotation

SMALL = {
    "schnet": dict(hidden_channels=16, num_filters=16, num_interactions=2, num_gaussians=10, cutoff=3.0),
    "dimenet++": dict(hidden_channels=16, num_blocks=2, int_emb_size=8, basis_emb_size=4, out_emb_channels=16,
                      num_spherical=3, num_radial=4, cutoff=3.0, output_initializer="glorot_orthogonal"),
    "visnet": dict(hidden_channels=16, num_heads=2, num_rbf=8, num_layers=2, cutoff=3.0),
}
ARCHS = list(SMALL)
#: the architectures of ARCHITECTURES implemented in cpd_core.models.trained.pyg
PYG_ARCHS = [arch for arch, (module, _, _) in ARCHITECTURES.items() if module == pyg.__name__]


def _random_molecule(rng, n=8, min_distance=0.9):
    positions = []
    while len(positions) < n:
        p = rng.uniform(0, 3.0, size=3)
        if all(np.linalg.norm(p - q) >= min_distance for q in positions):
            positions.append(p)
    return rng.choice([1, 6, 7, 8, 9], size=n), np.array(positions)


@pytest.fixture(scope="module")
def mols():
    ethanol, methane = molecule("CH3CH2OH"), molecule("CH4")
    return [(ethanol.numbers, ethanol.positions), (methane.numbers, methane.positions),
            _random_molecule(np.random.default_rng(0))]


def _batch(mols):
    z = torch.from_numpy(np.concatenate([m[0] for m in mols])).long()
    r = torch.from_numpy(np.concatenate([m[1] for m in mols])).double()
    b = torch.repeat_interleave(torch.arange(len(mols)), torch.tensor([len(m[0]) for m in mols]))
    return z, r, b


def _net(arch, seed=0):
    torch.manual_seed(seed)
    return network_class(arch)(**SMALL[arch]).double()


@pytest.fixture(scope="module")
def nets():
    return {arch: _net(arch) for arch in ARCHS}


@pytest.mark.parametrize("arch", ARCHS)
def test_block_names_shapes_and_output(nets, mols, arch):
    net = nets[arch]
    z, r, b = _batch(mols)
    out, blocks = net(z, r, b)
    n, small = len(z), SMALL[arch]
    assert out.shape == (n,) and out.dtype == torch.float64
    if arch == "schnet":
        expected = {"embedding/L0": (n, 16), "layer1/L0": (n, 16), "layer2/L0": (n, 16)}
    elif arch == "dimenet++":
        expected = {f"layer{t}/L0": (n, small["out_emb_channels"]) for t in range(small["num_blocks"] + 1)}
    else:
        expected = {"embedding/L0": (n, 16)}
        for k in (1, 2):
            expected.update({f"layer{k}/L0": (n, 16), f"layer{k}/L1": (n, 16, 3)})
    assert {k: tuple(v.shape) for k, v in blocks.items()} == expected
    assert list(blocks) == list(expected)
    assert net.arch == arch and network_class(arch) is type(net) and type(net).__module__ == pyg.__name__
    assert net.cutoff == 3.0


@pytest.mark.parametrize("arch", ARCHS)
def test_rotation_translation_invariance_and_l1_equivariance(nets, mols, arch):
    net = nets[arch]
    z, r, b = _batch(mols)
    rotation = torch.from_numpy(random_rotation(np.random.default_rng(1)))
    out, blocks = net(z, r, b)
    out2, blocks2 = net(z, r @ rotation.T + torch.tensor([1.5, -2.0, 0.7], dtype=torch.float64), b)
    torch.testing.assert_close(out2, out, atol=1e-9, rtol=0)
    for name, block in blocks.items():
        expected = block @ rotation.T if name.endswith("/L1") else block
        torch.testing.assert_close(blocks2[name], expected, atol=1e-9, rtol=0, msg=name)
    assert any(name.endswith("/L1") for name in blocks) == (arch == "visnet")


@pytest.mark.parametrize("arch", ARCHS)
def test_permuting_atoms_permutes_outputs(nets, mols, arch):
    net = nets[arch]
    z, r, b = _batch(mols[:1])
    perm = torch.from_numpy(np.random.default_rng(2).permutation(len(z)))
    out, blocks = net(z, r, b)
    out2, blocks2 = net(z[perm], r[perm], b)
    torch.testing.assert_close(out2, out[perm], atol=1e-10, rtol=0)
    for name in blocks:
        torch.testing.assert_close(blocks2[name], blocks[name][perm], atol=1e-10, rtol=0, msg=name)


@pytest.mark.parametrize("arch", ARCHS)
def test_batch_equals_one_molecule_at_a_time(nets, mols, arch):
    net = nets[arch]
    out, blocks = net(*_batch(mols))
    alone = [net(*_batch([m])) for m in mols]
    torch.testing.assert_close(out, torch.cat([a[0] for a in alone]), atol=1e-10, rtol=0)
    for name in blocks:
        torch.testing.assert_close(blocks[name], torch.cat([a[1][name] for a in alone]), atol=1e-10, rtol=0)


#: parameters that get no gradient from atom_out, and why
NO_GRADIENT = {
    "schnet": set(),
    "dimenet++": set(),
    # layer 1 sees zero input vectors (its edge update is then 0 whatever f_proj is); the readout's
    # last gated block drops its vector output
    "visnet": {"representation_model.vis_mp_layers.0.vec_proj.weight",
               "representation_model.vis_mp_layers.0.f_proj.weight",
               "representation_model.vis_mp_layers.0.f_proj.bias",
               "representation_model.vis_mp_layers.0.w_src_proj.weight",
               "representation_model.vis_mp_layers.0.w_trg_proj.weight",
               "output_model.output_network.1.vec2_proj.weight"},
}


@pytest.mark.parametrize("arch", ARCHS)
def test_gradients_reach_the_parameters(mols, arch):
    net = _net(arch)
    z, r, b = _batch(mols)
    r.requires_grad_(True)
    out, _ = net(z, r, b)
    out.sum().backward()
    dead = {name for name, p in net.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)}
    assert dead == NO_GRADIENT[arch]
    assert torch.isfinite(r.grad).all() and r.grad.abs().sum() > 0


def test_dimenet_zero_output_init_gives_zero_output_and_nonzero_blocks(mols):
    net = pyg.DimeNetPPNet(**{**SMALL["dimenet++"], "output_initializer": "zeros"}).double()
    out, blocks = net(*_batch(mols))
    assert bool((out == 0).all()) and all(bool(v.abs().sum() > 0) for v in blocks.values())


@pytest.mark.parametrize("arch", ARCHS)
def test_seeded_init_reproducible_and_hparams_round_trip(arch):
    a, b, c = _net(arch), _net(arch), _net(arch, seed=1)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    rebuilt = type(a)(**json.loads(json.dumps(a.hparams)))
    assert rebuilt.hparams == a.hparams
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in sa.items()}


@pytest.mark.parametrize("arch", ARCHS)
def test_atomic_number_at_or_above_max_z_raises(nets, arch):
    z = torch.tensor([6, 17, 1])
    with pytest.raises(InputError, match=r"\[17\]"):
        nets[arch](z, torch.eye(3, dtype=torch.float64), torch.zeros(3, dtype=torch.long))


def test_default_sizes_fit_the_budget(monkeypatch):
    # the spherical basis has no weights and takes sympy ~15 s to build at 7 x 6
    monkeypatch.setattr(pyg, "spherical_basis", lambda *args: torch.nn.Identity())
    counts = {}
    for arch in PYG_ARCHS:
        cls = network_class(arch)
        torch.manual_seed(0)
        net = cls()
        counts[arch] = sum(p.numel() for p in net.parameters())
        buffer = io.BytesIO()
        torch.save(net.state_dict(), buffer)
        assert len(buffer.getvalue()) < 4.5e6 and net.cutoff == 5.0 and net.hparams["max_z"] == 10
    assert counts == {"schnet": 444289, "dimenet++": 1090150, "visnet": 872834}


# --- known answers: torch-geometric's own models, given our graph, predict the sums of atom_out ---

def _pyg_radius_graph(x, r, batch=None, loop=False, max_num_neighbors=32, **_):
    edge_index, _, _ = radius_graph(x, batch, r)
    if loop:
        nodes = torch.arange(len(x))
        edge_index = torch.cat([edge_index, torch.stack([nodes, nodes])], dim=1)
    return edge_index


def _load_stock(net, stock, *embeddings):
    """Load the stock model's weights into ``net``, its element ``embeddings`` cut to ``max_z`` rows."""
    state = stock.state_dict()
    net.load_state_dict({k: state[k][:net.max_z] if k in embeddings else state[k] for k in net.state_dict()})
    assert all(net.max_z < len(state[k]) for k in embeddings)


def _per_structure(out, b):
    return torch.zeros(int(b.max()) + 1, dtype=out.dtype).index_add_(0, b, out)


def test_schnet_equals_torch_geometric_schnet(mols, monkeypatch):
    from torch_geometric.nn.models import SchNet, schnet

    monkeypatch.setattr(schnet, "radius_graph", _pyg_radius_graph)
    small = SMALL["schnet"]
    torch.manual_seed(3)
    stock = SchNet(**small).double()
    net = pyg.SchNetNet(**small).double()
    _load_stock(net, stock, "embedding.weight")
    z, r, b = _batch(mols)
    out, _ = net(z, r, b)
    torch.testing.assert_close(stock(z, r, b).squeeze(-1), _per_structure(out, b), atol=1e-12, rtol=1e-12)


def test_dimenet_equals_torch_geometric_dimenet_plus_plus(mols, monkeypatch):
    from torch_geometric.nn.models import DimeNetPlusPlus, dimenet

    monkeypatch.setattr(dimenet, "radius_graph", _pyg_radius_graph)
    monkeypatch.setattr(dimenet, "triplets", triplets)
    small = SMALL["dimenet++"]
    torch.manual_seed(3)
    stock = DimeNetPlusPlus(out_channels=1, **small).double()
    net = pyg.DimeNetPPNet(**small).double()
    _load_stock(net, stock, "emb.emb.weight")
    z, r, b = _batch(mols)
    out, _ = net(z, r, b)
    torch.testing.assert_close(stock(z, r, b).squeeze(-1), _per_structure(out, b), atol=1e-12, rtol=1e-12)


def test_visnet_equals_torch_geometric_visnet(mols, monkeypatch):
    from torch_geometric.nn.models import ViSNet, visnet

    monkeypatch.setattr(visnet, "radius_graph", _pyg_radius_graph)
    small = SMALL["visnet"]
    torch.manual_seed(3)
    stock = ViSNet(max_z=100, **small).double()
    net = pyg.ViSNetNet(**small).double()
    _load_stock(net, stock, "representation_model.embedding.weight",
                "representation_model.neighbor_embedding.embedding.weight")
    z, r, b = _batch(mols)
    out, _ = net(z, r, b)
    # torch-geometric's Distance fills its distances into torch.zeros of the default dtype
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        y, _ = stock(z, r, b)
    finally:
        torch.set_default_dtype(previous)
    torch.testing.assert_close(y.squeeze(-1), _per_structure(out, b), atol=1e-12, rtol=1e-12)


def test_dimenet_bessel_forms_come_from_the_disk_cache_once_computed(tmp_path, monkeypatch):
    """sympy's spherical Bessel forms (seconds) are computed once and read back: same layer, same output."""
    import torch_geometric.nn.models.dimenet_utils as dimenet_utils

    from cpd_core.models.trained.pyg import spherical_basis

    monkeypatch.setenv("CPD_CACHE_DIR", str(tmp_path))
    build = spherical_basis.__wrapped__                     # past the in-process cache
    torch.manual_seed(0)
    d, angle, idx = torch.rand(6) * 2 + 0.5, torch.rand(6) * 3, torch.arange(6)
    first = build(3, 2, 3.0, 5)(d, angle, idx)
    assert list((tmp_path / "sympy").glob("bessel_basis-3-2-*.pkl"))

    def no_sympy(*args):
        raise AssertionError("recomputed instead of read from the cache")

    monkeypatch.setattr(dimenet_utils, "bessel_basis", no_sympy)
    second = build(3, 2, 3.0, 5)(d, angle, idx)
    torch.testing.assert_close(first, second, rtol=0, atol=0)


def test_shipped_bessel_forms_equal_those_sympy_computes():
    """The table shipped for DimeNet++'s 7 x 6 holds exactly the forms torch-geometric computes (~20 s)."""
    from torch_geometric.nn.models.dimenet_utils import bessel_basis

    from cpd_core.models.trained.pyg import shipped_bessel_basis

    assert shipped_bessel_basis(7, 6) == bessel_basis(7, 6)
    assert shipped_bessel_basis(3, 2) is None  # not shipped: computed and cached on disk


def test_dimenet_default_layer_builds_from_the_shipped_table_without_sympy(tmp_path, monkeypatch):
    import torch_geometric.nn.models.dimenet_utils as dimenet_utils

    from cpd_core.models.trained.pyg import spherical_basis

    monkeypatch.setenv("CPD_CACHE_DIR", str(tmp_path))

    def no_sympy(*args):
        raise AssertionError("computed with sympy instead of read from the shipped table")

    monkeypatch.setattr(dimenet_utils, "bessel_basis", no_sympy)
    layer = spherical_basis.__wrapped__(7, 6, 5.0, 5)
    out = layer(torch.tensor([1.0, 2.0]), torch.tensor([0.5, 1.5]), torch.tensor([0, 1]))
    assert out.shape == (2, 42) and torch.isfinite(out).all()
    assert not (tmp_path / "sympy").exists()
