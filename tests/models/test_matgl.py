"""matgl featurizers: blocks, invariances, batching, agreement with matgl's own predictions, twins."""

import functools
import subprocess
import sys

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule

from cpd_core.models import PREFIXES, REGISTRY, load
from cpd_core.models.base import AtomsBatch, WeightsNotFoundError, weights_hash
from cpd_core.models.matgl import CHECKPOINTS, TWINS, MatGLFeaturizer, load_checkpoint, models_dir, tensor_irreps
from cpd_core.testing import pooled_invariants, random_rotation

NAMES = ["CH3CH2OH", "H2O", "CH3CN"]
TESTED = ["tensornet-ani1x", "so3net-ani1x", "m3gnet-ani1x", "megnet-mp-eform"]


def _needs(name):
    folder = models_dir() / CHECKPOINTS[REGISTRY[name].twin_of or name][0]
    return pytest.mark.skipif(not (folder / "model.json").is_file(),
                              reason=f"the matgl checkpoint {folder} is absent")


def _models(names):
    return [pytest.param(n, marks=_needs(n)) for n in names]


@functools.lru_cache(maxsize=None)
def featurizer(name, dtype=torch.float64):
    return load(name, device="cpu").to("cpu", dtype)


@pytest.fixture(scope="module")
def mols():
    ms = [molecule(n) for n in NAMES]
    return [m.numbers for m in ms], [m.positions for m in ms]


def _blocks(f, numbers, positions, dtype=torch.float64):
    batch = AtomsBatch.from_arrays(numbers, positions, dtype=dtype)
    return batch, {k: v.double() for k, v in f(batch).items()}


# --- registry --------------------------------------------------------------------------------


def test_cards():
    trained = {"m3gnet-ani1x": "M3GNet", "tensornet-ani1x": "TensorNet", "so3net-ani1x": "SO3Net",
               "m3gnet-mp-2021": "M3GNet", "tensornet-matpes-pbe": "TensorNet", "megnet-mp-eform": "MEGNet",
               "megnet-mp-bandgap": "MEGNet"}
    for name, family in trained.items():
        card = REGISTRY[name]
        assert (card.family, card.status, card.offline) == (family, "original", True)
        assert card.source == f"matgl 4.1.2, {CHECKPOINTS[name][0]} (../shared)"
        assert card.domain == ("molecules" if "ani1x" in name else "crystals")
    for twin, of in TWINS.items():
        card = REGISTRY[twin]
        assert (card.status, card.twin_of, card.training_data, card.family) == (
            "random-init", of, "untrained", REGISTRY[of].family)
    assert {REGISTRY[t].family for t in TWINS} == set(trained.values())
    assert "matgl" in PREFIXES


def test_import_does_not_load_matgl():
    code = ("import sys, cpd_core.models.matgl; "
            "print([m for m in sys.modules if m == 'matgl' or m.startswith('matgl.')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_checkpoint_raises_with_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("CPD_MATGL_MODELS", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match=r"TensorNet-ANI-1x-Subset-PES.*CPD_MATGL_MODELS") as err:
        load("tensornet-ani1x", device="cpu")
    assert str(tmp_path) in str(err.value)


# --- tensor decomposition ------------------------------------------------------------------


def test_tensor_irreps_reconstruct_and_rotate():
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.normal(size=(7, 3, 3)))
    l0, l1, l2 = tensor_irreps(x)
    # norms: |X|_F^2 = L0^2 + 2 |L1|^2 + |L2|^2
    torch.testing.assert_close((x ** 2).sum((-1, -2)), l0 ** 2 + 2 * (l1 ** 2).sum(-1) + (l2 ** 2).sum(-1))
    r = torch.tensor(random_rotation(rng))
    m0, m1, m2 = tensor_irreps(r @ x @ r.T)
    torch.testing.assert_close(m0, l0)
    torch.testing.assert_close(m1, l1 @ r.T)  # the axial vector rotates with R (det R = +1)
    torch.testing.assert_close(m2.norm(dim=-1), l2.norm(dim=-1))
    assert (m2 - l2).abs().max() > 1e-2
    # the L2 map is linear in S: a rotation acts on it by one orthogonal 5x5 matrix
    basis = torch.zeros(5, 3, 3, dtype=x.dtype)
    for k in range(5):
        e = torch.zeros(5, dtype=x.dtype)
        e[k] = 1
        basis[k] = _sym_from_l2(e)
    d = torch.stack([tensor_irreps(r @ b @ r.T)[2] for b in basis], 1)  # (5, 5)
    torch.testing.assert_close(d @ d.T, torch.eye(5, dtype=x.dtype))
    torch.testing.assert_close(m2, l2 @ d.T)


