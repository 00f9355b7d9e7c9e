r"""Crystals: a Materials Project subset, and the Perov-5 perovskites, from local CSV files.

The paper's crystal data set is a 2,000-structure Materials Project (MP) subset with four targets
(band gap, formation energy, density, volume per atom) and one split. The MP API needs a key and
a network; offline, three published MP-derived tables stand in for it (``<data>/mp``, provenance
and licences in ``../shared/README.md``):

==================================  =====  ==================================================
file                                rows   what this loader takes from it
==================================  =====  ==================================================
``chemeleon_mp40_test.csv``         708    ``material_id``, ``cif``, ``band_gap`` (PBE, eV)
``matminer_dielectric_constant.csv``  1,056  ``band_gap`` (PBE, eV); id and CIF in ``meta``
``matminer_piezoelectric_tensor.csv`` 941    ``material_id``, ``structure`` (CIF); no band gap
==================================  =====  ==================================================

They share 202 material ids (dielectric ∩ piezoelectric): :func:`load_mp` keeps each id once (the
first file that lists it, in the order above, with a band gap taken from any file that has one),
2,503 in all, and draws a seeded subset of ``n`` (default 2,000). Targets and units:

===================  ==========  ===================================================================
name                 unit        source
===================  ==========  ===================================================================
``band_gap``         eV          the file's PBE band gap (NaN for piezoelectric-only crystals)
``density``          g/cm³       computed from the structure (mass of the cell / its volume)
``volume_per_atom``  Å³/atom     computed from the structure (cell volume / atoms)
``formation_energy`` eV/atom     the MP API (``mp-api``, ``MP_API_KEY``), only when asked for and
                                 reachable (:func:`mp_formation_energies`)
===================  ==========  ===================================================================

Formation energies offline come from **Perov-5** (:func:`load_perov5`): 7,572 cubic perovskites
(5 atoms each) with the heat of formation of Castelli et al. (2012), computed with another
functional and other references — not Materials Project, and named ``perov5`` in every table.

The data folder is ``data_dir`` when given, else ``$CPD_DATA_DIR``, else ``<shared>/data``
(:func:`cpd_core.models.base.shared_dir`). Parsed structures are cached
(:func:`cpd_core.cache.cached_arrays`, keyed by the files' sizes and the selection); a missing
file or an unreadable CIF raises :class:`~cpd_core.errors.InputError` naming the file and row,
and nothing is written to the cache.
"""

from __future__ import annotations

import ast
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from cpd_core.cache import cached_arrays, content_key
from cpd_core.datasets.base import Dataset
from cpd_core.errors import InputError

#: Environment variable naming the data folder (holding ``mp/`` and ``perov5/``).
DATA_ENV = "CPD_DATA_DIR"
#: The MP-derived tables, in the order duplicates are resolved.
MP_FILES = {"chemeleon": "mp/chemeleon_mp40_test.csv", "dielectric": "mp/matminer_dielectric_constant.csv",
            "piezoelectric": "mp/matminer_piezoelectric_tensor.csv"}
PEROV5_FILES = {"test": "perov5/test.csv", "val": "perov5/val.csv"}
#: target -> unit
MP_TARGETS = {"band_gap": "eV", "density": "g/cm³", "volume_per_atom": "Å³/atom", "formation_energy": "eV/atom"}
PEROV5_TARGETS = {"heat_of_formation": "eV/atom", "dir_gap": "eV", "ind_gap": "eV"}
#: The paper's crystal set size.
N_MP = 2000
#: Avogadro's number (CODATA 2018), for densities in g/cm³ from masses in u and volumes in Å³.
_AVOGADRO = 6.02214076e23


def crystal_data_dir(path: str | Path | None = None) -> Path:
    """The data folder: ``path``, else ``$CPD_DATA_DIR``, else ``<shared>/data``; raises if it is missing."""
    from cpd_core.models.base import shared_dir

    folder = Path(path) if path is not None else (Path(os.environ[DATA_ENV]) if os.environ.get(DATA_ENV)
                                                  else shared_dir() / "data")
    if not folder.is_dir():
        raise InputError(f"crystal data folder {folder} does not exist: pass data_dir=..., or set ${DATA_ENV} to a "
                         "folder holding mp/ and perov5/ (a copy of ../shared/data; see ../shared/README.md)")
    return folder


