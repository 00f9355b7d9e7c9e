"""MACE adapter: blocks, agreement with mace's own calculator, invariances, batching, twins, weights."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule

from cpd_core import InputError
from cpd_core.models import PREFIXES, REGISTRY, AtomsBatch, WeightsNotFoundError, load
from cpd_core.models import mace as mace_adapter
from cpd_core.models.base import weights_hash
from cpd_core.models.trained import network_class
from cpd_core.testing import pooled_invariants, random_rotation

ROOT = Path(__file__).resolve().parents[2]
NAMES = ["CH3CH2OH", "H2O", "CH3CN"]
SMALL_ELEMENTS = [1, 6, 7, 8]


@pytest.fixture(autouse=True)
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CPD_CACHE_DIR", str(tmp_path / "cache"))


def _small_mace(keep_last_layer_irreps=True, seed=0):
    """A 2-layer 16x0e+16x1o ScaleShiftMACE over H C N O, as mace's trainer would build it."""
    import mace  # noqa: F401  (sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD before e3nn loads)
    from e3nn import o3
    from mace import modules

    residual = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(seed)
        return modules.ScaleShiftMACE(
            r_max=3.0, num_bessel=8, num_polynomial_cutoff=5, max_ell=3, interaction_cls=residual,
            interaction_cls_first=residual, num_interactions=2, num_elements=4,
            hidden_irreps=o3.Irreps("16x0e+16x1o"), MLP_irreps=o3.Irreps("16x0e"),
            gate=torch.nn.functional.silu, atomic_energies=np.array([-13.6, -1029.3, -1484.1, -2042.0]),
            avg_num_neighbors=6.0, atomic_numbers=SMALL_ELEMENTS, correlation=3, radial_type="bessel",
            keep_last_layer_irreps=keep_last_layer_irreps, atomic_inter_scale=1.7,
            atomic_inter_shift=0.05).eval()
    finally:
        torch.set_default_dtype(previous)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("mace") / "small.model"
    torch.save(_small_mace(), path)
    return path


@pytest.fixture(scope="module")
def feat(model_file):
    return load("mace:" + str(model_file), device="cpu").to("cpu", torch.float64)


@pytest.fixture(scope="module")
def mols():
    ms = [molecule(name) for name in NAMES]
    return [m.numbers for m in ms], [m.positions for m in ms]


@pytest.fixture(scope="module")
def off_twin():
    return load("mace-off-medium-random", device="cpu").to("cpu", torch.float32)


def _batch(numbers, positions, dtype=torch.float64, cells=None):
    return AtomsBatch.from_arrays(numbers, positions, cells=cells, dtype=dtype)


# --- registry and weights ----------------------------------------------------------------------


def test_cards_are_registered_in_order_with_mace_urls():
    from mace.calculators.foundations_models import mace_mp_urls, mace_off_urls

    names = [c.name for c in mace_adapter.CARDS]
    assert names == ["mace-mp-0-medium", "mace-off-medium",
                     "mace-mp-0-medium-random", "mace-off-medium-random"]
    assert all(REGISTRY[name].family == "MACE" for name in names)
    mp, off, mp_random, off_random = mace_adapter.CARDS
    assert (mp.status, off.status, mp.offline, off.offline) == ("original", "original", False, False)
    assert mace_mp_urls["medium"] in mp.source and mace_off_urls["medium"] in off.source
    assert (mp.domain, off.domain) == ("crystals", "molecules")
    assert (mp_random.twin_of, off_random.twin_of) == ("mace-mp-0-medium", "mace-off-medium")
    assert {mp_random.status, off_random.status} == {"random-init"}
    assert PREFIXES["mace"] is mace_adapter.from_file