def _sym_from_l2(v):
    s2 = 2 ** 0.5
    xy, yz, xz, d, zz = v[0] / s2, v[1] / s2, v[2] / s2, v[3] / s2, v[4] / 1.5 ** 0.5
    xx, yy = d - zz / 2, -d - zz / 2  # xx - yy = sqrt 2 v[3], xx + yy = -zz
    s = torch.tensor([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]], dtype=v.dtype)
    _, _, back = tensor_irreps(s)
    torch.testing.assert_close(back, v)
    return s


# --- blocks ---------------------------------------------------------------------------------

EXPECTED = {
    "tensornet-ani1x": {**{f"{p}/L0": 64 for p in ("embedding", "layer1", "layer2", "readout")},
                        **{f"{p}/L{l}": (64, 2 * l + 1) for p in ("embedding", "layer1", "layer2") for l in (1, 2)}},
    "so3net-ani1x": {"embedding/L0": 64, "readout/L0": 1,
                     **{f"layer{k}/L0": 64 for k in (1, 2, 3)},
                     **{f"layer{k}/L{l}": (64, 2 * l + 1) for k in (1, 2, 3) for l in (1, 2)}},
    "m3gnet-ani1x": {"embedding/L0": 64, "layer1/L0": 64, "layer2/L0": 64, "layer3/L0": 64, "readout/L0": 1},
    "megnet-mp-eform": {"embedding/L0": 32, "layer1/L0": 32, "layer2/L0": 32, "layer3/L0": 32},
}


@pytest.mark.parametrize("name", _models(TESTED))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_block_names_shapes_and_dtype(name, dtype, mols):
    f = featurizer(name, dtype)
    n = sum(len(z) for z in mols[0])
    blocks = f(AtomsBatch.from_arrays(*mols, dtype=dtype))
    shapes = {k: tuple(v.shape) for k, v in blocks.items()}
    assert shapes == {k: (n, *(s if isinstance(s, tuple) else (s,))) for k, s in EXPECTED[name].items()}
    for k, v in blocks.items():
        assert v.dtype == dtype and torch.isfinite(v).all(), k


@pytest.mark.parametrize("name", _models(TESTED))
def test_invariance_to_rotation_translation_permutation(name, mols):
    f = featurizer(name)
    numbers, positions = mols
    rng = np.random.default_rng(0)
    batch, ref_blocks = _blocks(f, numbers, positions)
    ref = pooled_invariants(ref_blocks, batch)
    rotations = [random_rotation(rng) for _ in positions]
    perms = [rng.permutation(len(z)) for z in numbers]
    cases = {
        "rotation": (numbers, [p @ r.T for p, r in zip(positions, rotations)]),
        "translation": (numbers, [p + rng.normal(scale=5.0, size=3) for p in positions]),
        "permutation": ([z[p] for z, p in zip(numbers, perms)], [r[p] for r, p in zip(positions, perms)]),
    }
    for label, (z, r) in cases.items():
        b, blocks = _blocks(f, z, r)
        out = pooled_invariants(blocks, b)
        for key, value in ref.items():
            scale = float(value.abs().max()) + 1e-12
            torch.testing.assert_close(out[key], value, rtol=0, atol=1e-6 * scale, msg=f"{label} {key}")
        if label == "rotation":
            for key, x in ref_blocks.items():
                if x.dim() == 3:  # the equivariant blocks themselves do move
                    assert (blocks[key] - x).abs().max() > 1e-3 * x.abs().max(), key


@pytest.mark.parametrize("name", _models(["tensornet-ani1x", "so3net-ani1x"]))
def test_l1_blocks_rotate_with_the_molecule(name, mols):
    f = featurizer(name)
    numbers, positions = mols
    r = random_rotation(np.random.default_rng(3))
    _, ref = _blocks(f, numbers, positions)
    _, rot = _blocks(f, numbers, [p @ r.T for p in positions])
    rt = torch.tensor(r)
    if name.startswith("so3net"):
        order = [1, 2, 0]  # real spherical harmonics l = 1 in the order (y, z, x)
        rt = rt[order][:, order]
    for key in [k for k in ref if k.endswith("/L1")]:
        scale = float(ref[key].abs().max())
        torch.testing.assert_close(rot[key], ref[key] @ rt.T, rtol=0, atol=1e-6 * scale, msg=key)