def _file(folder: Path, relative: str) -> Path:
    path = folder / relative
    if not path.is_file():
        raise InputError(f"{path} is missing: the crystal data folder {folder} must hold {relative} "
                         "(see ../shared/README.md for where each file comes from)")
    return path


def _read_csv(path: Path) -> pd.DataFrame:
    with path.open() as f:  # matminer's files start with a "# ref:" line (CIFs inside hold '#': no comment=)
        first = f.readline()
    return pd.read_csv(path, skiprows=1 if first.startswith("#") else 0)


def mp_table(data: str | Path | None = None) -> pd.DataFrame:
    """Every crystal of the three MP tables once: ``material_id``, ``file``, ``row``, ``cif``, ``band_gap``, ``files``.

    ``file``/``row`` name where the kept copy is (0-based data row of that CSV); ``files`` lists every
    file that holds the id. Duplicates keep their first file (order of :data:`MP_FILES`); the band gap
    is the first one any file gives.
    """
    folder = crystal_data_dir(data)
    parts = []
    for source, relative in MP_FILES.items():
        path = _file(folder, relative)
        df = _read_csv(path)
        if source == "dielectric":
            try:
                meta = [ast.literal_eval(m) for m in df["meta"]]
            except (ValueError, SyntaxError) as err:
                raise InputError(f"{path}: a 'meta' entry is not a Python literal ({err})") from err
            ids = [m.get("material_id") for m in meta]
            cifs = [m.get("structure") for m in meta]
        else:
            ids = df["material_id"].tolist()
            cifs = df["cif" if source == "chemeleon" else "structure"].tolist()
        gaps = df["band_gap"].to_numpy(float) if "band_gap" in df else np.full(len(df), np.nan)
        parts.append(pd.DataFrame({"material_id": ids, "file": path.name, "row": np.arange(len(df)), "cif": cifs,
                                   "band_gap": gaps}))
    table = pd.concat(parts, ignore_index=True)
    missing = table["material_id"].isna() | ~table["material_id"].astype(str).str.startswith("mp-")
    if missing.any():
        bad = table[missing].iloc[0]
        raise InputError(f"{bad['file']} row {bad['row']}: no Materials Project id (got {bad['material_id']!r})")
    files = table.groupby("material_id", sort=False)["file"].agg(", ".join)
    gap = table.groupby("material_id", sort=False)["band_gap"].first()  # first non-NaN
    kept = table.drop_duplicates("material_id", keep="first").set_index("material_id")
    kept["band_gap"] = gap
    kept["files"] = files
    return kept.reset_index()


def _parse_cif(text, where: str):
    from pymatgen.core import Structure

    if not isinstance(text, str) or not text.strip():
        raise InputError(f"{where}: no CIF text")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s = Structure.from_str(text, fmt="cif")
    except Exception as err:  # pymatgen raises many types for bad CIFs
        raise InputError(f"{where}: unreadable CIF ({type(err).__name__}: {err})") from err
    if not s.is_ordered:
        raise InputError(f"{where}: a disordered structure (partial occupancies); CPD needs one element per site")
    if len(s) == 0:
        raise InputError(f"{where}: the CIF holds no atoms")
    return s


def _structure_arrays(cifs: Sequence[str], wheres: Sequence[str]) -> dict:
    """Flat arrays of parsed CIFs (raises before returning anything if one fails)."""
    numbers, positions, cells, volumes, masses = [], [], [], [], []
    for text, where in zip(cifs, wheres):
        s = _parse_cif(text, where)
        numbers.append(np.array(s.atomic_numbers, dtype=np.int64))
        positions.append(s.cart_coords)
        cells.append(s.lattice.matrix)
        volumes.append(s.volume)
        masses.append(float(s.composition.weight))
    n_atoms = np.array([len(z) for z in numbers], dtype=np.int64)
    return {"n_atoms": n_atoms, "z": np.concatenate(numbers), "xyz": np.concatenate(positions),
            "cells": np.stack(cells), "volume": np.array(volumes), "mass": np.array(masses)}


