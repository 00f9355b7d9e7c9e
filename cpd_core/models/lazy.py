"""A featurizer that builds its network only when it has to compute something.

Reading cached features needs a model's name, its elements and its :meth:`Featurizer.spec`
(the feature cache's key, which holds the hash of the weights); computing features needs the
network. Building a network costs seconds (SevenNet-0 compiles its tensor products, matgl and
CHGNet read checkpoints, a random-init twin draws its weights), so a chapter that reads the
cached features of twenty networks spent about a minute building them for their keys alone.

:func:`load_lazy` returns a :class:`LazyFeaturizer` that answers ``name``, ``elements``,
``n_parameters`` and ``spec()`` from a memo written the last time the same model was built
in the same setting, and builds the real featurizer (:func:`cpd_core.models.load`) the first
time anything else is asked of it. The memo lives in the cache (``<cache>/specs/``) under a
key of everything a built network depends on besides the code's arguments:

- the model's name and build options (``seed``, ...);
- the source of :mod:`cpd_core.models` (every ``.py`` under it);
- every installed distribution and its version (torch, the model stacks, their bundled weights);
- size and modification time of every file under :func:`~cpd_core.models.base.shared_dir` and
  :func:`~cpd_core.models.trained.checkpoint_root` (weights read from disk), and of the file a
  ``"<prefix>:<path>"`` name points to.

Anything else changing the weights (a file downloaded into another cache and replaced there)
is not seen; ``load_lazy(..., memo=False)`` or deleting ``<cache>/specs`` forces a build.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
from pathlib import Path

from cpd_core.cache import cache_dir, content_key
from cpd_core.errors import InputError

__all__ = ["LazyFeaturizer", "StaleMemoError", "load_lazy", "model_fingerprint"]

#: The attributes a memo holds; asking for any other attribute builds the network.
MEMO_FIELDS = ("name", "elements", "n_parameters", "spec")
_PACKAGE = Path(__file__).resolve().parent


@functools.lru_cache(maxsize=1)
def _distributions() -> tuple[str, ...]:
    names = {f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions()}
    return tuple(sorted(names))


@functools.lru_cache(maxsize=1)
def _source_hash() -> str:
    """Hash of :mod:`cpd_core.models`' source, read once per process (the code it imported)."""
    h = hashlib.sha256()
    for path in sorted(_PACKAGE.rglob("*.py")):
        h.update(str(path.relative_to(_PACKAGE)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _files(root: Path) -> list:
    """(path, size, mtime) of ``root`` if it is a file, else of every file under it (none if it is missing)."""
    paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
    return [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths]


def model_fingerprint(name: str, options: dict | None = None) -> str:
    """The memo key of a model built as ``load(name, **options)`` here and now (see the module docstring).

    Examples
    --------
    >>> model_fingerprint("ani2x-aev") == model_fingerprint("ani2x-aev")
    True
    >>> model_fingerprint("painn-qm9-random", {"seed": 1}) == model_fingerprint("painn-qm9-random", {"seed": 2})
    False
    """
    from cpd_core.models.base import shared_dir
    from cpd_core.models.trained import checkpoint_root

    files = _files(shared_dir()) + _files(checkpoint_root())
    prefix, sep, path = name.partition(":")
    if sep:
        files += _files(Path(path))
    return content_key(memo="featurizer/1", name=name, options=dict(sorted((options or {}).items())),
                       source=_source_hash(), distributions=list(_distributions()), files=files)


def _memo_path(key: str) -> Path:
    return cache_dir() / "specs" / f"{key}.json"


def _read_memo(key: str) -> dict | None:
    try:
        memo = json.loads(_memo_path(key).read_text())
    except (OSError, ValueError):
        return None
    return memo if isinstance(memo, dict) and all(f in memo for f in MEMO_FIELDS) else None


def _write_memo(key: str, featurizer) -> None:
    spec = featurizer.spec()
    memo = {"name": featurizer.name, "elements": [int(z) for z in featurizer.elements],
            "n_parameters": int(featurizer.n_parameters), "spec": json.loads(json.dumps(spec, default=str))}
    # the memo stands in for the built model only if it keys the cache exactly as the model does
    if content_key(spec=memo["spec"]) != content_key(spec=spec):
        return
    path = _memo_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{id(memo)}.tmp")
    tmp.write_text(json.dumps(memo))
    tmp.replace(path)


#: Networks built in this process, by request (name, device, options): a chapter that featurizes two
#: data sets with the same models (the crystals chapter: MP crystals, then Perov-5) builds each once.
#: Featurizers hold no per-call state; :func:`cpd_core.extract.features` sets device and dtype on every use.
_BUILT: dict = {}


class StaleMemoError(InputError):
    """A memo's spec differs from that of the network it stands for (it is removed when this is raised)."""


class LazyFeaturizer:
    """A registered model, built on first use (see the module docstring).

    ``name``, ``elements``, ``n_parameters`` and ``spec()`` come from the memo when there is
    one; every other attribute (``to``, calling it on a batch, ``card``, ``module``, ...) is
    the built featurizer's, built on first access. :attr:`built` says whether that happened.
    """

    def __init__(self, name: str, device: str | None = "auto", memo: bool = True, **options):
        from cpd_core.models import PREFIXES, REGISTRY, load

        prefix, sep, _ = name.partition(":")
        if name not in REGISTRY and not (sep and prefix in PREFIXES):
            load(name)  # raises the unknown-model error, with the known names
        self._request = (name, device, options)
        self._key = model_fingerprint(name, options) if memo else None
        self._memo = _read_memo(self._key) if memo else None
        self._model = None

    @property
    def built(self) -> bool:
        return self._model is not None

    def _build(self):
        if self._model is None:
            from cpd_core.models import load

            name, device, options = self._request
            request = (name, str(device), json.dumps(options, sort_keys=True, default=str))
            model = _BUILT.get(request) or load(name, device=device, **options)
            _BUILT[request] = model
            if self._memo is not None and content_key(spec=self._memo["spec"]) != content_key(spec=model.spec()):
                # keys computed from the memo must never store this network's features
                _memo_path(self._key).unlink(missing_ok=True)
                raise StaleMemoError(
                    f"the memo of {name!r} ({_memo_path(self._key)}) does not match the network built now: its "
                    "weights changed in a way the memo's key does not see. The memo is removed; run again.")
            if self._key is not None and self._memo is None:
                _write_memo(self._key, model)
            self._model = model
        return self._model

    @property
    def name(self) -> str:
        return self._memo["name"] if self._memo else self._build().name

    @property
    def elements(self) -> tuple[int, ...]:
        return tuple(self._memo["elements"]) if self._memo else tuple(self._build().elements)

    @property
    def n_parameters(self) -> int:
        return int(self._memo["n_parameters"]) if self._memo else self._build().n_parameters

    def spec(self) -> dict:
        return self._memo["spec"] if self._memo else self._build().spec()

    def __call__(self, batch):
        return self._build()(batch)

    def __getattr__(self, attr):
        if attr.startswith("_"):
            raise AttributeError(attr)
        return getattr(self._build(), attr)

    def __repr__(self) -> str:
        state = "built" if self.built else ("memo" if self._memo else "not built")
        return f"<LazyFeaturizer {self._request[0]!r} ({state})>"


def load_lazy(name: str, device: str | None = "auto", memo: bool = True, **options) -> LazyFeaturizer:
    """A featurizer for ``load(name, device, **options)`` that builds its network on first use.

    Examples
    --------
    >>> f = load_lazy("ani2x-aev", device="cpu")
    >>> f.name, f.elements
    ('ani2x-aev', (1, 6, 7, 8, 16, 9, 17))
    """
    return LazyFeaturizer(name, device=device, memo=memo, **options)