@pytest.mark.parametrize("name", _models(TESTED))
def test_batch_equals_one_at_a_time(name, mols):
    f = featurizer(name)
    numbers, positions = mols
    _, together = _blocks(f, numbers, positions)
    alone = [_blocks(f, [z], [r])[1] for z, r in zip(numbers, positions)]
    for key, value in together.items():
        torch.testing.assert_close(value, torch.cat([a[key] for a in alone]), rtol=0, atol=1e-10, msg=key)


# --- known answers: matgl's own predictions -------------------------------------------------


@pytest.mark.parametrize("lmax", [1, 2, 3])
def test_so3_convolution_equals_matgls_sum(lmax):
    """so3_convolution is matgl's SO3Convolution.forward contracted in another order: equal to round-off."""
    pytest.importorskip("matgl")
    from matgl.layers._so3 import SO3Convolution

    from cpd_core.models.matgl import _fast_so3, so3_convolution

    torch.manual_seed(lmax)
    conv = SO3Convolution(lmax, n_atom_basis=8, n_radial=5).double()
    n_atoms, n_edges, S = 7, 30, (lmax + 1) ** 2
    args = (torch.randn(n_atoms, S, 8, dtype=torch.float64), torch.randn(n_edges, 5, dtype=torch.float64),
            torch.randn(n_edges, S, dtype=torch.float64), torch.rand(n_edges, 1, dtype=torch.float64),
            torch.randint(0, n_atoms, (n_edges,)), torch.randint(0, n_atoms, (n_edges,)))
    expected = conv(*args)
    torch.testing.assert_close(so3_convolution(conv, *args), expected, rtol=1e-12, atol=1e-12)
    holder = torch.nn.Sequential(conv)
    _fast_so3(holder)
    assert type(conv).__name__ == "FastSO3Convolution" and isinstance(conv, SO3Convolution)
    torch.testing.assert_close(holder[0](*args), expected, rtol=1e-12, atol=1e-12)
    assert set(conv.state_dict()) == set(SO3Convolution(lmax, 8, 5).state_dict())  # same weights, nothing added


@pytest.mark.parametrize("name", _models(["tensornet-ani1x", "so3net-ani1x", "m3gnet-ani1x"]))
def test_energy_equals_matgl_pes_calculator(name, mols):
    import matgl.ext.ase as mase
    from matgl.ext.pymatgen import Molecule2Graph
    from pymatgen.core import Molecule

    f = featurizer(name, torch.float32)
    numbers, positions = mols
    ours = f.predict(AtomsBatch.from_arrays(numbers, positions)).double().numpy()
    pot = load_checkpoint(CHECKPOINTS[name][0])
    calc = mase.PESCalculator(pot)
    for k, (z, r) in enumerate(zip(numbers, positions)):
        atoms = molecule(NAMES[k])
        atoms.calc = calc
        assert ours[k] == pytest.approx(atoms.get_potential_energy(), abs=5e-3)
        net = pot.model
        raw = net.predict_structure(Molecule(z.tolist(), r), graph_converter=Molecule2Graph(net.element_types,
                                                                                             net.cutoff))
        single = f.run(AtomsBatch.from_arrays([z], [r]))[0]
        assert float(single) == pytest.approx(float(raw), abs=1e-4)


#: ANI-1x (torchani 2.9.0, NeuroChem files in ../shared) energies in Hartree of ase's CH3CH2OH, H2O, CH3CN:
#: the same ωB97X/6-31G* level the matgl ANI-1x-subset checkpoints were fit to.
ANI1X_HARTREE = [-154.99013, -76.38850, -132.71344]
EV_PER_HARTREE = 27.211386


@pytest.mark.parametrize("name", _models(["so3net-ani1x", "tensornet-ani1x", "m3gnet-ani1x"]))
def test_ani1x_checkpoint_energy_agrees_with_ani1x(name, mols):
    energy = featurizer(name).predict(AtomsBatch.from_arrays(*mols, dtype=torch.float64)) / EV_PER_HARTREE
    np.testing.assert_allclose(energy.numpy(), ANI1X_HARTREE, rtol=0, atol=2e-3)