def _unflatten(arrays: dict) -> tuple[list, list, list]:
    offsets = np.concatenate([[0], np.cumsum(arrays["n_atoms"])])
    numbers = [arrays["z"][a:b].astype(np.int64) for a, b in zip(offsets[:-1], offsets[1:])]
    positions = [arrays["xyz"][a:b] for a, b in zip(offsets[:-1], offsets[1:])]
    return numbers, positions, list(arrays["cells"])


def _draw(total: int, n: int | None, seed: int, what: str) -> np.ndarray:
    if n is None:
        return np.arange(total)
    if isinstance(n, bool) or int(n) != n or not 0 < n <= total:
        raise InputError(f"n must be between 1 and {total} (the {what} available), or None for all; got {n}")
    return np.sort(np.random.default_rng(seed).choice(total, size=int(n), replace=False))


def _stamp(folder: Path, files) -> list:
    return [(f, (folder / f).stat().st_size) for f in files]


def density(mass: np.ndarray, volume: np.ndarray) -> np.ndarray:
    """Density in g/cm³ from a cell's mass (u) and volume (Å³).

    Examples
    --------
    >>> round(float(density(np.array([4 * 58.44]), np.array([5.64 ** 3]))[0]), 3)  # rock salt, 4 NaCl per cell
    2.165
    """
    return np.asarray(mass) / _AVOGADRO / (np.asarray(volume) * 1e-24)


def mp_draw(n: int | None = N_MP, seed: int = 0, data_dir: str | Path | None = None) -> pd.DataFrame:
    """The rows of :func:`mp_table` that ``load_mp(n, seed)`` takes, in its order, without parsing a structure."""
    table = mp_table(crystal_data_dir(data_dir))
    return table.iloc[_draw(len(table), n, seed, "distinct Materials Project ids")].reset_index(drop=True)


def load_mp(n: int | None = N_MP, seed: int = 0, targets: Sequence[str] | None = None,
            data_dir: str | Path | None = None, formation_energy: str | None = None,
            api_key: str | None = None, client=None, within: Sequence[int] | None = None) -> Dataset:
    """A seeded subset of the offline Materials Project crystals (see the module docstring).

    Parameters
    ----------
    n : int or None
        Crystals to draw (default 2,000, the paper's size) from the 2,503 distinct ids; ``None``: all.
        Drawn with ``numpy.random.default_rng(seed)`` and kept in file order.
    seed : int
    targets : sequence of str, optional
        Names from :data:`MP_TARGETS`; default ``band_gap``, ``density``, ``volume_per_atom`` (and
        ``formation_energy`` when ``formation_energy="api"``).
    data_dir : path, optional
        Folder holding ``mp/`` (default ``$CPD_DATA_DIR`` or ``<shared>/data``).
    formation_energy : {None, "api"}
        ``"api"``: add MP's ``formation_energy_per_atom`` for the drawn ids through
        :func:`mp_formation_energies` (needs ``mp-api``, a key and a network, or ``client``).
    api_key, client
        Passed to :func:`mp_formation_energies`.
    within : sequence of int, optional
        Positions (increasing) among the ``n`` drawn crystals to keep: the same crystals as
        ``load_mp(n, seed).select(within)``, parsing only those (:func:`mp_draw` lists the draw).

    Returns
    -------
    Dataset
        Named ``"mp"`` (``"mp+api"`` is not needed: the structures are the same), periodic in all three
        directions; ``ids`` are MP material ids (``"mp-149"``); ``targets`` indexed by ``material_id``,
        with the columns ``file`` and ``files`` in ``targets.attrs["provenance"]`` (a table).

    Raises
    ------
    InputError
        For a missing folder or file, an unknown target, ``n`` out of range, or an unreadable CIF
        (naming the file and row); nothing is cached then.
    """
    if formation_energy not in (None, "api"):
        raise InputError(f"formation_energy must be None or 'api', got {formation_energy!r}")
    default = ["band_gap", "density", "volume_per_atom"] + (["formation_energy"] if formation_energy else [])
    targets = default if targets is None else ([targets] if isinstance(targets, str) else list(targets))
    unknown = [t for t in targets if t not in MP_TARGETS]
    if unknown:
        raise InputError(f"unknown crystal target(s) {unknown}; known: {list(MP_TARGETS)}")
    if "formation_energy" in targets and formation_energy != "api":
        raise InputError("formation energies of MP crystals come only from the MP API: pass formation_energy='api' "
                         "(offline, use load_perov5() for formation energies of another, labelled, data set)")
    folder = crystal_data_dir(data_dir)
    chosen = mp_draw(n, seed, folder)
    if within is not None:
        keep = np.asarray(within)
        if keep.ndim != 1 or keep.dtype.kind not in "iu" or (keep.size and (keep.min() < 0 or keep.max() >= len(chosen)
                                                                            or (np.diff(keep) <= 0).any())):
            raise InputError(f"within must be increasing positions in 0 … {len(chosen) - 1}")
        chosen = chosen.iloc[keep].reset_index(drop=True)
    wheres = [f"{f} row {r} (material id {m})" for f, r, m in zip(chosen["file"], chosen["row"], chosen["material_id"])]
    key = content_key(dataset="mp", files=_stamp(folder, MP_FILES.values()), ids=chosen["material_id"].tolist(),
                      parser="1")
    arrays = cached_arrays("crystals", key, lambda: _structure_arrays(chosen["cif"].tolist(), wheres))
    numbers, positions, cells = _unflatten(arrays)
    ids = chosen["material_id"].to_numpy(str)
    values = {"band_gap": chosen["band_gap"].to_numpy(float), "density": density(arrays["mass"], arrays["volume"]),
              "volume_per_atom": arrays["volume"] / arrays["n_atoms"]}
    if "formation_energy" in targets:
        values["formation_energy"] = mp_formation_energies(ids, api_key=api_key, client=client).to_numpy(float)
    frame = pd.DataFrame({t: values[t] for t in targets}, index=pd.Index(ids, name="material_id"))
    frame.attrs["provenance"] = chosen.set_index("material_id")[["file", "row", "files"]]
    return Dataset("mp", ids, numbers, positions, frame, cells, np.ones((len(ids), 3), dtype=bool))


