"""The scale ladder: each chapter's size parameters at the named scales.

Every chapter notebook takes one ``scale`` parameter besides its explicit ones:

``book``
    What ``make book`` runs on a 2-core CPU in minutes, and what the nbval references store.
``full``
    The paper's scale: all of QM9 (all 130,831 molecules; for networks trained here, all of
    their held-out test split), meant for a GPU (``make book SCALE=full``).

An explicit parameter overrides the scale (``papermill -p n_molecules 10000``, or
``make book NB_PARAMS="-p n_molecules 10000"``): a value of ``None`` in a notebook's
parameters cell means "the scale's value". In these tables ``ALL`` stands for every molecule
(``n=None`` in :func:`cpd_core.datasets.load_qm9`).
"""

from __future__ import annotations

from cpd_core.errors import InputError

#: Every molecule of the data set (all of QM9, or every held-out molecule).
ALL = "all"

SCALE_NAMES = ("book", "full")

#: chapter -> scale -> parameter -> value
SCALES: dict[str, dict[str, dict]] = {
    "method_known_answer": {
        "book": {"n_molecules": 2000, "coverage_n": [500, 2000], "coverage_seeds": 200},
        "full": {"n_molecules": 130_831, "coverage_n": [500, 2000, 10_000], "coverage_seeds": 1000},
    },
    "ani2x_aev": {
        "book": {"n_molecules": 2000},
        "full": {"n_molecules": ALL},
    },
    "model_gradient": {  # models: a named set of cpd_core.experiments.model_gradient.default_models; trees
        # (~35 s of the CPU build) only at full scale: their claim is made by the ANI-2x and probe-sensitivity chapters
        "book": {"n_molecules": 500, "models": "book", "probes": ["ridge", "mlp"]},
        "full": {"n_molecules": ALL, "models": "offline", "probes": ["ridge", "mlp", "gbt"]},
    },
    "layer_profiles": {  # the models chapter's models and molecules (its cached features and scans)
        "book": {"n_molecules": 500, "models": "book"},
        "full": {"n_molecules": ALL, "models": "offline"},
    },
    "irreps_routing": {  # the models chapter's models and molecules; scalar targets beside the dipole
        "book": {"n_molecules": 500, "models": "book"},
        "full": {"n_molecules": ALL, "models": "offline"},
    },
    "mean_vs_sum": {  # the models chapter's models and molecules; sum pooling from its cached mean-pooled features
        "book": {"n_molecules": 500, "models": "book"},
        "full": {"n_molecules": ALL, "models": "offline"},
    },
    "composition_bases": {  # trees on 1,000-wide ANI blocks cost ~6 s a fit on a CPU: the book runs the 64-128-wide models
        "book": {"n_molecules": 500, "models": ["sevennet-0", "so3lr", "chgnet-0.3.0", "so3net-ani1x"],
                 "probes": ["ridge", "gbt"]},
        "full": {"n_molecules": ALL, "models": "offline", "probes": ["ridge", "mlp", "gbt"]},
    },
    "sample_efficiency": {  # the models chapter's probe sets; probes' training rows subsampled on a log grid
        "book": {"n_molecules": 500, "models": "book", "probes": ["ridge"], "draws": 3},
        "full": {"n_molecules": ALL, "models": "offline", "probes": ["ridge", "mlp"], "draws": 5},
    },
    "isomers": {  # same-formula families of QM9's held-out test split; n_molecules: at most this many per family
        "book": {"n_molecules": 300, "families": 1, "models": "book-isomers", "probes": ["ridge"], "twin_seeds": [0]},
        "full": {"n_molecules": ALL, "families": 5, "models": "all", "probes": ["ridge", "mlp", "gbt"],
                 "twin_seeds": [0, 1, 2]},
    },
    "probe_sensitivity": {  # each model's gap block of the models chapter (read from its cached scan); aev_molecules:
        # ANI-2x's AEV on the ANI-2x chapter's subset as an extra set (0: none; at full scale the QM9 set holds it)
        "book": {"n_molecules": 500, "models": "book", "aev_molecules": 2000},
        "full": {"n_molecules": ALL, "models": "offline", "aev_molecules": 0},
    },
    "crystals": {  # MP crystals (book: drawn among those with a PBE band gap, one set of rows) and Perov-5
        "book": {"n_crystals": 200, "band_gap_only": True, "n_perovskites": 150, "models": "book",
                 "probes": ["ridge", "gbt"], "twin_seeds": [0], "force_crystals": 6},
        "full": {"n_crystals": 2000, "band_gap_only": False, "n_perovskites": ALL, "models": "all",
                 "probes": ["ridge", "mlp", "gbt"], "twin_seeds": [0, 1, 2], "force_crystals": 100},
    },
    "task_alignment": {  # the chapter's claims are ridge's; the nonlinear probes are shown beside them at full scale
        "book": {"n_molecules": 500, "probes": ["ridge"], "snapshots": 3},  # through training: first, middle, last
        "full": {"n_molecules": ALL, "probes": ["ridge", "mlp", "gbt"], "snapshots": ALL},
    },
}


def at_scale(chapter: str, scale: str, **given):
    """The values of ``given``'s parameters for ``chapter`` at ``scale``; a given value other than ``None`` wins.

    Returns the value itself for one parameter, else a tuple in the order given. ``ALL``
    becomes ``None`` (every molecule, as :func:`~cpd_core.datasets.load_qm9` reads ``n``).

    Examples
    --------
    >>> at_scale("model_gradient", "book", n_molecules=None)
    500
    >>> at_scale("model_gradient", "full", n_molecules=None) is None
    True
    >>> at_scale("model_gradient", "full", n_molecules=2000)
    2000
    >>> at_scale("method_known_answer", "book", n_molecules=None, coverage_seeds=None)
    (2000, 200)
    """
    if chapter not in SCALES:
        raise InputError(f"unknown chapter {chapter!r}; chapters: {sorted(SCALES)}")
    if scale not in SCALE_NAMES:
        raise InputError(f"unknown scale {scale!r} for {chapter}; choose one of {list(SCALE_NAMES)} "
                         f"(or set the parameters explicitly)")
    table = SCALES[chapter][scale]
    unknown = [k for k in given if k not in table]
    if unknown:
        raise InputError(f"{chapter} has no scale-dependent parameter(s) {unknown}; it has {sorted(table)}")
    values = [table[k] if v is None else v for k, v in given.items()]
    values = [None if v == ALL else v for v in values]
    return values[0] if len(values) == 1 else tuple(values)
