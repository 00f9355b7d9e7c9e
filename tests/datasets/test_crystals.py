"""The crystal loaders: offline MP subset, Perov-5, the MP API path, and their errors."""


import numpy as np
import pandas as pd
import pytest

from cpd_core.datasets import crystals
from cpd_core.datasets.crystals import (
    MP_FILES,
    crystal_data_dir,
    load_mp,
    load_perov5,
    mp_formation_energies,
    mp_table,
    unsupported,
)
from cpd_core.errors import InputError
from cpd_core.models.base import shared_dir

SHARED_DATA = shared_dir() / "data"
needs_data = pytest.mark.skipif(not (SHARED_DATA / "mp").is_dir(), reason="../shared/data is not beside the repository")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CPD_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def small_data(tmp_path):
    """A data folder with the first rows of each shared file (same layout)."""
    folder = tmp_path / "data"
    for relative in list(MP_FILES.values()) + ["perov5/test.csv", "perov5/val.csv"]:
        src = SHARED_DATA / relative
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        with src.open() as f:
            first = f.readline()
        skip = 1 if first.startswith("#") else 0
        df = pd.read_csv(src, skiprows=skip).iloc[:12]
        text = (first if skip else "") + df.to_csv(index=False)
        (folder / relative).write_text(text)
    return folder


def test_missing_folder_names_it_and_the_environment_variable(tmp_path):
    with pytest.raises(InputError, match="does not exist.*CPD_DATA_DIR"):
        crystal_data_dir(tmp_path / "nowhere")


@needs_data
def test_missing_file_names_it(small_data, cache):
    (small_data / MP_FILES["piezoelectric"]).unlink()
    with pytest.raises(InputError, match="matminer_piezoelectric_tensor.csv is missing"):
        load_mp(n=3, data_dir=small_data)
    assert not cache.exists() or not any(cache.rglob("*.npz"))


@needs_data
def test_environment_variable_points_at_the_folder(small_data, cache, monkeypatch):
    monkeypatch.setenv(crystals.DATA_ENV, str(small_data))
    assert len(mp_table()) <= 36


@needs_data
def test_bad_cif_names_file_and_row_and_caches_nothing(small_data, cache):
    path = small_data / MP_FILES["chemeleon"]
    df = pd.read_csv(path)
    df.loc[4, "cif"] = "data_broken\n_cell_length_a 3.0\nthis is not a CIF\n"
    df.to_csv(path, index=False)
    with pytest.raises(InputError, match=r"chemeleon_mp40_test.csv row 4 \(material id mp-\d+\): unreadable CIF"):
        load_mp(n=None, data_dir=small_data)
    assert not cache.exists() or not any(cache.rglob("*.npz"))


@needs_data
def test_duplicate_ids_are_kept_once_with_every_file_named(small_data, cache):
    # copy a dielectric crystal into the piezoelectric file under the same id
    die = pd.read_csv(small_data / MP_FILES["dielectric"], skiprows=1)
    import ast

    meta = ast.literal_eval(die.loc[0, "meta"])
    path = small_data / MP_FILES["piezoelectric"]
    piezo = pd.read_csv(path, skiprows=1) if path.open().readline().startswith("#") else pd.read_csv(path)
    piezo.loc[0, "material_id"] = meta["material_id"]
    piezo.to_csv(path, index=False)
    table = mp_table(small_data)
    assert table["material_id"].is_unique
    row = table.set_index("material_id").loc[meta["material_id"]]
    assert row["file"] == "matminer_dielectric_constant.csv"
    assert row["files"] == "matminer_dielectric_constant.csv, matminer_piezoelectric_tensor.csv"
    assert len(table) == 36 - 1
    ds = load_mp(n=None, data_dir=small_data)
    assert len(ds) == 35 and len(set(ds.ids)) == 35


@needs_data
def test_subset_is_seeded_and_targets_have_units(small_data, cache):
    a, b, c = (load_mp(n=10, seed=s, data_dir=small_data) for s in (0, 0, 1))
    assert a.ids.tolist() == b.ids.tolist() and a.ids.tolist() != c.ids.tolist()
    assert list(a.targets.columns) == ["band_gap", "density", "volume_per_atom"]
    assert a.periodic and np.asarray(a.pbc).all() and a.name == "mp"
    with pytest.raises(InputError, match="between 1 and 36"):
        load_mp(n=37, data_dir=small_data)
    with pytest.raises(InputError, match="unknown crystal target"):
        load_mp(n=3, targets=["gap"], data_dir=small_data)
    with pytest.raises(InputError, match="only from the MP API"):
        load_mp(n=3, targets=["formation_energy"], data_dir=small_data)


@needs_data
def test_density_and_volume_computed_from_structures_match_the_file(small_data, cache):
    """Known answer: chemeleon's table lists MP's own density and volume for each crystal."""
    ds = load_mp(n=None, data_dir=small_data)
    ref = pd.read_csv(small_data / MP_FILES["chemeleon"]).set_index("material_id")
    ids = [i for i in ds.ids if i in ref.index]
    assert len(ids) == 12
    t = ds.targets.loc[ids]
    np.testing.assert_allclose(t["density"], ref.loc[ids, "density"], rtol=1e-4)
    n_atoms = np.array([len(ds.numbers[list(ds.ids).index(i)]) for i in ids])
    np.testing.assert_allclose(t["volume_per_atom"] * n_atoms, ref.loc[ids, "volume"], rtol=1e-6)
    np.testing.assert_allclose(t["band_gap"], ref.loc[ids, "band_gap"])


