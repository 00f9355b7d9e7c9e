"""Every registered model, through the engine: pooled features are invariant to rotation,
translation and atom order, and see geometry. Models whose weights are absent here are skipped."""

import numpy as np
import pytest
import torch
from ase.build import molecule

from cpd_core.datasets import Dataset
from cpd_core.extract import features
from cpd_core.models import REGISTRY, STATUSES, WeightsNotFoundError, load, model_table
from cpd_core.testing import random_rotation

NAMES = ["CH3CH2OH", "H2O", "CH3CN"]


@pytest.fixture(scope="module")
def mols():
    ms = [molecule(n) for n in NAMES]
    return [m.numbers for m in ms], [m.positions for m in ms]


def test_every_card_is_complete():
    table = model_table()
    assert set(table["status"]) <= set(STATUSES)
    for card in REGISTRY.values():
        assert card.family and card.training_data and card.source and card.domain in ("molecules", "crystals")
        if card.status == "random-init":
            assert card.twin_of in REGISTRY, card.name
        if card.status == "stand-in":
            assert card.stands_in_for, card.name
    # every trained architecture has a random-init twin
    twinned = {c.twin_of for c in REGISTRY.values() if c.twin_of}
    families_with_twin = {REGISTRY[t].family for t in twinned}
    assert families_with_twin == {c.family for c in REGISTRY.values()}


@pytest.mark.parametrize("name", list(REGISTRY))
def test_features_are_invariant_and_see_geometry(name, mols):
    try:
        featurizer = load(name, device="cpu")
    except WeightsNotFoundError as err:
        pytest.skip(f"weights not available here: {str(err)[:120]}")
    numbers, positions = mols
    rng = np.random.default_rng(0)

    def pooled(z, r):
        return features(featurizer, Dataset.from_arrays(z, r), device="cpu", dtype=torch.float64, progress=False)

    ref = pooled(numbers, positions)
    assert ref and all(np.isfinite(v).all() for v in ref.values())
    perms = [rng.permutation(len(z)) for z in numbers]
    moved = [p[q] @ random_rotation(rng).T + rng.normal(scale=3.0, size=3) for p, q in zip(positions, perms)]
    out = pooled([z[q] for z, q in zip(numbers, perms)], moved)
    stretched = pooled(numbers, [p * 1.1 for p in positions])
    changed = 0
    for block, x in ref.items():
        scale = max(np.abs(x).max(), 1e-12)
        np.testing.assert_allclose(out[block], x, rtol=0, atol=1e-6 * scale, err_msg=f"{name} {block}")
        changed += not np.allclose(stretched[block], x, rtol=0, atol=1e-6 * scale)
    assert changed > 0, f"{name}: no block responds to a deformation"


RANDOM = [name for name, card in REGISTRY.items() if card.status == "random-init"]


@pytest.mark.parametrize("name", RANDOM)
def test_random_init_twins_take_a_seed(name, mols):
    try:
        default = load(name, device="cpu")
    except WeightsNotFoundError as err:
        pytest.skip(f"weights not available here: {str(err)[:120]}")
    zero, one = load(name, device="cpu", seed=0), load(name, device="cpu", seed=1)
    assert default.spec() == zero.spec() and "seed" not in default.spec()
    assert one.spec()["seed"] == 1 and one.spec()["weights"] != default.spec()["weights"]
    assert default.card is REGISTRY[name] and one.card.source.endswith(("seed 1", "seed(1)"))
    assert one.card.name == name and one.card.status == "random-init"

    def pooled(f):
        return features(f, Dataset.from_arrays(*mols), device="cpu", dtype=torch.float64, progress=False)

    ref, same, other = pooled(default), pooled(zero), pooled(one)
    for block, x in ref.items():
        np.testing.assert_array_equal(same[block], x, err_msg=f"{name} {block}")
    assert any(not np.allclose(other[b], x) for b, x in ref.items()), name


def test_trained_cards_refuse_a_seed():
    from cpd_core.errors import InputError

    for name in ("chgnet-0.3.0", "schnet-qm9-gap"):
        with pytest.raises(InputError, match="seed"):
            load(name, device="cpu", seed=1)


def test_every_card_says_how_it_overlaps_qm9():
    table = model_table().set_index("model")
    assert "QM9 overlap" in table.columns
    for name, card in REGISTRY.items():
        assert isinstance(card.qm9_overlap, str) and table.loc[name, "QM9 overlap"] == card.qm9_overlap
        if card.status == "trained-here":
            assert card.qm9_overlap.startswith("trained on QM9 itself"), name
            assert "test split" in card.qm9_overlap, name
        if card.status == "random-init" or card.domain == "crystals" or "handcrafted" in card.training_data:
            assert card.qm9_overlap == "", name
    for name in ("ani2x", "so3lr", "mace-off-medium", "m3gnet-ani1x", "tensornet-ani1x", "so3net-ani1x"):
        assert "overlaps QM9's chemical space" in REGISTRY[name].qm9_overlap, name