def test_importing_the_registry_does_not_import_mace():
    code = ("import cpd_core.models, sys; "
            "print([m for m in sys.modules if m.startswith(('mace', 'e3nn'))])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                            timeout=120)
    assert result.stdout.strip() == "[]", result.stderr


def test_offline_original_raises_naming_cache_file_env_var_and_prefix(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("CPD_MACE_MP_MODEL", raising=False)
    monkeypatch.delenv("CPD_MACE_OFF_MODEL", raising=False)
    # a port nothing listens on: a real download attempt through mace's own code, refused at once
    monkeypatch.setattr(mace_adapter, "MACE_OFF23_MEDIUM_URL", "http://127.0.0.1:9/MACE-OFF23_medium.model")
    monkeypatch.setattr(mace_adapter, "MACE_MP_0_MEDIUM_URL",
                        "http://127.0.0.1:9/2023-12-03-mace-128-L1_epoch-199.model")
    expected = {"mace-off-medium": ("CPD_MACE_OFF_MODEL", "MACE-OFF23_medium.model"),
                "mace-mp-0-medium": ("CPD_MACE_MP_MODEL", "20231203mace128L1_epoch199model")}
    for name, (env, cache_name) in expected.items():
        with pytest.raises(WeightsNotFoundError) as err:
            load(name, device="cpu")
        message = str(err.value)
        assert str(tmp_path / "xdg" / "mace" / cache_name) in message
        assert env in message and "mace:/path/to/file.model" in message
        assert not (tmp_path / "xdg" / "mace" / cache_name).exists()  # no half-written file


def test_env_var_naming_a_missing_file_raises(tmp_path, monkeypatch):
    monkeypatch.setenv("CPD_MACE_OFF_MODEL", str(tmp_path / "absent.model"))
    with pytest.raises(WeightsNotFoundError, match=r"CPD_MACE_OFF_MODEL=.*absent\.model is not a file"):
        load("mace-off-medium", device="cpu")


def test_env_var_file_is_loaded_under_the_original_card(model_file, monkeypatch):
    monkeypatch.setenv("CPD_MACE_MP_MODEL", str(model_file))
    f = load("mace-mp-0-medium", device="cpu")
    assert f.name == "mace-mp-0-medium" and f.card.status == "original"
    assert f.elements == tuple(SMALL_ELEMENTS)


def test_cache_file_is_where_mace_puts_it_and_is_used(model_file, tmp_path, monkeypatch):
    from mace.calculators import foundations_models as fm

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("CPD_MACE_MP_MODEL", raising=False)
    monkeypatch.delenv("CPD_MACE_OFF_MODEL", raising=False)
    fetched = []

    def fake_fetch(url, filename, timeout=None):  # mace's downloader, minus the network
        fetched.append(Path(filename))
        Path(filename).write_bytes(model_file.read_bytes())
        return filename, {}

    monkeypatch.setattr(fm, "_urlretrieve_with_timeout", fake_fetch)
    fm.mace_mp(model="medium", return_raw_model=True)
    fm.mace_off(model="medium", return_raw_model=True)
    assert fetched == [mace_adapter._cached_path("mp"), mace_adapter._cached_path("off")]
    # both files are now in the cache: the cards load them without downloading again
    for name in ("mace-mp-0-medium", "mace-off-medium"):
        assert load(name, device="cpu").elements == tuple(SMALL_ELEMENTS)
    assert len(fetched) == 2


def test_missing_file_prefix_raises():
    with pytest.raises(WeightsNotFoundError, match="no MACE model file"):
        load("mace:/nonexistent/x.model", device="cpu")


# --- features ------------------------------------------------------------------------------------


def test_block_names_and_shapes(feat, mols):
    batch = _batch(*mols)
    out = feat(batch)
    n = len(batch.numbers)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "layer1/L0": (n, 16), "layer1/L1": (n, 16, 3), "layer2/L0": (n, 16), "layer2/L1": (n, 16, 3)}
    assert feat.name.startswith("mace:") and feat.options() == {"r_max": 3.0}
    assert not batch.positions.requires_grad  # mace's forward marks its own copy only


def test_blocks_concatenate_back_to_node_feats(feat, mols):
    batch = _batch(*mols)
    out = feat(batch)
    with torch.no_grad():
        node_feats = feat.module(feat.mace_input(batch), training=False, compute_force=False)["node_feats"]
    n = len(batch.numbers)
    rebuilt = torch.cat([out["layer1/L0"], out["layer1/L1"].reshape(n, -1),
                         out["layer2/L0"], out["layer2/L1"].reshape(n, -1)], dim=1)
    assert torch.equal(rebuilt, node_feats)


def test_last_layer_of_scalars_only(tmp_path, mols):
    path = tmp_path / "scalar_last.model"
    torch.save(_small_mace(keep_last_layer_irreps=False), path)
    f = load(f"mace:{path}", device="cpu").to("cpu", torch.float64)
    out = f(_batch(*mols))
    assert sorted(out) == ["layer1/L0", "layer1/L1", "layer2/L0"]
    assert out["layer2/L0"].shape[1] == 16


def test_energy_and_descriptors_equal_mace_calculator(feat, model_file, mols):
    from mace.calculators import MACECalculator

    calc = MACECalculator(model_paths=str(model_file), device="cpu", default_dtype="float64")
    batch = _batch(*mols)
    with torch.no_grad():
        energy = feat.module(feat.mace_input(batch), compute_force=False)["energy"]
    out = feat(batch)
    ptr = batch.ptr.tolist()
    for s, name in enumerate(NAMES):
        atoms = molecule(name)
        atoms.calc = calc
        assert energy[s].item() == pytest.approx(atoms.get_potential_energy(), rel=1e-10, abs=1e-10)
        # mace's descriptors: all of layer 1, then the scalars of layer 2
        descriptors = calc.get_descriptors(atoms, invariants_only=False)
        sl = slice(ptr[s], ptr[s + 1])
        ours = torch.cat([out["layer1/L0"][sl], out["layer1/L1"][sl].reshape(len(atoms), -1),
                          out["layer2/L0"][sl]], dim=1).numpy()
        np.testing.assert_allclose(ours, descriptors, rtol=0, atol=1e-12)


def test_periodic_energy_equals_mace_calculator(feat, model_file):
    from mace.calculators import MACECalculator

    crystal = bulk("C", "diamond", a=3.57) * (1, 1, 2)
    crystal.positions += np.random.default_rng(0).normal(scale=0.05, size=crystal.positions.shape)
    crystal.calc = MACECalculator(model_paths=str(model_file), device="cpu", default_dtype="float64")
    batch = _batch([crystal.numbers], [crystal.positions], cells=[crystal.cell.array])
    with torch.no_grad():
        energy = feat.module(feat.mace_input(batch), compute_force=False)["energy"]
    assert energy.item() == pytest.approx(crystal.get_potential_energy(), rel=1e-10)


def test_invariant_to_rotation_translation_permutation(feat, mols):
    numbers, positions = mols
    rng = np.random.default_rng(0)
    ref = pooled_invariants(feat(_batch(numbers, positions)), _batch(numbers, positions))
    rotated = [p @ random_rotation(rng).T for p in positions]
    translated = [p + rng.normal(scale=10.0, size=3) for p in positions]
    perms = [rng.permutation(len(z)) for z in numbers]
    cases = {"rotation": (numbers, rotated), "translation": (numbers, translated),
             "permutation": ([z[p] for z, p in zip(numbers, perms)],
                             [r[p] for r, p in zip(positions, perms)])}
    for label, (z, r) in cases.items():
        batch = _batch(z, r)
        got = pooled_invariants(feat(batch), batch)
        for key in ref:
            scale = ref[key].abs().max().item()
            np.testing.assert_allclose(got[key], ref[key], rtol=0, atol=1e-9 * scale,
                                       err_msg=f"{label} {key}")


def test_vector_blocks_rotate_with_the_molecule(feat, mols):
    from e3nn import o3

    numbers, positions = mols
    rotation = random_rotation(np.random.default_rng(1))
    ref = feat(_batch(numbers, positions))
    rot = feat(_batch(numbers, [p @ rotation.T for p in positions]))
    wigner = o3.Irrep("1o").D_from_matrix(torch.from_numpy(rotation))
    for block in ("layer1/L1", "layer2/L1"):
        assert (rot[block] - ref[block]).abs().max() > 1e-3 * ref[block].abs().max()  # they do change
        torch.testing.assert_close(rot[block], ref[block] @ wigner.T, rtol=0, atol=1e-10)
    torch.testing.assert_close(rot["layer2/L0"], ref["layer2/L0"], rtol=0, atol=1e-10)


def test_batch_equals_one_molecule_at_a_time(feat, mols):
    numbers, positions = mols
    together = feat(_batch(numbers, positions))
    alone = [feat(_batch([z], [r])) for z, r in zip(numbers, positions)]
    for block in together:
        torch.testing.assert_close(together[block], torch.cat([a[block] for a in alone]), rtol=0, atol=1e-12)


def test_float32_matches_float64(model_file, mols):
    f = load(f"mace:{model_file}", device="cpu")
    f.to("cpu", torch.float64)
    ref = f(_batch(*mols))
    f.to("cpu", torch.float32)
    out = f(_batch(*mols, dtype=torch.float32))
    for block in ref:
        assert out[block].dtype == torch.float32
        torch.testing.assert_close(out[block].double(), ref[block], rtol=1e-4, atol=1e-5)


def test_float32_and_back_keeps_the_float64_weights(model_file):
    f = load(f"mace:{model_file}", device="cpu").to("cpu", torch.float32)
    f.to("cpu", torch.float64)
    original = torch.load(model_file, weights_only=False).state_dict()
    for key, value in f.module.state_dict().items():
        assert torch.equal(value, original[key]), key


def test_unsupported_element_raises(feat):
    m = molecule("CH3SH")
    with pytest.raises(InputError, match=r"\[16\]"):
        feat(_batch([m.numbers], [m.positions]))


# --- random twins -------------------------------------------------------------------------------


def test_off_twin_blocks_hyperparameters_and_reproducibility(off_twin, mols):
    assert off_twin.card.status == "random-init" and off_twin.card.twin_of == "mace-off-medium"
    assert off_twin.elements == (1, 6, 7, 8, 9, 15, 16, 17, 35, 53) and off_twin.options() == {"r_max": 5.0}
    assert off_twin.n_parameters == 936_848
    assert off_twin.module.interactions[0].avg_num_neighbors == pytest.approx(15.52)
    batch = _batch(*mols, dtype=torch.float32)
    out = off_twin(batch)
    n = len(batch.numbers)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "layer1/L0": (n, 128), "layer1/L1": (n, 128, 3), "layer2/L0": (n, 128)}
    assert all(torch.isfinite(v).all() and v.abs().max() > 0 for v in out.values())
    again = load("mace-off-medium-random", device="cpu")
    assert again.spec()["weights"] == off_twin.spec()["weights"]
    other_seed = mace_adapter.OFF_RANDOM_CARD.build(seed=1)
    assert other_seed.spec()["weights"] != off_twin.spec()["weights"]


