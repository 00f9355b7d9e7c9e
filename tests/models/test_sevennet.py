"""SevenNet adapter: blocks, invariances, batching, agreement with SevenNetCalculator, twin, registry."""

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import molecule

from cpd_core import InputError
from cpd_core.models import REGISTRY, AtomsBatch, load
from cpd_core.models.base import weights_hash
from cpd_core.models.sevennet import load_sevennet
from cpd_core.testing import pooled_invariants, random_rotation

ROOT = Path(__file__).resolve().parents[2]
NAMES = ["CH3CH2OH", "H2O", "CH3CN"]
EXPECTED = {"embedding/L0": (128,)}
for _k in range(1, 5):
    EXPECTED.update({f"layer{_k}/L0": (128,), f"layer{_k}/L1": (64, 3), f"layer{_k}/L2": (32, 5)})
EXPECTED["layer5/L0"] = (128,)


@pytest.fixture(autouse=True)
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CPD_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def feat():
    return load("sevennet-0", device="cpu").to("cpu", torch.float64)


@pytest.fixture(scope="module")
def twin():
    return load("sevennet-0-random", device="cpu").to("cpu", torch.float64)


@pytest.fixture(scope="module")
def mols():
    ms = [molecule(name) for name in NAMES]
    return [m.numbers for m in ms], [m.positions for m in ms]


def _batch(numbers, positions, dtype=torch.float64):
    return AtomsBatch.from_arrays(numbers, positions, dtype=dtype)


def test_cards_are_registered():
    card, random_card = REGISTRY["sevennet-0"], REGISTRY["sevennet-0-random"]
    assert (card.status, card.stands_in_for, card.family, card.domain, card.offline) == (
        "stand-in", "MACE-MP-0", "NequIP", "crystals", True)
    assert "SevenNet_0__11Jul2024" in card.source and card.training_data == "MPtrj (PBE)"
    assert (random_card.status, random_card.twin_of, random_card.training_data) == (
        "random-init", "sevennet-0", "untrained")


def test_registry_import_does_not_import_sevenn():
    code = ("import cpd_core.models, sys; "
            "print([m for m in sys.modules if m.startswith(('sevenn', 'e3nn', 'torch_geometric'))])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "[]"


def test_blocks_shapes_and_irreps(feat, mols):
    batch = _batch(*mols)
    out = feat(batch)
    assert list(out) == list(EXPECTED)
    for name, shape in EXPECTED.items():
        assert tuple(out[name].shape) == (len(batch.numbers),) + shape, name
        assert out[name].dtype == torch.float64 and torch.isfinite(out[name]).all()
    assert [str(irreps) for irreps in feat.layer_irreps.values()] == ["128x0e+64x1e+32x2e"] * 4 + ["128x0e"]
    assert feat.cutoff == 5.0 and feat.n_parameters == 842_623
    # the type map: 89 elements numbered in alphabetical order of their symbols
    assert len(feat.elements) == 89 and feat.type_map[89] == 0 and feat.type_map[1] == 28


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
    for name in ("layer1/L1", "layer4/L2"):
        assert (rotated_blocks[name] - blocks[name]).abs().max() > 1e-3 * blocks[name].abs().max()


def test_layer1_vectors_rotate_orthogonally(feat, mols):
    # each 2l+1 vector of an atom is mapped by one orthogonal matrix per degree
    numbers, positions = mols
    q = random_rotation(np.random.default_rng(1))
    blocks = feat(_batch(numbers, positions))
    rotated = feat(_batch(numbers, [p @ q.T for p in positions]))
    for name in ("layer1/L1", "layer2/L2"):
        a = blocks[name].reshape(-1, blocks[name].shape[-1])
        b = rotated[name].reshape(-1, blocks[name].shape[-1])
        d = torch.linalg.lstsq(a, b).solution  # b = a @ d
        np.testing.assert_allclose((d.T @ d).numpy(), np.eye(d.shape[0]), atol=1e-6, err_msg=name)
        np.testing.assert_allclose((a @ d).numpy(), b.numpy(), atol=1e-6 * float(b.abs().max()), err_msg=name)


def test_batch_equals_one_at_a_time(feat, mols):
    numbers, positions = mols
    together = feat(_batch(numbers, positions))
    alone = [feat(_batch([z], [r])) for z, r in zip(numbers, positions)]
    for name, x in together.items():
        np.testing.assert_allclose(x.numpy(), torch.cat([a[name] for a in alone]).numpy(), rtol=0, atol=1e-10,
                                   err_msg=name)


def test_energy_matches_sevennet_calculator(feat, mols):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e3nn's TorchScript compilation
        from sevenn.calculator import SevenNetCalculator

        calc = SevenNetCalculator("7net-0", device="cpu")
    expected = []
    for name in NAMES:
        atoms = molecule(name)
        atoms.calc = calc
        expected.append(atoms.get_potential_energy())
    assert expected[1] == pytest.approx(-14.0935, abs=1e-3)  # water, known answer
    energy = feat.energy(_batch(*mols)).numpy()
    np.testing.assert_allclose(energy, expected, rtol=1e-5)


def test_unknown_element_raises(feat):
    assert 84 not in feat.elements  # Po has no SevenNet-0 type
    with pytest.raises(InputError, match="84"):
        feat(_batch([np.array([84, 1])], [np.array([[0.0, 0, 0], [0, 0, 1.5]])]))


def test_random_twin_same_blocks_other_weights_reproducible(feat, twin, mols):
    assert twin.card.status == "random-init" and twin.card.twin_of == "sevennet-0"
    batch = _batch(*mols)
    ours, theirs = feat(batch), twin(batch)
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
    for name in ours:
        assert torch.isfinite(theirs[name]).all(), name
        assert (ours[name] - theirs[name]).abs().max() > 1e-3, name
    assert twin.spec()["weights"] != feat.spec()["weights"]
    assert twin.n_parameters == feat.n_parameters
    # the convolution denominators (a hyper-parameter) are the trained model's
    trained = {k: v for k, v in feat.module.state_dict().items() if k.endswith("denominator")}
    for k, v in trained.items():
        torch.testing.assert_close(twin.module.state_dict()[k], v)
    again, _ = load_sevennet(random_init=True)
    assert weights_hash(again.to(torch.float64)) == weights_hash(twin.module)


def test_twin_built_from_the_kept_checkpoint_parts_equals_a_fresh_build(monkeypatch):
    """Twins after the first reuse the checkpoint's config and fixed parameters (_TWIN_PARTS): the
    same weights as a twin built with nothing kept, and the kept config is not mutated."""
    from cpd_core.models import sevennet

    monkeypatch.setattr(sevennet, "_TWIN_PARTS", {})
    fresh, config = load_sevennet(random_init=True, seed=3)
    assert len(sevennet._TWIN_PARTS) == 1
    import sevenn.util

    def rebuilt(*args, **kwargs):
        raise AssertionError("the trained network was built again")

    monkeypatch.setattr(sevenn.util, "model_from_checkpoint", rebuilt)
    again, config_again = load_sevennet(random_init=True, seed=3)
    assert weights_hash(again) == weights_hash(fresh)
    assert sorted(config_again) == sorted(config) and config_again["cutoff"] == config["cutoff"]
    other, _ = load_sevennet(random_init=True, seed=4)
    assert weights_hash(other) != weights_hash(fresh)
