"""SO3LR adapter: blocks, invariances, batching, agreement with the package's own outputs, twin, registry."""

import contextlib
import io
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import molecule

from cpd_core.models import REGISTRY, AtomsBatch, load
from cpd_core.models.base import weights_hash
from cpd_core.models.so3lr import SO3LRFeaturizer, load_so3lr
from cpd_core.testing import pooled_invariants, random_rotation

ROOT = Path(__file__).resolve().parents[2]
NAMES = ["CH3CH2OH", "H2O", "CH3CN"]
EXPECTED = {"embedding/L0": (128,)}
for _k in range(1, 4):
    EXPECTED[f"layer{_k}/L0"] = (128,)
    EXPECTED.update({f"layer{_k}/L{_l}": (1, 2 * _l + 1) for _l in range(1, 5)})


@pytest.fixture(autouse=True)
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CPD_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def feat():
    return load("so3lr", device="cpu").to("cpu", torch.float64)


@pytest.fixture(scope="module")
def twin():
    return load("so3lr-random", device="cpu").to("cpu", torch.float64)


@pytest.fixture(scope="module")
def mols():
    ms = [molecule(name) for name in NAMES]
    return [m.numbers for m in ms], [m.positions for m in ms]


def _batch(numbers, positions, dtype=torch.float64):
    return AtomsBatch.from_arrays(numbers, positions, dtype=dtype)


def test_cards_are_registered():
    card, random_card = REGISTRY["so3lr"], REGISTRY["so3lr-random"]
    assert (card.status, card.stands_in_for, card.family, card.domain, card.offline) == (
        "stand-in", "MACE-OFF", "SO3krates", "molecules", True)
    assert card.source == "so3krates-torch 0.2.1 wheel"
    assert (random_card.status, random_card.twin_of, random_card.training_data) == (
        "random-init", "so3lr", "untrained")