#: Ac-Ala3-NHMe (matgl's tests/conftest.py at e9cde229): symbols and coordinates (Å).
ACALA3NHME = ("HHHCOCNHCHCCOHHHNHCHCCOHHHNHCHCCOHHHNHCHHH", [
    [2.04866, 3.0397, -1.90538], [2.57508, 1.72268, -0.856315], [2.17184, 3.30896, -0.152382],
    [1.90655, 2.58401, -0.92348], [0.037714, 1.25465, -1.59488], [0.483967, 2.10062, -0.827513],
    [-0.289728, 2.66225, 0.136071], [0.161037, 3.23064, 0.832326], [-1.66536, 2.24227, 0.388567],
    [-1.9808, 2.78577, 1.282], [-2.60093, 2.60713, -0.760946], [-1.65737, 0.769353, 0.840767],
    [-1.07671, 0.464849, 1.87157], [-3.62795, 2.3159, -0.527314], [-2.58345, 3.68786, -0.912033],
    [-2.28934, 2.13627, -1.69468], [-2.28796, -0.137832, 0.065975], [-2.61433, 0.150844, -0.842711],
    [-2.21633, -1.56248, 0.355258], [-2.49106, -1.71026, 1.40128], [-3.17539, -2.32986, -0.547194],
    [-0.796612, -2.1518, 0.244173], [-0.545385, -3.20721, 0.795462], [-3.09773, -3.39555, -0.33182],
    [-4.20586, -2.01059, -0.375903], [-2.92852, -2.17659, -1.60274], [0.085186, -1.43854, -0.489616],
    [-0.203936, -0.57022, -0.92587], [1.4937, -1.76346, -0.597477], [1.62352, -2.74612, -0.134396],
    [1.93595, -1.80971, -2.05523], [2.37375, -0.79291, 0.212842], [3.55545, -0.639111, -0.056601],
    [3.00626, -2.00417, -2.11517], [1.39238, -2.59759, -2.5804], [1.73079, -0.853384, -2.54426],
    [1.77244, -0.143217, 1.23186], [0.795387, -0.298277, 1.437], [2.52442, 0.707989, 2.12658],
    [3.17617, 0.124743, 2.7838], [3.1563, 1.39339, 1.55717], [1.81944, 1.27508, 2.73527]])


def _atoms_batch(atoms):
    cells = [np.array(a.cell) if a.pbc.any() else None for a in atoms]
    cells = cells if any(c is not None for c in cells) else None
    return AtomsBatch.from_arrays([a.numbers for a in atoms], [a.positions for a in atoms], cells, dtype=torch.float64)


@pytest.mark.parametrize("name, system, expected", [
    pytest.param("m3gnet-mp-2021", "MoS", -10.824362, marks=_needs("m3gnet-mp-2021")),
    pytest.param("m3gnet-mp-2021", "AcAla3NHMe", -250.16803, marks=_needs("m3gnet-mp-2021")),
    pytest.param("tensornet-matpes-pbe", "AcAla3NHMe", -247.286789, marks=_needs("tensornet-matpes-pbe")),
])
def test_energy_equals_matgls_own_pinned_values(name, system, expected):
    """Energies (eV) that matgl's tests pin for these checkpoints (tests/ext/test_ase_dgl.py and
    test_ase_pyg.py at e9cde229, written when the checkpoints were fit). Plain matgl 4.1.2 gives
    -7.454, -187.29 and -160.31: the DGL-era aggregation (legacy_conventions) restores them."""
    from ase import Atoms

    if system == "MoS":
        atoms = Atoms("MoS", scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5]], cell=[4.0] * 3, pbc=True)
    else:
        symbols, coords = ACALA3NHME
        atoms = Atoms(symbols, positions=coords)
    assert len(atoms) == (2 if system == "MoS" else 42)
    energy = float(featurizer(name).predict(_atoms_batch([atoms]))[0])
    assert energy == pytest.approx(expected, abs=2e-3)