@needs_data
def test_views_are_pymatgen_and_ase_with_cells(small_data, cache):
    ds = load_mp(n=4, data_dir=small_data)
    s, a = ds.pymatgen()[0], ds.structures[0]
    assert s.lattice.volume == pytest.approx(a.get_volume())
    assert a.pbc.all() and len(a) == len(s)
    np.testing.assert_allclose(a.positions, s.cart_coords)


@needs_data
def test_perov5_is_labelled_and_rejects_repeated_ids(small_data, cache):
    ds = load_perov5(data_dir=small_data)
    assert ds.name == "perov5" and len(ds) == 24 and all(i.startswith("perov5-") for i in ds.ids)
    assert list(ds.targets.columns) == ["heat_of_formation", "dir_gap", "ind_gap"]
    assert all(len(z) == 5 for z in ds.numbers)
    val = pd.read_csv(small_data / "perov5/val.csv")
    test = pd.read_csv(small_data / "perov5/test.csv")
    val.loc[0, "material_id"] = test.loc[3, "material_id"]
    val.to_csv(small_data / "perov5/val.csv", index=False)
    with pytest.raises(InputError, match="repeat"):
        load_perov5(data_dir=small_data)
    with pytest.raises(InputError, match="unknown Perov-5 split"):
        load_perov5(splits=["train"], data_dir=small_data)


def test_unknown_element_for_a_model_names_the_structure():
    from cpd_core.datasets import Dataset
    from cpd_core.extract import check_elements

    ds = Dataset.from_arrays([[11, 17], [94, 8]], [np.zeros((2, 3)), np.zeros((2, 3))], cells=[np.eye(3) * 5] * 2,
                             ids=["mp-22862", "mp-xyz"], name=None)
    with pytest.raises(InputError, match=r"mp-xyz \(Pu\)"):
        check_elements(ds.numbers, range(1, 90), "toy", ids=ds.ids)
    assert unsupported(ds, range(1, 90)).to_dict("records") == [{"id": "mp-xyz", "elements": "Pu"}]


class _Docs:
    """A stand-in for mp-api's summary endpoint, answering from a table of (id, value)."""

    def __init__(self, table):
        self.table, self.calls = table, []

    def search(self, material_ids, fields):
        self.calls.append((list(material_ids), list(fields)))
        return [{"material_id": m, "formation_energy_per_atom": self.table[m]} for m in material_ids if m in self.table]


class _Client:
    def __init__(self, table):
        self.materials = type("M", (), {})()
        self.materials.summary = _Docs(table)


def test_api_formation_energies_in_order_with_gaps_and_chunks():
    client = _Client({"mp-149": 0.0, "mp-22862": -2.1, "mp-1": None})
    got = mp_formation_energies(["mp-22862", "mp-149", "mp-404", "mp-1"], client=client, chunk=3)
    assert got.index.tolist() == ["mp-22862", "mp-149", "mp-404", "mp-1"]
    np.testing.assert_array_equal(got.to_numpy(), [-2.1, 0.0, np.nan, np.nan])
    assert [len(c[0]) for c in client.materials.summary.calls] == [3, 1]
    assert client.materials.summary.calls[0][1] == ["material_id", "formation_energy_per_atom"]


def test_api_without_key_says_how_to_get_one(monkeypatch):
    monkeypatch.delenv("MP_API_KEY", raising=False)
    with pytest.raises(InputError, match="MP_API_KEY"):
        mp_formation_energies(["mp-149"])


@needs_data
def test_load_mp_with_api_adds_the_column(small_data, cache):
    ids = mp_table(small_data)["material_id"].tolist()
    client = _Client({m: -float(k) for k, m in enumerate(ids)})
    ds = load_mp(n=5, data_dir=small_data, formation_energy="api", client=client)
    assert "formation_energy" in ds.targets
    np.testing.assert_array_equal(ds.targets["formation_energy"], [-float(ids.index(m)) for m in ds.ids])


@needs_data
def test_within_parses_only_the_kept_crystals_of_the_same_draw(small_data, cache):
    whole = load_mp(n=20, seed=2, data_dir=small_data)
    part = load_mp(n=20, seed=2, data_dir=small_data, within=[1, 4, 7])
    assert part.ids.tolist() == whole.ids[[1, 4, 7]].tolist()
    np.testing.assert_array_equal(part.positions[2], whole.positions[7])
    pd.testing.assert_frame_equal(part.targets, whole.targets.iloc[[1, 4, 7]])
    with pytest.raises(InputError, match="increasing positions"):
        load_mp(n=20, data_dir=small_data, within=[4, 1])


@needs_data
def test_the_full_offline_subset(cache):
    table = mp_table()
    assert len(table) == 2503  # 708 + 1,056 + 941 less 202 shared ids
    ds = load_mp()
    assert len(ds) == 2000 and ds.targets["band_gap"].notna().sum() > 1000
