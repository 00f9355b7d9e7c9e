"""QM9 (Ramakrishnan et al. 2014) from the PyPI package ``qm9pack``.

All 130,831 molecules with B3LYP/6-31G(2df,p) geometries and properties. The
package's CSV files are read directly (``import qm9pack`` needs the deprecated
``pkg_resources``); the parsed arrays are cached (:mod:`cpd_core.cache`), so
only the first call pays the ~10-30 s parse.

Targets and units
-----------------
=========  ==========  ===========================================
name       unit        QM9 column
=========  ==========  ===========================================
homo       eV          HOMO_au (Hartree → eV)
lumo       eV          LUMO_au
gap        eV          HOMO_LUMO_gap_au
dipole     D           Dipole_debye
alpha      bohr³       Polarizability_bohr3 (isotropic)
r2         bohr²       R2_bohr2 (electronic spatial extent)
zpve       eV          ZPVE_au
U0         eV          InternalEnergy_0K_au
U          eV          InternalEnergy_298K_au
H          eV          Enthalphy_298K_au
G          eV          GibbsFreeEnergy_298K_au
Cv         cal/(mol K) Heatcapacity_Cv_cal_mol_K
=========  ==========  ===========================================
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from cpd_core.cache import cached_arrays, content_key
from cpd_core.datasets.base import Dataset
from cpd_core.errors import InputError

HARTREE_TO_EV = 27.211386245988  # CODATA 2018

#: target name -> (qm9pack column, factor to the documented unit, unit)
TARGETS = {
    "homo": ("HOMO_au", HARTREE_TO_EV, "eV"),
    "lumo": ("LUMO_au", HARTREE_TO_EV, "eV"),
    "gap": ("HOMO_LUMO_gap_au", HARTREE_TO_EV, "eV"),
    "dipole": ("Dipole_debye", 1.0, "D"),
    "alpha": ("Polarizability_bohr3", 1.0, "bohr³"),
    "r2": ("R2_bohr2", 1.0, "bohr²"),
    "zpve": ("ZPVE_au", HARTREE_TO_EV, "eV"),
    "U0": ("InternalEnergy_0K_au", HARTREE_TO_EV, "eV"),
    "U": ("InternalEnergy_298K_au", HARTREE_TO_EV, "eV"),
    "H": ("Enthalphy_298K_au", HARTREE_TO_EV, "eV"),
    "G": ("GibbsFreeEnergy_298K_au", HARTREE_TO_EV, "eV"),
    "Cv": ("Heatcapacity_Cv_cal_mol_K", 1.0, "cal/(mol K)"),
}
N_MOLECULES = 130_831
_PARTS = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")
_SYMBOL_TO_Z = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}
#: The elements of QM9 (H, C, N, O, F): what the networks trained here support.
QM9_ELEMENTS = tuple(sorted(_SYMBOL_TO_Z.values()))


def data_folder() -> Path:
    """The ``data/`` folder of the installed ``qm9pack`` package."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or spec.origin is None:
        raise ImportError("QM9 needs the PyPI package 'qm9pack': pip install qm9pack==1.0.3")
    folder = Path(spec.origin).parent / "data"
    missing = [p for p in _PARTS if not (folder / p).exists()]
    if missing:
        raise FileNotFoundError(f"qm9pack is installed but {missing} are missing from {folder}")
    return folder


def _parse_lists(column: pd.Series, strip: str) -> list[str]:
    """Flatten a column of Python-literal lists ("[[1.,2],[3,4.5]]") into one token list."""
    text = ",".join(column.tolist())
    return [t for t in text.translate(str.maketrans("", "", strip)).split(",") if t]


def _parse(folder: Path) -> dict:
    cols = ["Index", "N_atoms", "Elements", "XYZ_Ang"] + [c for c, _, _ in TARGETS.values()]
    df = pd.concat([pd.read_csv(folder / p, usecols=cols) for p in _PARTS], ignore_index=True)
    df = df.sort_values("Index", ignore_index=True)
    n_atoms = df["N_atoms"].to_numpy(np.int64)
    symbols = _parse_lists(df["Elements"], "[]' ")
    z = np.array([_SYMBOL_TO_Z[s] for s in symbols], dtype=np.int8)
    xyz = np.array(_parse_lists(df["XYZ_Ang"], "[] "), dtype=np.float64).reshape(-1, 3)
    if len(z) != n_atoms.sum() or len(xyz) != n_atoms.sum():
        raise RuntimeError("qm9pack parse error: atom counts do not match N_atoms")
    out = {"index": df["Index"].to_numpy(np.int64), "n_atoms": n_atoms, "z": z, "xyz": xyz}
    for name, (col, factor, _) in TARGETS.items():
        out[f"target_{name}"] = df[col].to_numpy(np.float64) * factor
    return out


#: Environment variable naming a packed copy of the arrays (:func:`pack_arrays`), read instead of qm9pack.
PACKED_ENV = "CPD_QM9_ARRAYS"


def pack_arrays(path: str | Path, targets: Sequence[str] = ("gap", "U0", "dipole")) -> Path:
    """Write QM9's structures and some targets to one compressed ``.npz`` (about 25 MB).

    For machines without qm9pack (a GPU node without a network): set ``CPD_QM9_ARRAYS`` to
    the file there and every QM9 loader reads it instead. Coordinates are stored as float32
    (QM9 gives them to 10⁻⁶ Å; float32 keeps about 10⁻⁶ Å at 10 Å).
    """
    data = _all_arrays()
    path = Path(path)
    keep = {"index": data["index"], "n_atoms": data["n_atoms"].astype(np.int32), "z": data["z"],
            "xyz": data["xyz"].astype(np.float32)}
    keep.update({f"target_{t}": data[f"target_{t}"] for t in check_targets(targets)})
    np.savez_compressed(path, **keep)
    return path


