"""Models: structures → per-layer, per-irrep atom features (see :mod:`cpd_core.models.base`).

Model code knows nothing of probes, caches or the book. Each family module (``ani``,
``mace``, ``sevennet``, ``so3lr``, ``chgnet``, ``matgl``, and ``trained`` for the networks this
project trains on QM9) lists its :class:`ModelCard`\\ s in
``CARDS``, and imports its model stack only when a card's ``build`` runs, so listing the
registry is cheap. :data:`REGISTRY` maps every name to its card; :func:`load` builds one.
A name of the form ``"<prefix>:<path>"`` loads a local weights file through the family's
loader (e.g. ``"mace:/path/to/MACE-OFF23_medium.model"``).
"""

from __future__ import annotations

import pandas as pd

from cpd_core.errors import InputError
from cpd_core.models import ani, chgnet, mace, matgl, sevennet, so3lr, trained
from cpd_core.models.ani import ANI2X_ELEMENTS, ANI2x, ANI2xAEV
from cpd_core.models.base import (
    STATUSES,
    AtomsBatch,
    Featurizer,
    ModelCard,
    WeightsNotFoundError,
    resolve_device,
)

_FAMILIES = (ani, mace, sevennet, so3lr, chgnet, matgl, trained)

#: name -> ModelCard, in the order the book shows them
REGISTRY: dict[str, ModelCard] = {c.name: c for module in _FAMILIES for c in module.CARDS}
#: "prefix" -> callable(path, **options) for names "prefix:path"
PREFIXES = {p: f for module in _FAMILIES for p, f in getattr(module, "PREFIXES", {}).items()}


def load(name: str, device: str | None = "auto", **options) -> Featurizer:
    """Build a registered model's featurizer by name, on ``device`` (``"auto"``: CUDA when present).

    ``options`` go to the card's ``build`` (or the prefix's loader). Every random-init card takes
    ``seed`` (default 0), the seed its weights are drawn with: ``load("painn-qm9-random", seed=2)``
    is another draw of the same untrained network, whose card source and :meth:`Featurizer.spec`
    name the seed, so its features are cached apart. Other cards refuse a seed (or any option
    their builder does not know).

    Examples
    --------
    >>> load("ani2x-aev").name
    'ani2x-aev'
    >>> twin = load("painn-qm9-random", device="cpu", seed=2)
    >>> twin.card.source.endswith("seed 2"), twin.spec()["seed"]
    (True, 2)
    >>> load("mace-xl")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cpd_core.errors.InputError: unknown model 'mace-xl'; known models: [...]
    """
    prefix, sep, path = name.partition(":")
    if sep and prefix in PREFIXES:
        featurizer = PREFIXES[prefix](path, **options)
    elif name in REGISTRY:
        featurizer = REGISTRY[name].build(**options)
    else:
        hint = f"; or a file as {sorted(p + ':PATH' for p in PREFIXES)}" if PREFIXES else ""
        raise InputError(f"unknown model {name!r}; known models: {sorted(REGISTRY)}{hint}")
    featurizer.spec()  # hash the weights as loaded, before any cast
    return featurizer.to(resolve_device(device), featurizer.dtype)


def model_table() -> pd.DataFrame:
    """One row per registered model: name, family, status, training data, domain, offline, caveat,
    QM9 overlap (:attr:`ModelCard.qm9_overlap`), source.

    Examples
    --------
    >>> overlap = model_table().set_index("model")["QM9 overlap"]
    >>> overlap["schnet-qm9-gap"].startswith("trained on QM9"), overlap["ani2x-random"]
    (True, '')
    """
    rows = [{"model": c.name, "family": c.family, "status": c.status, "training data": c.training_data,
             "domain": c.domain, "stands in for": c.stands_in_for, "twin of": c.twin_of,
             "offline": c.offline, "caveat": c.caveat, "QM9 overlap": c.qm9_overlap, "source": c.source}
            for c in REGISTRY.values()]
    return pd.DataFrame(rows)


__all__ = ["ANI2X_ELEMENTS", "ANI2x", "ANI2xAEV", "AtomsBatch", "Featurizer", "ModelCard", "PREFIXES", "REGISTRY",
           "STATUSES",
           "WeightsNotFoundError", "load", "model_table"]