#: Fields the MP API's summary endpoint is asked for.
MP_API_FIELDS = ("material_id", "formation_energy_per_atom")


def mp_formation_energies(material_ids: Sequence[str], api_key: str | None = None, client=None,
                          chunk: int = 500) -> pd.Series:
    """Materials Project formation energies (eV/atom) of ``material_ids`` from the MP API.

    Parameters
    ----------
    material_ids : sequence of str
    api_key : str, optional
        Default ``$MP_API_KEY``.
    client : object, optional
        Anything with ``materials.summary.search(material_ids=..., fields=...)`` returning documents
        with ``material_id`` and ``formation_energy_per_atom`` (attributes or dict keys): by default
        ``mp_api.client.MPRester(api_key)`` (``pip install mp-api``). Tests pass a recorded stand-in.
    chunk : int
        Ids per request.

    Returns
    -------
    pandas.Series
        Indexed by ``material_ids`` (in their order), NaN where the API has no value.

    Raises
    ------
    InputError
        Without ``client``, when ``mp-api`` is not installed or no key is given.
    """
    ids = [str(m) for m in material_ids]
    own = client is None
    if own:
        key = api_key or os.environ.get("MP_API_KEY")
        if not key:
            raise InputError("Materials Project formation energies need an API key: set $MP_API_KEY "
                             "(https://next-gen.materialsproject.org/api) or pass api_key=...")
        try:
            from mp_api.client import MPRester
        except ImportError as err:
            raise InputError("Materials Project formation energies need the mp-api package: pip install mp-api") from err
        client = MPRester(key)
    found = {}
    try:
        for start in range(0, len(ids), chunk):
            docs = client.materials.summary.search(material_ids=ids[start:start + chunk], fields=list(MP_API_FIELDS))
            for doc in docs:
                get = doc.get if isinstance(doc, dict) else (lambda k, d=doc: getattr(d, k, None))
                value = get("formation_energy_per_atom")
                found[str(get("material_id"))] = np.nan if value is None else float(value)
    finally:
        if own and hasattr(client, "session"):
            client.session.close()
    return pd.Series([found.get(m, np.nan) for m in ids], index=pd.Index(ids, name="material_id"),
                     name="formation_energy")