#: Materials Project PBE energies per atom (eV) of rocksalt NaCl (a = 5.69) and MgO (a = 4.25), about
#: -3.34 and -5.95; plain matgl 4.1.2 gives -1.30 and -2.04 with M3GNet-MP-2021 (-2.74, -2.27 with
#: TensorNet-MatPES), elements (Si) are unaffected.
MP_ENERGY = {"NaCl": -3.34, "MgO": -5.95, "Si": -5.42}


@pytest.mark.parametrize("name", _models(["m3gnet-mp-2021", "tensornet-matpes-pbe"]))
def test_ionic_crystal_energies_near_materials_project(name):
    atoms = [bulk("NaCl", "rocksalt", 5.69), bulk("MgO", "rocksalt", 4.25), bulk("Si", "diamond", 5.47)]
    per_atom = featurizer(name).predict(_atoms_batch(atoms)).numpy() / [len(a) for a in atoms]
    tol = {"NaCl": 0.1, "MgO": 0.1, "Si": 0.1 if name.startswith("m3gnet") else 0.25}  # MatPES is not MP's PBE setup
    for (formula, ref), value in zip(MP_ENERGY.items(), per_atom):
        assert value == pytest.approx(ref, abs=tol[formula]), formula


@pytest.mark.parametrize("name", _models(["m3gnet-mp-2021"]))
def test_no_pressure_at_readme_lattice_constants(name):
    """The checkpoint's README lists the lattice constants it relaxes to (GaAs 5.75044, NbN 4.44784 Å):
    there the pressure should vanish. It is 0.006 and -0.010 GPa; plain matgl 4.1.2 gives -0.28 and
    -5.9 GPa (it relaxes them to 5.7345 and 4.4450 Å)."""
    import matgl.ext.ase as mase

    calc = mase.PESCalculator(load_checkpoint(CHECKPOINTS[name][0]), stress_unit="GPa")
    for formula, structure, a in (("GaAs", "zincblende", 5.75044), ("NbN", "rocksalt", 4.44784)):
        atoms = bulk(formula, structure, a)
        atoms.calc = calc
        pressure = -float(np.mean(atoms.get_stress()[:3]))
        assert abs(pressure) < 0.15, (formula, pressure)


#: Materials Project formation energies (eV/atom) of NaCl and MgO, about -2.1 and -3.05 (plain
#: matgl 4.1.2: -1.76, -2.56).
MP_EFORM = {"NaCl": -2.10, "MgO": -3.05}


@pytest.mark.parametrize("name", _models(["megnet-mp-eform"]))
def test_megnet_formation_energy_near_materials_project(name):
    atoms = [bulk("NaCl", "rocksalt", 5.69), bulk("MgO", "rocksalt", 4.25)]
    eform = featurizer(name).predict(_atoms_batch(atoms)).numpy()
    np.testing.assert_allclose(eform, list(MP_EFORM.values()), atol=0.1)


@pytest.mark.parametrize("name", _models(["megnet-mp-bandgap"]))
def test_megnet_band_gap_of_nacl_and_the_known_failure_on_mgo(name):
    """PBE fidelity: NaCl 5.03 eV (PBE 5.0; plain 4.1.2: 4.59). MgO stays wrong (0.31 eV, PBE 4.45):
    the card's caveat; this pins it so that a change shows."""
    assert REGISTRY[name].caveat
    gaps = featurizer(name).predict(_atoms_batch([bulk("NaCl", "rocksalt", 5.69), bulk("MgO", "rocksalt", 4.25)]))
    assert float(gaps[0]) == pytest.approx(5.0, abs=0.25)
    assert float(gaps[1]) < 1.0


def test_legacy_conventions_are_applied_once_and_can_be_turned_off():
    name = "m3gnet-mp-2021"
    if not (models_dir() / CHECKPOINTS[name][0] / "model.json").is_file():
        pytest.skip("checkpoint absent")
    from cpd_core.models.matgl import legacy_conventions

    atoms = [bulk("NaCl", "rocksalt", 5.69)]
    plain = MatGLFeaturizer(load_checkpoint(CHECKPOINTS[name][0], legacy=False), REGISTRY[name])
    plain.to("cpu", torch.float64)
    restored = featurizer(name)
    e_plain = float(plain.predict(_atoms_batch(atoms))[0]) / 2
    assert e_plain == pytest.approx(-1.30, abs=0.05)  # the convention mismatch, measured
    assert float(restored.predict(_atoms_batch(atoms))[0]) / 2 == pytest.approx(-3.37, abs=0.05)
    legacy_conventions(restored.wrapper)  # a second call changes nothing
    assert float(restored.predict(_atoms_batch(atoms))[0]) / 2 == pytest.approx(-3.37, abs=0.05)
    tn = "tensornet-matpes-pbe"
    if (models_dir() / CHECKPOINTS[tn][0] / "model.json").is_file():
        model = load_checkpoint(CHECKPOINTS[tn][0])
        before = weights_hash(model)
        legacy_conventions(model)  # the weight rewrite is not undone by a second call
        assert weights_hash(model) == before