def test_registry_import_does_not_import_so3krates():
    code = ("import cpd_core.models, sys; "
            "print([m for m in sys.modules if m.startswith(('so3krates', 'e3nn', 'torch_geometric'))])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "[]"


def test_blocks_and_shapes(feat, mols):
    batch = _batch(*mols)
    out = feat(batch)
    assert list(out) == list(EXPECTED)
    for name, shape in EXPECTED.items():
        assert tuple(out[name].shape) == (len(batch.numbers),) + shape, name
        assert out[name].dtype == torch.float64 and torch.isfinite(out[name]).all()
    assert list(feat.module.degrees) == [1, 2, 3, 4] and len(feat.module.euclidean_transformers) == 3
    assert feat.n_parameters == 529_852
    assert torch.get_default_dtype() == torch.float32  # loading did not leave a global change behind


def test_float32_and_float64_agree(feat, mols):
    ref = feat(_batch(*mols))
    feat.to("cpu", torch.float32)  # the weights came from float32, so the round trip is exact
    try:
        out = feat(_batch(*mols, dtype=torch.float32))
    finally:
        feat.to("cpu", torch.float64)
    for name, x in out.items():
        assert x.dtype == torch.float32
        scale = float(ref[name].abs().max())
        np.testing.assert_allclose(x.double().numpy(), ref[name].numpy(), rtol=0, atol=1e-4 * scale, err_msg=name)


def test_pooled_invariants_unchanged_by_rotation_translation_permutation(feat, mols):
    numbers, positions = mols
    rng = np.random.default_rng(0)
    batch = _batch(numbers, positions)
    blocks = feat(batch)
    ref = pooled_invariants(blocks, batch)

    rotations = [random_rotation(rng) for _ in positions]
    rotated = [p @ q.T for p, q in zip(positions, rotations)]
    translated = [p + rng.normal(scale=10.0, size=3) for p in positions]
    perms = [rng.permutation(len(z)) for z in numbers]
    cases = {"rotation": (numbers, rotated), "translation": (numbers, translated),
             "permutation": ([z[p] for z, p in zip(numbers, perms)], [r[p] for r, p in zip(positions, perms)])}
    for label, (z, r) in cases.items():
        b = _batch(z, r)
        out = pooled_invariants(feat(b), b)
        for name, value in out.items():
            scale = max(float(np.abs(ref[name]).max()), 1e-3)
            np.testing.assert_allclose(value, ref[name], rtol=0, atol=1e-7 * scale, err_msg=f"{label} {name}")

    # the equivariant blocks themselves do rotate (so the test above can fail)
    rotated_blocks = feat(_batch(numbers, rotated))
    for name in ("layer1/L1", "layer2/L3", "layer3/L4"):
        assert (rotated_blocks[name] - blocks[name]).abs().max() > 1e-3 * blocks[name].abs().max()


def test_degree_blocks_rotate_orthogonally(feat, mols):
    # each degree's (2l+1)-vectors of all atoms are mapped by one orthogonal matrix: the 24 columns
    # are split at the right places, in the right order
    numbers, positions = mols
    q = random_rotation(np.random.default_rng(1))
    blocks = feat(_batch(numbers, positions))
    rotated = feat(_batch(numbers, [p @ q.T for p in positions]))
    for l in range(1, 5):
        a, b = blocks[f"layer3/L{l}"][:, 0], rotated[f"layer3/L{l}"][:, 0]
        d = torch.linalg.lstsq(a, b).solution  # b = a @ d
        np.testing.assert_allclose((d.T @ d).numpy(), np.eye(2 * l + 1), atol=1e-6, err_msg=f"L{l}")
        np.testing.assert_allclose((a @ d).numpy(), b.numpy(), atol=1e-6 * float(b.abs().max()), err_msg=f"L{l}")


def test_batch_equals_one_at_a_time(feat, mols):
    numbers, positions = mols
    together = feat(_batch(numbers, positions))
    alone = [feat(_batch([z], [r])) for z, r in zip(numbers, positions)]
    for name, x in together.items():
        np.testing.assert_allclose(x.numpy(), torch.cat([a[name] for a in alone]).numpy(), rtol=0, atol=1e-10,
                                   err_msg=name)


def test_last_layer_equals_the_models_own_descriptors(feat, mols):
    batch = _batch(*mols)
    blocks, out = feat.forward(batch)  # full forward, long-range terms included
    torch.testing.assert_close(blocks["layer3/L0"], out["inv_features"], rtol=0, atol=0)
    ev = torch.cat([blocks[f"layer3/L{l}"][:, 0] for l in feat.module.degrees], dim=1)
    torch.testing.assert_close(ev, out["ev_features"], rtol=0, atol=0)
    # and the features path (no long-range neighbour list, no autograd) gives the same blocks
    for name, x in feat(batch).items():
        torch.testing.assert_close(x, blocks[name], rtol=0, atol=1e-12, msg=name)


def test_energy_matches_so3lr_calculator(mols):
    from so3krates_torch.calculator.so3 import SO3LRCalculator

    previous = torch.get_default_dtype()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            calc = SO3LRCalculator(device="cpu")
            expected = []
            for name in NAMES:
                atoms = molecule(name)
                atoms.calc = calc
                expected.append(atoms.get_potential_energy())
    finally:
        torch.set_default_dtype(previous)
    assert expected[1] == pytest.approx(-495.8705, abs=1e-3)  # water, known answer
    feat32 = SO3LRFeaturizer()
    energy = feat32.energy(_batch(*mols, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(energy, expected, rtol=1e-6)


def test_total_charge_changes_the_features(feat, mols):
    charged = SO3LRFeaturizer(total_charge=1.0).to("cpu", torch.float64)
    assert charged.spec() != feat.spec()
    batch = _batch(*mols)
    assert (charged(batch)["layer1/L0"] - feat(batch)["layer1/L0"]).abs().max() > 1e-3


def test_random_twin_same_blocks_other_weights_reproducible(feat, twin, mols):
    assert twin.card.status == "random-init" and twin.card.twin_of == "so3lr"
    batch = _batch(*mols)
    ours, theirs = feat(batch), twin(batch)
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
    for name in ours:
        assert torch.isfinite(theirs[name]).all(), name
        assert (ours[name] - theirs[name]).abs().max() > 1e-3, name
    assert twin.spec()["weights"] != feat.spec()["weights"]
    assert twin.n_parameters == feat.n_parameters
    assert twin.module.avg_num_neighbors == feat.module.avg_num_neighbors
    assert weights_hash(load_so3lr(random_init=True).to(torch.float64)) == weights_hash(twin.module)
    assert torch.get_default_dtype() == torch.float32
