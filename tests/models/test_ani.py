"""ANI-2x AEV featurizer: shape, invariances, element order, hyper-parameters, errors."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import molecule

from cpd_core import InputError
from cpd_core.cache import content_key
from cpd_core.composition import symbol
from cpd_core.datasets import Dataset
from cpd_core.extract import features
from cpd_core.models import REGISTRY, load
from cpd_core.models import ani as ani_module
from cpd_core.models.ani import ANI2X_ELEMENTS, ANI2x, ANI2xAEV
from cpd_core.models.base import AtomsBatch, WeightsNotFoundError
from cpd_core.testing import random_rotation

ROOT = Path(__file__).resolve().parents[2]
ZOO = ROOT.parent / "shared" / "models" / "ani-model-zoo" / "resources" / "ani-2x_8x"
PARAMS = ZOO / "rHCNOSFCl-5.1R_16-3.5A_a8-4.params"
needs_zoo = pytest.mark.skipif(not PARAMS.exists(),
                               reason=f"the shared ANI-2x model zoo is absent ({PARAMS})")

# H C N O F S Cl, 2 to 12 atoms, one of each element at least
NAMES = ["CH3CH2OH", "HCl", "CH3SH", "H2CF2", "CH3Cl", "SO2", "H2O", "CH3COOH", "C6H6", "NH3", "CH3CN"]


@pytest.fixture(autouse=True)
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CPD_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def aev():
    return ANI2xAEV()


@pytest.fixture(scope="module")
def mols():
    ms = [molecule(name) for name in NAMES]
    return [m.numbers for m in ms], [m.positions for m in ms]


def _pooled(featurizer, numbers, positions, dtype=torch.float64, **kw):
    ids = kw.pop("ids", None)
    return features(featurizer, Dataset.from_arrays(numbers, positions, ids=ids), device="cpu", dtype=dtype,
                    progress=False, **kw)


def test_registry_and_load():
    assert "ani2x-aev" in REGISTRY
    f = load("ani2x-aev")
    assert isinstance(f, ANI2xAEV) and f.name == "ani2x-aev" and f.elements == ANI2X_ELEMENTS


def test_load_unknown_model_raises_listing_known():
    with pytest.raises(InputError, match=r"unknown model 'nope'.*ani2x-aev"):
        load("nope")


def _batch(numbers, positions, dtype=torch.float64):
    return AtomsBatch.from_arrays(numbers, [np.asarray(p, dtype=float) for p in positions], dtype=dtype)


def test_aev_has_1008_columns_112_radial_896_angular(aev, mols):
    out = _pooled(aev, *mols)
    assert set(out) == {"aev", "aev/radial", "aev/angular"}
    n = len(NAMES)
    assert out["aev/radial"].shape == (n, 112) == (n, 16 * 7)
    assert out["aev/angular"].shape == (n, 896) == (n, 32 * 28)
    assert out["aev"].shape == (n, 1008)
    np.testing.assert_array_equal(out["aev"], np.hstack([out["aev/radial"], out["aev/angular"]]))


def test_per_atom_blocks_shapes(aev):
    out = aev(_batch([[6, 1, 1, 1, 1], [8, 1, 1]], [np.random.default_rng(0).normal(size=(5, 3)),
                                                     np.random.default_rng(1).normal(size=(3, 3))]))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "aev": (8, 1008), "aev/radial": (8, 112), "aev/angular": (8, 896)}


def test_h2_radial_known_answer(aev):
    # One neighbour at distance d: G_k = 1/4 exp(-eta (d - R_k)^2) f_c(d), f_c = (cos(pi d / rc) + 1) / 2
    d = 0.74
    out = aev(_batch([[1, 1]], [[[0.0, 0.0, 0.0], [0.0, 0.0, d]]]))
    shifts = 0.8 + np.arange(16) * (5.1 - 0.8) / 16
    expected = 0.25 * np.exp(-19.7 * (d - shifts) ** 2) * 0.5 * (np.cos(np.pi * d / 5.1) + 1)
    for atom in (0, 1):
        radial = out["aev/radial"][atom].numpy()
        np.testing.assert_allclose(radial[:16], expected, rtol=1e-6, atol=1e-12)  # H neighbours
        assert np.all(radial[16:] == 0)  # no neighbours of other species
        assert torch.all(out["aev/angular"][atom] == 0)  # no triples


def test_element_order_sets_the_radial_blocks(aev):
    # Species index in ANI2X_ELEMENTS picks the 16-column block of a neighbour:
    # in HCl the H atom sees Cl (block 6), the Cl atom sees H (block 0).
    radial = aev(_batch([[1, 17]], [[[0.0, 0.0, 0.0], [0.0, 0.0, 1.27]]]))["aev/radial"].numpy()
    nonzero = [sorted({c // 16 for c in np.flatnonzero(radial[atom])}) for atom in (0, 1)]
    assert nonzero == [[ANI2X_ELEMENTS.index(17)], [ANI2X_ELEMENTS.index(1)]] == [[6], [0]]


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_pooled_aev_invariant_to_rotation_translation_permutation(aev, mols, dtype, tol):
    numbers, positions = mols
    rng = np.random.default_rng(0)
    ref = _pooled(aev, numbers, positions, dtype=dtype)["aev"]
    scale = np.abs(ref).max()

    rotated = [p @ random_rotation(rng).T for p in positions]
    translated = [p + rng.normal(scale=10.0, size=3) for p in positions]
    perms = [rng.permutation(len(z)) for z in numbers]
    permuted_z = [z[p] for z, p in zip(numbers, perms)]
    permuted_r = [r[p] for r, p in zip(positions, perms)]
    for label, (z, r) in {"rotation": (numbers, rotated), "translation": (numbers, translated),
                          "permutation": (permuted_z, permuted_r)}.items():
        out = _pooled(aev, z, r, dtype=dtype)["aev"]
        np.testing.assert_allclose(out, ref, rtol=0, atol=tol * scale, err_msg=label)


def test_aev_is_not_invariant_to_a_deformation(aev, mols):
    # guards the invariance test: the features do see geometry
    numbers, positions = mols
    ref = _pooled(aev, numbers, positions)["aev"]
    stretched = _pooled(aev, numbers, [p * 1.05 for p in positions])["aev"]
    assert np.abs(stretched - ref).max() > 1e-3


def test_batch_size_does_not_change_real_aevs(aev, mols):
    # molecules padded next to bigger ones (batch 7) equal molecules alone (batch 1)
    one = _pooled(aev, *mols, batch_size=1)
    seven = _pooled(aev, *mols, batch_size=7)
    for block in one:
        np.testing.assert_allclose(seven[block], one[block], rtol=0, atol=1e-12)


def test_molecule_with_bromine_raises(aev):
    m = molecule("CH3CH2OH")
    numbers = [m.numbers, np.array([35, 6, 1, 1, 1])]  # CH3Br
    positions = [m.positions, np.random.default_rng(0).normal(size=(5, 3))]
    with pytest.raises(InputError, match=r"1 \(Br\)"):
        _pooled(aev, numbers, positions)


# --- element order and hyper-parameters vs. the ANI-2x model zoo ---------------------------


def _zoo_params():
    text = PARAMS.read_text()
    out = {}
    for key, value in re.findall(r"^(\w+)\s*=\s*(.+)$", text, flags=re.M):
        value = value.strip()
        if value.startswith("["):
            items = value.strip("[]").split(",")
            try:
                out[key] = [float(x) for x in items]
            except ValueError:
                out[key] = [x.strip() for x in items]
        else:
            out[key] = value
    return out


@needs_zoo
def test_element_order_matches_zoo_file_name():
    match = re.match(r"r((?:[A-Z][a-z]?)+)-", PARAMS.name)
    zoo_order = re.findall(r"[A-Z][a-z]?", match.group(1))
    assert zoo_order == ["H", "C", "N", "O", "S", "F", "Cl"]
    assert [symbol(z) for z in ANI2X_ELEMENTS] == zoo_order


@needs_zoo
def test_element_order_matches_zoo_atom_types():
    assert [symbol(z) for z in ANI2X_ELEMENTS] == _zoo_params()["Atyp"]


@needs_zoo
def test_aev_hyperparameters_match_the_zoo(aev):
    zoo = _zoo_params()
    buffers = aev.spec()["buffers"]
    for zoo_key, spec_key in [("EtaR", "radial.eta"), ("ShfR", "radial.shifts"), ("EtaA", "angular.eta"),
                              ("Zeta", "angular.zeta"), ("ShfA", "angular.shifts"),
                              ("ShfZ", "angular.sections")]:
        np.testing.assert_allclose(buffers[spec_key], zoo[zoo_key], rtol=1e-6, err_msg=zoo_key)
    assert aev.computer.radial.cutoff == pytest.approx(float(zoo["Rcr"]))
    assert aev.computer.angular.cutoff == pytest.approx(float(zoo["Rca"]))


# --- spec ----------------------------------------------------------------------------------


def test_spec_holds_torchani_version_and_radial_hyperparameters(aev):
    import torchani

    spec = aev.spec()
    assert spec["torchani"] == torchani.__version__
    assert spec["elements"] == ANI2X_ELEMENTS
    np.testing.assert_allclose(spec["buffers"]["radial.eta"], [19.7], rtol=1e-6)
    np.testing.assert_allclose(spec["buffers"]["radial.shifts"], 0.8 + np.arange(16) * 0.26875, rtol=1e-6)
    # usable as a cache key, and the same for two instances
    assert content_key(spec=spec) == content_key(spec=ANI2xAEV().spec())


def _numbers_in(obj):
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in _numbers_in(v)]
    if isinstance(obj, (list, tuple)):
        return [x for v in obj for x in _numbers_in(v)]
    return [float(obj)] if isinstance(obj, (int, float)) else []


def test_spec_holds_the_cutoffs(aev):
    values = np.array(_numbers_in(aev.spec()))
    assert np.isclose(values, 5.1, atol=1e-6).any()  # radial cutoff
    assert np.isclose(values, 3.5, atol=1e-6).any()  # angular cutoff


# --- ANI-2x networks (weights from the shared model zoo) ---------------------------------


@pytest.fixture(scope="module")
def ani2x():
    if not PARAMS.exists():
        pytest.skip(f"the shared ANI-2x model zoo is absent ({PARAMS})")
    return ANI2x().to("cpu", torch.float64)


@needs_zoo
def test_ani2x_blocks_and_widths(ani2x, mols):
    out = ani2x(_batch(*mols))
    n_atoms = sum(len(z) for z in mols[0])
    widths = {"aev": 1008, "hidden1": 1344, "hidden2": 1088, "hidden3": 864, "atomic_energy": 1}
    assert {k: tuple(v.shape) for k, v in out.items()} == {k: (n_atoms, w) for k, w in widths.items()}
    assert ani2x.card.status == "original" and ani2x.n_parameters > 10_000_000


@needs_zoo
def test_ani2x_aev_equals_the_handcrafted_aev(ani2x, aev, mols):
    b = _batch(*mols)
    np.testing.assert_allclose(ani2x(b)["aev"], aev(b)["aev"], rtol=1e-12, atol=1e-12)


@needs_zoo
def test_ani2x_atomic_energies_sum_to_the_model_energy(ani2x, mols):
    # known answer: the hidden activations we read feed exactly torchani's own energy
    b = _batch(*mols)
    atomic = ani2x(b)["atomic_energy"][:, 0]
    ours = torch.zeros(b.n_structures, dtype=torch.float64).index_add_(0, b.batch, atomic)
    z, r, mask = b.padded()
    theirs = ani2x.module((torch.where(mask, z, torch.full_like(z, -1)), r)).energies
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-8)
    assert theirs[NAMES.index("H2O")] == pytest.approx(-76.38, abs=0.05)  # Hartree


@needs_zoo
def test_ani2x_hidden_activations_sit_in_their_element_segment(ani2x):
    out = ani2x(_batch([[1, 1]], [[[0, 0, 0], [0, 0, 0.74]]]))
    h1 = out["hidden1"]
    assert torch.all(h1[:, 256:] == 0) and torch.any(h1[:, :256] != 0)  # H owns the first 256 columns


@needs_zoo
def test_ani2x_pooled_features_are_invariant(ani2x, mols):
    numbers, positions = mols
    rng = np.random.default_rng(1)
    ref = _pooled(ani2x, numbers, positions)
    perms = [rng.permutation(len(z)) for z in numbers]
    moved = [(p[q] @ random_rotation(rng).T) + rng.normal(size=3) for p, q in zip(positions, perms)]
    out = _pooled(ani2x, [z[q] for z, q in zip(numbers, perms)], moved)
    for block in ref:
        np.testing.assert_allclose(out[block], ref[block], rtol=1e-9, atol=1e-9, err_msg=block)


@needs_zoo
def test_ani2x_single_member_differs_from_the_ensemble_mean(ani2x, mols):
    one = ANI2x(member=3).to("cpu", torch.float64)
    b = _batch(*mols)
    assert one.spec() != ani2x.spec()
    assert not torch.allclose(one(b)["hidden2"], ani2x(b)["hidden2"])
    with pytest.raises(ValueError, match="0-7"):
        ANI2x(member=8)


def test_ani2x_random_twin_is_reproducible_and_untrained(mols):
    a, b = ANI2x(random_init=True), ANI2x(random_init=True)
    assert a.card.status == "random-init" and a.card.twin_of == "ani2x"
    assert a.spec()["weights"] == b.spec()["weights"]
    if PARAMS.exists():
        assert a.spec()["weights"] != ANI2x().spec()["weights"]
        assert a.n_parameters == ANI2x().n_parameters


def test_missing_ani2x_weights_say_where_they_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("CPD_SHARED_DIR", str(tmp_path / "nowhere"))
    monkeypatch.delenv("TORCHANI_DATA_DIR", raising=False)
    import torchani.models

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torchani.models, "ANI2x", offline)
    with pytest.raises(WeightsNotFoundError) as err:
        ani_module.load_ani2x_model()
    msg = str(err.value)
    assert str(tmp_path / "nowhere") in msg and "TORCHANI_DATA_DIR" in msg and "network unreachable" in msg