@pytest.fixture(scope="module")
def crystals():
    cs = [bulk("NaCl", "rocksalt", 5.64), bulk("Si", "diamond", 5.43), bulk("MgO", "rocksalt", 4.21)]
    return cs, AtomsBatch.from_arrays([c.numbers for c in cs], [c.positions for c in cs],
                                      [np.array(c.cell) for c in cs])


@pytest.mark.parametrize("name, state", [pytest.param("megnet-mp-eform", None, marks=_needs("megnet-mp-eform")),
                                         pytest.param("megnet-mp-bandgap", 0, marks=_needs("megnet-mp-bandgap")),
                                         pytest.param("m3gnet-mp-2021", None, marks=_needs("m3gnet-mp-2021"))])
def test_crystal_prediction_equals_matgl_predict_structure(name, state, crystals):
    from pymatgen.io.ase import AseAtomsAdaptor

    f = featurizer(name, torch.float32)
    atoms, batch = crystals
    model = load_checkpoint(CHECKPOINTS[name][0])
    blocks = f(batch)
    assert all(v.shape[0] == len(batch.numbers) for v in blocks.values())
    if name.startswith("megnet"):
        ours = f.predict(batch)
        kw = {} if state is None else {"state_attr": torch.tensor([state])}
        theirs = [float(model.predict_structure(AseAtomsAdaptor.get_structure(a), **kw)) for a in atoms]
    else:
        ours = f.run(batch)[0]
        theirs = [float(model.model.predict_structure(AseAtomsAdaptor.get_structure(a))) for a in atoms]
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-5, atol=1e-4)


def test_bandgap_fidelity_changes_the_state(crystals):
    if not (models_dir() / CHECKPOINTS["megnet-mp-bandgap"][0] / "model.json").is_file():
        pytest.skip("band-gap checkpoint absent")
    _, batch = crystals
    pbe, hse = (REGISTRY["megnet-mp-bandgap"].build(fidelity=k) for k in (0, 2))
    assert pbe.options()["state"] == [0] and hse.options()["state"] == [2]
    assert not torch.allclose(pbe.predict(batch), hse.predict(batch))
    assert pbe.spec() != hse.spec()


# --- twins ----------------------------------------------------------------------------------


@pytest.mark.parametrize("twin", _models(list(TWINS)))
def test_random_twin(twin, mols):
    trained, random = featurizer(TWINS[twin]), featurizer(twin)
    assert random.n_parameters == trained.n_parameters
    assert type(random.module) is type(trained.module)
    assert weights_hash(random.module) != weights_hash(trained.module)
    first, second, other = REGISTRY[twin].build(), REGISTRY[twin].build(), REGISTRY[twin].build(seed=1)
    assert weights_hash(first.module) == weights_hash(second.module) != weights_hash(other.module)
    _, a = _blocks(trained, *mols)
    _, b = _blocks(random, *mols)
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
    assert not torch.allclose(a["layer1/L0"], b["layer1/L0"])


# --- loading a folder -----------------------------------------------------------------------


@pytest.mark.parametrize("name", _models(["so3net-ani1x"]))
def test_prefix_loads_a_checkpoint_folder(name, mols):
    folder = models_dir() / CHECKPOINTS[name][0]
    f = load(f"matgl:{folder}", device="cpu").to("cpu", torch.float64)
    assert isinstance(f, MatGLFeaturizer) and f.card.family == "SO3Net"
    assert f.spec()["weights"] == featurizer(name).spec()["weights"]
    _, a = _blocks(f, *mols)
    _, b = _blocks(featurizer(name), *mols)
    torch.testing.assert_close(a["layer3/L2"], b["layer3/L2"])
    assert f.options()["cutoff"] == 5.0 and f.elements == (1, 6, 7, 8)
