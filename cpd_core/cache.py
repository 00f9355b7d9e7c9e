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
