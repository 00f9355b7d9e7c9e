"""CHGNet 0.3.0 featurizer: blocks, dtypes, invariances, batching, known answers, the random twin."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from ase.build import molecule

pytest.importorskip("chgnet", reason="chgnet is not installed")

from cpd_core.models import REGISTRY  # noqa: E402
from cpd_core.models.base import AtomsBatch, weights_hash  # noqa: E402
from cpd_core.models.chgnet import CHGNET_ELEMENTS, CHGNetFeaturizer  # noqa: E402
from cpd_core.testing import random_rotation

NAMES = ["CH3CH2OH", "H2O", "CH3CN"]
BLOCKS = ["embedding/L0", "layer1/L0", "layer2/L0", "layer3/L0", "layer4/L0"]


@pytest.fixture(scope="module")
def f64():
    return CHGNetFeaturizer().to("cpu", torch.float64)


@pytest.fixture(scope="module")
def f32():
    return CHGNetFeaturizer().to("cpu", torch.float32)


@pytest.fixture(scope="module")
def mols():
    ms = [molecule(name) for name in NAMES]
    return [m.numbers for m in ms], [m.positions for m in ms]


def _batch(numbers, positions, dtype=torch.float64, cells=None):
    return AtomsBatch.from_arrays(numbers, positions, cells=cells, dtype=dtype)


def _means(blocks, batch):
    """Per-structure mean over atoms of every block: {name: (S, d)}."""
    sizes = batch.sizes.to(torch.float64)[:, None]
    return {k: torch.zeros(batch.n_structures, v.shape[1], dtype=torch.float64)
            .index_add_(0, batch.batch, v.double()) / sizes for k, v in blocks.items()}


def _rocksalt(a=5.64):
    """Conventional NaCl cell (8 atoms) as numbers, Cartesian positions, cell."""
    fcc = np.array([[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0]])
    frac = np.vstack([fcc, fcc + [.5, 0, 0]]) % 1.0
    return np.array([11] * 4 + [17] * 4), frac * a, np.eye(3) * a


def test_cards_in_registry():
    card, twin = REGISTRY["chgnet-0.3.0"], REGISTRY["chgnet-0.3.0-random"]
    assert (card.family, card.status, card.domain, card.offline) == ("CHGNet", "original", "crystals", True)
    assert card.training_data == "MPtrj (PBE, with magnetic moments)"
    assert (twin.status, twin.twin_of, twin.training_data) == ("random-init", "chgnet-0.3.0", "untrained")


def test_importing_the_registry_does_not_import_chgnet_or_pymatgen():
    code = ("import cpd_core.models, sys; "
            "print([m for m in sys.modules if m.startswith(('chgnet', 'pymatgen'))])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_model_is_v030_with_four_conv_layers(f64):
    assert f64.module.version == "0.3.0"
    assert f64.n_layers == len(f64.module.atom_conv_layers) == 4
    assert f64.n_parameters == 412_525
    assert f64.elements == CHGNET_ELEMENTS == tuple(range(1, 95))
    assert f64.options() == {"model_name": "0.3.0", "atom_graph_cutoff": 6.0, "bond_graph_cutoff": 3.0}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_block_names_shapes_dtypes(f32, f64, mols, dtype):
    f = f32 if dtype == torch.float32 else f64
    batch = _batch(*mols, dtype=dtype)
    out = f(batch)
    assert list(out) == BLOCKS
    for name, block in out.items():
        assert block.shape == (len(batch.numbers), 64), name
        assert block.dtype == dtype, name
        assert torch.isfinite(block).all(), name


def test_float32_close_to_float64(f32, f64, mols):
    a, b = f32(_batch(*mols, dtype=torch.float32)), f64(_batch(*mols))
    for name in BLOCKS:
        scale = b[name].abs().max().item()
        np.testing.assert_allclose(a[name].double(), b[name], atol=1e-4 * scale, err_msg=name)


def test_invariant_to_rotation_translation_permutation(f64, mols):
    numbers, positions = mols
    rng = np.random.default_rng(0)
    ref_blocks = f64(_batch(numbers, positions))
    ref = _means(ref_blocks, _batch(numbers, positions))
    perms = [rng.permutation(len(z)) for z in numbers]
    cases = {
        "rotation": (numbers, [p @ random_rotation(rng).T for p in positions]),
        "translation": (numbers, [p + rng.normal(scale=10.0, size=3) for p in positions]),
        "permutation": ([z[p] for z, p in zip(numbers, perms)], [r[p] for r, p in zip(positions, perms)]),
    }
    for label, (z, r) in cases.items():
        batch = _batch(z, r)
        blocks = f64(batch)
        for name, mean in _means(blocks, batch).items():
            scale = ref[name].abs().max().item()
            np.testing.assert_allclose(mean, ref[name], rtol=0, atol=1e-8 * scale, err_msg=f"{label} {name}")
    # per-atom rows follow the atoms: permuted input gives permuted rows
    batch = _batch(*cases["permutation"])
    order = torch.cat([torch.as_tensor(p) + int(s) for p, s in zip(perms, batch.ptr[:-1])])
    for name, block in f64(batch).items():
        np.testing.assert_allclose(block, ref_blocks[name][order], rtol=0, atol=1e-8, err_msg=name)


def test_features_see_the_geometry(f64, mols):
    # guards the invariance test: a deformation changes every layer (not the embedding)
    numbers, positions = mols
    ref = f64(_batch(numbers, positions))
    stretched = f64(_batch(numbers, [p * 1.05 for p in positions]))
    assert torch.equal(stretched["embedding/L0"], ref["embedding/L0"])
    for name in BLOCKS[1:]:
        assert (stretched[name] - ref[name]).abs().max() > 1e-3, name


def test_batch_equals_one_at_a_time(f64, mols):
    numbers, positions = mols
    together = f64(_batch(numbers, positions))
    alone = [f64(_batch([z], [r])) for z, r in zip(numbers, positions)]
    for name in BLOCKS:
        np.testing.assert_allclose(together[name], torch.cat([a[name] for a in alone]),
                                   rtol=0, atol=1e-10, err_msg=name)


def test_box_emulates_a_free_molecule(f64, mols):
    # a molecule sees no periodic image: a box 20 Å larger gives the same features
    batch = _batch(*mols)
    ref = f64(batch)
    big = CHGNetFeaturizer(box_margin=21.0).to("cpu", torch.float64)
    assert big.box_edge(mols[1][0]) == pytest.approx(f64.box_edge(mols[1][0]) + 20.0)
    for name, block in big(batch).items():
        np.testing.assert_allclose(block, ref[name], rtol=0, atol=1e-10, err_msg=name)
    for structure, z in zip(f64.structures(batch), mols[0]):
        assert structure.lattice.abc[0] >= np.ptp(structure.cart_coords, axis=0).max() + 12.0
        assert [site.specie.Z for site in structure] == list(z)


# --- known answers from CHGNet's own outputs --------------------------------------------------


def test_layer3_is_chgnet_atom_fea_and_layer4_gives_crystal_fea(f32, mols):
    # CHGNet's return_atom_feas gives the features *before* the last conv layer (those its
    # magmom head reads), i.e. layer3; its crystal_fea is the sum over atoms of LayerNorm(layer4)
    batch = _batch(*mols, dtype=torch.float32)
    blocks, pred = f32.run(batch)
    torch.testing.assert_close(torch.cat(pred["atom_fea"]), blocks["layer3/L0"], rtol=0, atol=0)
    assert not torch.allclose(torch.cat(pred["atom_fea"]), blocks["layer4/L0"])
    with torch.no_grad():
        normed = f32.module.readout_norm(blocks["layer4/L0"])
    summed = torch.zeros(batch.n_structures, 64).index_add_(0, batch.batch, normed)
    torch.testing.assert_close(summed, pred["crystal_fea"], rtol=1e-5, atol=1e-5)


def test_embedding_is_the_element_table(f64, mols):
    batch = _batch(*mols)
    table = f64.module.atom_embedding.embedding.weight
    torch.testing.assert_close(f64(batch)["embedding/L0"], table[batch.numbers - 1], rtol=0, atol=0)


def test_energy_unchanged_vs_predict_structure(f32, mols):
    batch = _batch(*mols, dtype=torch.float32)
    _, pred = f32.run(batch)
    expected = [float(p["e"]) for p in f32.module.predict_structure(f32.structures(batch), task="e")]
    np.testing.assert_allclose(pred["e"].numpy(), expected, rtol=1e-6, atol=1e-6)


def test_crystal_uses_its_lattice(f32):
    from pymatgen.core import Lattice, Structure

    z, r, cell = _rocksalt()
    rng = np.random.default_rng(1)
    r = r + rng.normal(scale=0.05, size=r.shape)  # break the symmetry so atom order matters
    perm = rng.permutation(len(z))
    batch = _batch([z, z[perm]], [r, r[perm]], dtype=torch.float32, cells=[cell, cell])
    blocks, pred = f32.run(batch)
    structure = Structure(Lattice(cell), z.tolist(), r, coords_are_cartesian=True)
    expected = float(f32.module.predict_structure(structure, task="e")["e"])
    np.testing.assert_allclose(pred["e"].numpy(), [expected, expected], rtol=1e-5)
    for name, block in blocks.items():
        torch.testing.assert_close(block[8:], block[:8][torch.as_tensor(perm)], rtol=1e-5, atol=1e-5)
    # in a 5.64 Å cell each ion has many periodic neighbours: the same ions in a box differ
    free = f32(_batch([z], [r], dtype=torch.float32))
    assert (free["layer1/L0"] - blocks["layer1/L0"][:8]).abs().max() > 1e-2


# --- random twin ------------------------------------------------------------------------------


def test_random_twin_reproducible_and_different(f64, mols):
    twin = REGISTRY["chgnet-0.3.0-random"].build().to("cpu", torch.float64)
    again = CHGNetFeaturizer(random_init=True).to("cpu", torch.float64)
    assert twin.card.status == "random-init" and twin.name == "chgnet-0.3.0-random"
    assert twin.n_parameters == f64.n_parameters
    assert twin.module.model_args == f64.module.model_args
    assert weights_hash(twin.module) == weights_hash(again.module) != weights_hash(f64.module)
    assert twin.spec()["weights"] != f64.spec()["weights"]
    batch = _batch(*mols)
    a, b, trained = twin(batch), again(batch), f64(batch)
    assert list(a) == list(trained)
    for name in BLOCKS:
        assert a[name].shape == trained[name].shape
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)
        assert (a[name] - trained[name]).abs().max() > 1e-2, name