def load_perov5(n: int | None = None, seed: int = 0, splits: Sequence[str] = ("test", "val"),
                data_dir: str | Path | None = None) -> Dataset:
    """Perov-5 (Castelli et al. 2012): cubic ABX₃ perovskites with heats of formation. Not Materials Project.

    Parameters
    ----------
    n : int or None
        Structures to draw (seeded, kept in file order); ``None``: all of ``splits``.
    seed : int
    splits : sequence of {"test", "val"}
        The CDVAE split files available offline (3,785 + 3,787 structures).
    data_dir : path, optional
        Folder holding ``perov5/`` (default ``$CPD_DATA_DIR`` or ``<shared>/data``).

    Returns
    -------
    Dataset
        Named ``"perov5"``; ids ``"perov5-<material_id>"``; targets ``heat_of_formation`` (eV/atom, the
        file's ``heat_all``), ``dir_gap`` and ``ind_gap`` (eV, GLLB-SC).

    Raises
    ------
    InputError
        For a missing folder or file, an unknown split, an id repeated across the files, ``n`` out of
        range, or an unreadable CIF (naming the file and row).
    """
    splits = [splits] if isinstance(splits, str) else list(splits)
    unknown = [s for s in splits if s not in PEROV5_FILES]
    if unknown or not splits:
        raise InputError(f"unknown Perov-5 split(s) {unknown or splits}; offline splits: {list(PEROV5_FILES)}")
    folder = crystal_data_dir(data_dir)
    parts = []
    for split in splits:
        path = _file(folder, PEROV5_FILES[split])
        df = pd.read_csv(path)
        parts.append(df.assign(file=path.name, row=np.arange(len(df))))
    table = pd.concat(parts, ignore_index=True)
    repeated = table["material_id"][table["material_id"].duplicated()]
    if len(repeated):
        raise InputError(f"Perov-5 material ids repeat across {splits}: {repeated.unique()[:10].tolist()}")
    chosen = table.iloc[_draw(len(table), n, seed, "Perov-5 structures")].reset_index(drop=True)
    wheres = [f"{f} row {r} (material id {m})" for f, r, m in zip(chosen["file"], chosen["row"], chosen["material_id"])]
    key = content_key(dataset="perov5", files=_stamp(folder, [PEROV5_FILES[s] for s in splits]),
                      ids=chosen["material_id"].to_numpy(np.int64), parser="1")
    arrays = cached_arrays("crystals", key, lambda: _structure_arrays(chosen["cif"].tolist(), wheres))
    numbers, positions, cells = _unflatten(arrays)
    ids = np.array([f"perov5-{m}" for m in chosen["material_id"]])
    frame = pd.DataFrame({"heat_of_formation": chosen["heat_all"].to_numpy(float),
                          "dir_gap": chosen["dir_gap"].to_numpy(float), "ind_gap": chosen["ind_gap"].to_numpy(float)},
                         index=pd.Index(ids, name="material_id"))
    return Dataset("perov5", ids, numbers, positions, frame, cells, np.ones((len(ids), 3), dtype=bool))


def unsupported(dataset: Dataset, supported: Sequence[int]) -> pd.DataFrame:
    """The structures holding an element outside ``supported``: id and the offending elements (a table to show).

    Examples
    --------
    >>> ds = Dataset.from_arrays([[1, 6], [1, 94]], [np.zeros((2, 3)), np.zeros((2, 3))])
    >>> unsupported(ds, range(1, 90)).to_dict("records")
    [{'id': 1, 'elements': 'Pu'}]
    """
    from cpd_core.composition import symbol

    allowed = set(int(z) for z in supported)
    rows = [(i, "/".join(symbol(z) for z in sorted(set(map(int, zs)) - allowed)))
            for i, zs in zip(dataset.ids.tolist(), dataset.numbers) if not set(map(int, zs)) <= allowed]
    return pd.DataFrame(rows, columns=["id", "elements"])

