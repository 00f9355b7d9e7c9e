"""A content-keyed on-disk cache of arrays, written atomically.

An entry's file name is a hash of everything that determines its content
(model, weights, dataset rows, layer, pooling, code version), so a changed
input can never be served a stale result, and an interrupted write never
leaves a corrupt file behind (write to a temporary file, then rename).

The cache lives in ``$CPD_CACHE_DIR`` or, by default, ``~/.cache/cpd_core``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

#: Bumped when a change to the code changes cached results.
CACHE_VERSION = "1"


def cache_dir() -> Path:
    """The cache root (``$CPD_CACHE_DIR`` or ``~/.cache/cpd_core``), created if missing."""
    root = Path(os.environ.get("CPD_CACHE_DIR") or Path.home() / ".cache" / "cpd_core")
    root.mkdir(parents=True, exist_ok=True)
    return root


def content_key(**parts) -> str:
    """A short stable hash of JSON-serialisable parts; arrays are hashed by their bytes.

    Examples
    --------
    >>> content_key(model="aev", rows=[1, 2, 3]) == content_key(rows=[1, 2, 3], model="aev")
    True
    >>> content_key(model="aev", rows=[1, 2]) == content_key(model="aev", rows=[1, 3])
    False
    """

    def normal(v):
        if isinstance(v, np.ndarray):
            return {"sha256": hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest(),
                    "dtype": str(v.dtype), "shape": list(v.shape)}
        if isinstance(v, (list, tuple)):
            return [normal(x) for x in v]
        if isinstance(v, dict):
            return {str(k): normal(x) for k, x in v.items()}
        if isinstance(v, (np.integer, np.floating)):
            return v.item()
        return v

    blob = json.dumps({"cache_version": CACHE_VERSION, **normal(parts)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def save_npz_atomic(path: Path, **arrays) -> None:
    """Write ``arrays`` to ``path`` (``.npz``) so that readers see all of it or none."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cached_arrays(namespace: str, key: str, compute: Callable[[], dict]) -> dict:
    """Load ``namespace/key.npz`` if present, else ``compute()`` it and store it.

    Parameters
    ----------
    namespace : str
        Sub-folder of the cache (``"qm9"``, ``"features"``, ...).
    key : str
        Content key (:func:`content_key`).
    compute : callable returning dict of str to numpy.ndarray
    """
    path = cache_dir() / namespace / f"{key}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile):
            path.unlink(missing_ok=True)
    arrays = compute()
    save_npz_atomic(path, **arrays)
    return arrays


# --- shards: one entry per slice of consecutive rows, so a long computation resumes -----------------------


def readable_shard(path: Path) -> bool:
    """Whether ``path`` is a complete shard (:func:`save_shard`); a corrupt one is deleted."""
    path = Path(path)
    if not path.exists():
        return False
    try:
        with np.load(path, allow_pickle=False) as data:
            _ = data["kept"]
        return True
    except Exception:
        path.unlink(missing_ok=True)
        return False


def save_shard(path: Path, kept: np.ndarray, arrays: dict, **info) -> None:
    """Store one shard atomically: ``kept`` (which of its rows have arrays), the named arrays (``block::NAME``) of those rows, ``info``."""
    save_npz_atomic(path, kept=np.asarray(kept, dtype=bool), **{f"block::{k}": v for k, v in arrays.items()},
                    **{k: np.asarray(v) for k, v in info.items()})


def shard_masks(paths: list[Path]) -> np.ndarray:
    """The ``kept`` masks of the shards at ``paths``, concatenated, without reading their arrays."""
    masks = []
    for path in paths:
        with np.load(path, allow_pickle=False) as data:
            masks.append(data["kept"])
    return np.concatenate(masks)


def load_shards(paths: list[Path]) -> tuple[np.ndarray, dict]:
    """The shards at ``paths`` joined: (``kept`` mask of all their rows, name → arrays of the kept rows)."""
    parts, kept = [], []
    for path in paths:
        with np.load(path, allow_pickle=False) as data:
            kept.append(data["kept"])
            parts.append({k.split("::", 1)[1]: data[k] for k in data.files if k.startswith("block::")})
    names = next((list(p) for p in parts if p), [])
    return np.concatenate(kept), {name: np.concatenate([p[name] for p in parts if p]) for name in names}