def test_mp0_twin_matches_the_released_architecture(mols):
    f = load("mace-mp-0-medium-random", device="cpu")
    assert f.dtype == torch.float64  # load() keeps the dtype the weights were built in
    f.to("cpu", torch.float32)
    assert f.n_parameters == 4_688_656  # the released MACE-MP-0 medium checkpoint's count
    assert len(f.elements) == 89 and f.elements[-1] == 94 and f.options() == {"r_max": 6.0}
    assert f.module.interactions[0].avg_num_neighbors == pytest.approx(61.964672446250916)
    batch = _batch(*mols, dtype=torch.float32)
    out = f(batch)
    n = len(batch.numbers)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "layer1/L0": (n, 128), "layer1/L1": (n, 128, 3), "layer2/L0": (n, 128)}
    assert all(torch.isfinite(v).all() for v in out.values())


@pytest.mark.skipif(os.environ.get("CPD_MACE_OFF_MODEL") is None,
                    reason="CPD_MACE_OFF_MODEL does not name the released MACE-OFF23 medium file")
def test_released_off_model_has_the_twins_blocks(off_twin, mols):
    trained = load("mace-off-medium", device="cpu").to("cpu", torch.float32)
    batch = _batch(*mols, dtype=torch.float32)
    a, b = trained(batch), off_twin(batch)
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
    assert trained.n_parameters == off_twin.n_parameters
    assert weights_hash(trained.module) != weights_hash(off_twin.module)