def flat_arrays() -> dict:
    """All of QM9 as flat arrays, the form training reads (no per-molecule copies).

    Returns
    -------
    dict
        ``index`` (M,) 1-based QM9 ids; ``n_atoms`` (M,); ``z`` (A,) atomic numbers and ``xyz``
        (A, 3) coordinates in Å of all atoms, molecule after molecule; ``target_<name>`` (M,) in the
        units of :data:`TARGETS` (NaN where a packed file, :func:`pack_arrays`, left one out).
    """
    return _all_arrays()


def _all_arrays() -> dict:
    packed = os.environ.get(PACKED_ENV)
    if packed:
        with np.load(packed) as f:
            out = {k: f[k] for k in f.files}
        out["n_atoms"] = out["n_atoms"].astype(np.int64)
        out["xyz"] = out["xyz"].astype(np.float64)
        out.update({f"target_{t}": np.full(len(out["index"]), np.nan) for t in TARGETS
                    if f"target_{t}" not in out})
        return out
    folder = data_folder()
    stamp = [(p, (folder / p).stat().st_size) for p in _PARTS]
    return cached_arrays("qm9", content_key(dataset="qm9pack", files=stamp, parser="2"),
                         lambda: _parse(folder))


def check_targets(names: Sequence[str]) -> list[str]:
    """``names`` as a list, or :class:`InputError` naming the unknown ones and the known."""
    names = [names] if isinstance(names, str) else list(names)
    unknown = [t for t in names if t not in TARGETS]
    if unknown:
        raise InputError(f"unknown QM9 target(s) {unknown}; known: {list(TARGETS)}")
    return names


def load_qm9(n: int | None = None, seed: int = 0, targets: Sequence[str] | None = None,
             rows: Sequence[int] | None = None) -> Dataset:
    """Load QM9, a reproducible random subset of it, or the molecules at given rows.

    Rows and ids: a *row* is a 0-based position in QM9 order (ascending id), the index into
    :func:`flat_arrays` and what :func:`cpd_core.training.data.split_indices` splits; the returned
    ``ids`` are QM9's own 1-based molecule ids (``dsgdb9nsd_NNNNNN``). They are not ``row + 1``:
    the 3,054 molecules that failed QM9's consistency check are left out of the 133,885, so
    ids skip numbers (row 0 is id 1, the last row, 130,830, is id 133,885).

    Parameters
    ----------
    n : int or None
        Number of molecules; ``None`` takes all of them. The subset is drawn without
        replacement with ``numpy.random.default_rng(seed)`` and kept in QM9 order (in the order of
        ``rows`` when given), so the same ``(n, seed[, rows])`` always gives the same molecules.
    seed : int
    targets : sequence of str, optional
        Names from :data:`TARGETS`; default all.
    rows : sequence of int, optional
        0-based rows to take, in this order (e.g. :func:`cpd_core.training.data.probe_rows`);
        default all 130,831. Each at most once.

    Returns
    -------
    Dataset
        Named ``"qm9"``; ``ids`` are QM9 molecule ids, ``targets`` one column per requested
        target (units in :data:`TARGETS`) indexed by ``qm9_id``.

    Raises
    ------
    InputError
        For an unknown target, ``n`` outside 1 … (number of rows), or rows out of range or repeated.

    Examples
    --------
    >>> qm9 = load_qm9(n=3, seed=0, targets=["gap", "dipole"])  # doctest: +SKIP
    >>> list(qm9.targets.columns)  # doctest: +SKIP
    ['gap', 'dipole']
    >>> load_qm9(rows=[2, 0], targets=["gap"]).ids.tolist()  # doctest: +SKIP
    [3, 1]
    """
    targets = list(TARGETS) if targets is None else check_targets(targets)
    data = _all_arrays()
    total = len(data["index"])
    if rows is None:
        pool = np.arange(total)
    else:
        pool = np.asarray(rows)
        if pool.ndim != 1 or (pool.size and pool.dtype.kind not in "iu"):
            raise InputError(f"rows must be a 1-D sequence of integer row positions, got dtype {pool.dtype}, "
                             f"shape {pool.shape}")
        pool = pool.astype(np.int64)
        bad = pool[(pool < 0) | (pool >= total)]
        if bad.size:
            raise InputError(f"rows must lie in 0 … {total - 1}; got {bad[:10].tolist()}"
                             + (f" and {bad.size - 10} more" if bad.size > 10 else ""))
        values, counts = np.unique(pool, return_counts=True)
        if (counts > 1).any():
            raise InputError(f"rows must not repeat; repeated: {values[counts > 1][:10].tolist()}")
    if n is not None and (isinstance(n, bool) or int(n) != n or not 0 < n <= len(pool)):
        raise InputError(f"n must be between 1 and {len(pool)} (or None for all), got {n}")
    if n is not None:
        pool = pool[np.sort(np.random.default_rng(seed).choice(len(pool), size=int(n), replace=False))]
    offsets = np.concatenate([[0], np.cumsum(data["n_atoms"])])
    numbers = [data["z"][offsets[i]:offsets[i + 1]].astype(np.int64) for i in pool]
    positions = [data["xyz"][offsets[i]:offsets[i + 1]] for i in pool]
    ids = data["index"][pool]
    table = pd.DataFrame({t: data[f"target_{t}"][pool] for t in targets},
                         index=pd.Index(ids, name="qm9_id"))
    return Dataset("qm9", ids, numbers, positions, table)
