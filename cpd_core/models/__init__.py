"""Models: structures → per-atom features, one featurizer per model (see :mod:`cpd_core.extract`).

Model code knows nothing of probes, caches or the book. :data:`REGISTRY` maps a model's name
to its featurizer class; :func:`load` builds one by name.
"""

from __future__ import annotations

from cpd_core.errors import InputError
from cpd_core.models.ani import ANI2X_ELEMENTS, ANI2xAEV

#: name -> (featurizer class, one-line description)
REGISTRY = {
    ANI2xAEV.name: (ANI2xAEV, "ANI-2x atomic environment vector (torchani, handcrafted, no weights)"),
}


def load(name: str):
    """A featurizer by registry name.

    Examples
    --------
    >>> load("ani2x-aev").name
    'ani2x-aev'
    >>> load("mace-xl")
    Traceback (most recent call last):
    ...
    cpd_core.errors.InputError: unknown model 'mace-xl'; known models: ['ani2x-aev']
    """
    if name not in REGISTRY:
        raise InputError(f"unknown model {name!r}; known models: {sorted(REGISTRY)}")
    return REGISTRY[name][0]()


__all__ = ["ANI2X_ELEMENTS", "ANI2xAEV", "REGISTRY", "load"]