def test_trainable_macenet_is_equivariant_and_trains(mols):
    torch.manual_seed(0)
    net = network_class("mace")(hidden_irreps="8x0e+8x1o", max_ell=2, correlation=2, radial_mlp=(16,)).double()
    from e3nn import o3  # after mace: importing e3nn 0.4.4 first fails under torch's weights-only loading

    assert type(net)(**net.hparams).hparams == net.hparams
    numbers, positions = mols
    batch = _batch(numbers, positions)
    rotation = random_rotation(np.random.default_rng(2))
    out, ref = net(batch.numbers, batch.positions, batch.batch)
    out_rot, rot = net(batch.numbers, batch.positions @ torch.from_numpy(rotation).T + 1.5, batch.batch)
    wigner = o3.Irrep("1o").D_from_matrix(torch.from_numpy(rotation))
    torch.testing.assert_close(out_rot, out, rtol=0, atol=1e-10)
    for block in ("layer1/L1", "layer2/L1"):
        torch.testing.assert_close(rot[block], ref[block] @ wigner.T, rtol=0, atol=1e-10)
        torch.testing.assert_close(rot[block.replace("L1", "L0")], ref[block.replace("L1", "L0")], rtol=0, atol=1e-10)
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    with pytest.raises(InputError, match="atomic numbers"):
        net(torch.tensor([17]), torch.zeros(1, 3, dtype=torch.float64), torch.zeros(1, dtype=torch.long))
