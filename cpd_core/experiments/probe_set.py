"""The molecules and features every model chapter probes: one path from a QM9 subset to each model's blocks.

A chapter names its models and a subset (``n`` and ``seed``, or the rows of a held-out split);
:func:`probe_set` keeps the molecules whose elements every model supports and builds their
composition matrix once; :meth:`ProbeSet.blocks` gives one model's pooled blocks on those molecules
from the feature cache (:func:`cpd_core.extract.features`, extracting only what the cache lacks).
Chapters that name the same models and subset get the same arrays, so their block scans
(:func:`cpd_core.scan_blocks` with ``cache=True``) are computed once for the whole book: the models
chapter, the layer profiles and the routing chapter read each other's scans.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from cpd_core.errors import InputError

#: The QM9 targets the book's chapters probe on the models chapter's probe sets: the gap and the dipole
#: everywhere, and the other scalar targets of the routing chapter. The first chapter to scan a model's
#: blocks scans them all (:func:`~cpd_core.experiments.model_gradient.model_gradient`'s ``prescan``):
#: the targets share each block's eigendecompositions, and the later chapters read the scans from the cache.
SHARED_TARGETS = ("gap", "dipole", "homo", "lumo", "alpha")


@dataclass
class ProbeSet:
    """A QM9 subset restricted to the molecules every one of ``models`` supports.

    Attributes
    ----------
    models : list of str
        Registry names.
    drawn : cpd_core.datasets.Dataset
        The subset as drawn (features are extracted, and cached, on all of it).
    common : numpy.ndarray of bool
        Rows of ``drawn`` whose elements every model supports.
    data : cpd_core.datasets.Dataset
        Those molecules: the ones probed.
    C : numpy.ndarray
        Their composition matrix (element counts and an intercept).
    n_parameters : dict of str to int
    """

    models: list
    drawn: object = field(repr=False)
    common: np.ndarray = field(repr=False)
    data: object = field(repr=False)
    C: np.ndarray = field(repr=False)
    n_parameters: dict
    _loaded: dict = field(default_factory=dict, repr=False)

    @property
    def dropped(self) -> list:
        """QM9 ids of the drawn molecules left out because some model does not support their elements."""
        return self.drawn.ids[~self.common].tolist()

    def targets(self, names: Sequence[str]) -> dict:
        """Target name → values on the probed molecules."""
        return {t: self.data.targets[t].to_numpy() for t in names}

    def runs(self, twin_seeds: Sequence[int] = (0, 1, 2)) -> list[tuple[str, int]]:
        """``(model, seed)`` of every run: each random-init twin with each of ``twin_seeds``, other models once."""
        from cpd_core.models import REGISTRY

        return [(m, s) for m in self.models for s in (twin_seeds if REGISTRY[m].status == "random-init" else (0,))]

    def blocks(self, name: str, seed: int = 0, device: str = "auto", progress: bool = False,
               pooling: str = "mean", **extract_kwargs) -> dict:
        """Block name → pooled features of model ``name`` (random twin drawn with ``seed``) on the probed molecules.

        ``pooling="sum"`` gives sum-pooled blocks computed from the cached mean-pooled ones
        (:func:`cpd_core.extract.sum_from_mean`): no second extraction.
        """
        from cpd_core.extract import features, sum_from_mean
        from cpd_core.models.lazy import load_lazy

        if name not in self.models:
            raise InputError(f"{name!r} is not one of this probe set's models {self.models}")
        if pooling not in ("mean", "sum"):
            raise InputError(f"pooling must be 'mean' or 'sum', got {pooling!r}")
        checked = self._loaded.pop(name, None)  # the featurizer of the element check, used once if it is this one
        featurizer = checked if seed == 0 and checked is not None else load_lazy(
            name, device=device, **({"seed": seed} if seed else {}))
        del checked
        feats = features(featurizer, self.drawn, device=device, progress=progress, skip_unsupported=True,
                         **extract_kwargs)
        if pooling == "sum":
            feats = sum_from_mean(feats, self.drawn)
        keep = self.common[feats.kept]  # of the rows this model kept, those every model kept
        return {block: H[keep] for block, H in feats.items()}


def probe_set(models: Sequence[str], n: int | None = 500, seed: int = 0, rows=None, dataset=None) -> ProbeSet:
    """The seeded QM9 subset (or ``dataset``) every one of ``models`` can featurize.

    Parameters
    ----------
    models : sequence of str
        Registry names (:data:`cpd_core.models.REGISTRY`).
    n, seed : int
        QM9 subset (``n=None``: all 130,831 molecules, or all of ``rows``); the seed draws it.
    rows : array_like of int, optional
        QM9 row positions to draw from (e.g. a held-out test split, :func:`cpd_core.training.probe_rows`).
    dataset : cpd_core.datasets.Dataset, optional
        Structures to use instead of a QM9 subset (``n``, ``seed`` and ``rows`` are then ignored): the
        crystal chapter's Materials Project and Perov-5 sets.

    Returns
    -------
    ProbeSet

    Notes
    -----
    Elements and parameter counts come from lazy featurizers (:func:`cpd_core.models.lazy.load_lazy`):
    a memo of an earlier build answers them, and a network is built only to compute features the cache
    does not hold.
    """
    from cpd_core.datasets.qm9 import load_qm9
    from cpd_core.extract import check_elements
    from cpd_core.models import REGISTRY
    from cpd_core.models.lazy import load_lazy

    models = list(models)
    if not models:
        raise InputError("no models given")
    unknown = [m for m in models if m not in REGISTRY]
    if unknown:
        raise InputError(f"unknown model(s) {unknown}; known models: {sorted(REGISTRY)}")
    drawn = load_qm9(n=n, seed=seed, rows=rows) if dataset is None else dataset
    common, n_params, loaded = np.ones(len(drawn), dtype=bool), {}, {}
    for name in models:
        featurizer = load_lazy(name, device="cpu")
        n_params[name] = featurizer.n_parameters
        common &= check_elements(drawn.numbers, featurizer.elements, name, skip=True)
        loaded[name] = featurizer
    if not common.any():
        raise InputError(f"no structure is supported by all of {models}")
    data = drawn.select(common)
    return ProbeSet(models, drawn, common, data, data.composition(), n_params, loaded)


def chapter_sets(models: Sequence[str] | None = None, archs: Sequence[str] | None = None, n: int | None = 500,
                 seed: int = 0) -> list[tuple[str, list, dict]]:
    """The two probe sets of the chapters that follow every model: ``(label, models, probe_set kwargs)``.

    ``"QM9 subset"``: the models chapter's models (``models``, default
    :func:`~cpd_core.experiments.model_gradient.default_models`) on its seeded subset of ``n``.
    ``"held-out test split"``: the gap-, U0-trained and random-init twins of each architecture trained
    here (``archs``, default every one with both checkpoints; ``[]`` for none) on ``n`` molecules of the
    test split they were never trained or early-stopped on (asserted). A set without models is left out.
    """
    from cpd_core.experiments.model_gradient import default_models
    from cpd_core.experiments.task_alignment import alignment_models
    from cpd_core.training import assert_held_out, probe_rows

    models = default_models() if models is None else list(models)
    sets = [("QM9 subset", models, {"n": n, "seed": seed})] if models else []
    trained = alignment_models(archs) if archs is None or len(archs) else []
    if trained:
        rows = probe_rows(n=n, seed=seed)
        assert_held_out(rows)
        sets.append(("held-out test split", trained, {"n": None, "seed": seed, "rows": rows}))
    if not sets:
        raise InputError("no models: give models or archs")
    return sets


__all__ = ["ProbeSet", "SHARED_TARGETS", "chapter_sets", "probe_set"]
