r"""The isomer benchmark: ordering same-formula molecules by their HOMO-LUMO gap.

Inside a family of isomers (one molecular formula, e.g. C₇H₁₀O₂) every molecule has the same element
counts, so whatever a function of composition predicts is the same number for all of them: the
compositional part of CPD can order no pair, and everything a probe gets right comes from the rest of
the features. The paper (v2) reports that the geometric residual orders the gaps of C₇H₁₀O₂ isomers
with 94.6 % pairwise accuracy and composition at chance; its exact pair protocol and model are not
stated.

The task here, stated exactly
-----------------------------
The probed molecules (the held-out test split's members of the ``k`` largest families of QM9, ranked
by their size in all of QM9) are split into :math:`K = 5` shuffled, seeded folds
(:func:`cpd_core.decomposition.fold_labels`). For each fold :math:`f` a probe is fit on the molecules
of the other folds and predicts those of :math:`f` (out of fold, :class:`~cpd_core.CPDResult.oof`).
The scored pairs are every unordered pair :math:`\{i, j\}` of held-out molecules **of the same fold and
the same family** whose true gaps differ, :math:`y_i \ne y_j`; no molecule of a scored pair was seen by
the probe that scores it. A pair scores

.. math::

    s_{ij} = \begin{cases} 1 & \operatorname{sign}(\hat y_i - \hat y_j) = \operatorname{sign}(y_i - y_j) \\
                           \tfrac12 & \hat y_i = \hat y_j \\
                           0 & \text{otherwise,} \end{cases}
    \qquad
    \text{accuracy} = \frac{\sum_{\text{pairs}} s_{ij}}{\#\text{pairs}} .

Pairs with equal true gaps are left out (QM9 gives the gap to :math:`10^{-4}` Hartree, so equal values
are common: neither order is right); their number is reported. A predicted tie counts one half, so a
predictor that cannot tell isomers apart, a function of composition above all, scores exactly
:math:`\tfrac12`.

Intervals
---------
Pairs share molecules, so pairs are not independent draws: the interval is a bootstrap over
**molecules**, stratified by (fold, family). Replicate :math:`b` draws, within each cell, as many
molecules as it holds with replacement (multiplicities :math:`w_i`) and recomputes

.. math::

    \text{accuracy}_b = \frac{\sum_{\text{cells}} \sum_{i \ne j} w_i w_j\, s_{ij} [y_i \ne y_j]}
                             {\sum_{\text{cells}} \sum_{i \ne j} w_i w_j\, [y_i \ne y_j]},

every pair of drawn molecules counted once per pair of draws (a molecule drawn twice is never paired
with itself: equal gaps). The interval is the central 95 % of the replicates. Every prediction on the
same molecules is scored on the same replicates, so a difference of two accuracies (a model and its
random-init twin; two models) has a paired interval (:class:`PairedAccuracy`).

What is probed
--------------
For each model, the blocks are scanned once for the gap and a control (the gap shuffled *within
each family*, seeded: every family keeps its gaps, the link to the structures is cut), and the block is
chosen on inner folds of each outer fold's training molecules (:func:`cpd_core.scan_blocks`, nested, as
in every chapter). On the chosen block: the composition part (least squares on the counts and an
intercept), ridge on the geometric residual, ridge on the raw features, and (if asked) an MLP and
gradient-boosted trees on the residual. Within a single family the composition matrix is one repeated
row, so the projection subtracts the training molecules' mean and nothing else: ridge on the residual
and on the raw features (which ridge standardises, i.e. centres) give the same predictions. With
several families the projection removes each family's mean as far as the counts span it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cpd_core.errors import InputError

#: The target ordered within each family.
TARGET = "gap"
#: Its control: the gap permuted within each family (seeded).
SHUFFLED = "gap (shuffled)"
#: What each row of a run's summary scored: the features and the probe.
FEATURES = ("composition", "residual", "raw")
#: Named model sets of :func:`isomer_models`.
MODEL_SETS = ("book-isomers", "all")
#: The book scale's models: three architectures trained here (gap-, U0-trained and their random-init
#: twin) and one offline model with its twin. Extraction of 300 molecules costs 1-3 s per network on a
#: 2-core CPU (SevenNet-0, CHGNet and SO3Net take 6-21 s each and run at ``scale="full"``).
BOOK_MODELS = ("mace-qm9-gap", "mace-qm9-U0", "mace-qm9-random",
               "painn-qm9-gap", "painn-qm9-U0", "painn-qm9-random",
               "schnet-qm9-gap", "schnet-qm9-U0", "schnet-qm9-random",
               "so3lr", "so3lr-random")

_HILL = {6: "C", 1: "H", 7: "N", 8: "O", 9: "F"}


def formula(numbers) -> str:
    """The molecular formula of one structure, carbon and hydrogen first, counts always written.

    Examples
    --------
    >>> formula([6, 8, 1, 1, 6, 1, 1, 1, 1, 8])
    'C2H6O2'
    >>> formula([7, 1, 1, 1])
    'H3N1'
    """
    c = Counter(int(z) for z in numbers)
    order = [z for z in _HILL if z in c] + sorted(z for z in c if z not in _HILL)
    return "".join(f"{_HILL.get(z, f'Z{z}')}{c[z]}" for z in order)


def families(split_rows=None, formulas=None) -> pd.DataFrame:
    """QM9's same-formula families, largest first (by their size in all of QM9).

    Parameters
    ----------
    split_rows : array_like of int, optional
        QM9 rows of the held-out split (default :func:`cpd_core.training.probe_rows`, the test split
        none of the networks trained here saw).
    formulas : numpy.ndarray of str, optional
        The formula of every QM9 row (:func:`all_formulas`), if already computed.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``formula``: ``n_qm9`` (members in all 130,831 molecules) and ``n_test`` (members in
        ``split_rows``), sorted by ``n_qm9`` descending, then formula.
    """
    from cpd_core.datasets.qm9 import flat_arrays
    from cpd_core.training import probe_rows

    of_row = all_formulas(flat_arrays()) if formulas is None else np.asarray(formulas)
    split_rows = probe_rows() if split_rows is None else np.asarray(split_rows)
    out = pd.DataFrame({"n_qm9": pd.Series(of_row).value_counts(),
                        "n_test": pd.Series(of_row[split_rows]).value_counts()}).fillna(0).astype(int)
    out.index.name = "formula"
    return out.reset_index().sort_values(["n_qm9", "formula"], ascending=[False, True]).set_index("formula")


def all_formulas(arrays: dict) -> np.ndarray:
    """The formula of every molecule of flat QM9-style arrays (``n_atoms`` and ``z``,
    :func:`~cpd_core.datasets.qm9.flat_arrays`); every molecule has at least one atom.

    Examples
    --------
    >>> all_formulas({"n_atoms": [3, 2, 3], "z": [8, 1, 1, 1, 9, 1, 8, 1]}).tolist()
    ['H2O1', 'H1F1', 'H2O1']
    """
    n_atoms, z = np.asarray(arrays["n_atoms"]), np.asarray(arrays["z"])
    starts = np.concatenate([[0], np.cumsum(n_atoms)[:-1]])
    elements = np.unique(z)
    counts = np.column_stack([np.add.reduceat((z == e).astype(np.int64), starts) for e in elements])
    kinds, which = np.unique(counts, axis=0, return_inverse=True)
    names = np.array([formula(np.repeat(elements, k)) for k in kinds])
    return names[np.ravel(which)]


def family_rows(k: int = 1, n: int | None = None, seed: int = 0, split_rows=None) -> tuple[np.ndarray, pd.DataFrame]:
    """QM9 rows of the held-out split's members of the ``k`` largest families, at most ``n`` per family.

    Parameters
    ----------
    k : int
        How many families (ranked by their size in all of QM9, :func:`families`).
    n : int or None
        At most this many members of each family, drawn without replacement with
        ``numpy.random.default_rng(seed)``; ``None`` takes every member in the split.
    split_rows : array_like of int, optional
        Default the test split (:func:`cpd_core.training.probe_rows`); checked to be held out.

    Returns
    -------
    rows : numpy.ndarray of int64
        Sorted QM9 row positions (pass to :func:`~cpd_core.datasets.qm9.load_qm9` as ``rows``).
    table : pandas.DataFrame
        The ``k`` families, largest first, as :func:`families` gives them.
    """
    from cpd_core.datasets.qm9 import flat_arrays
    from cpd_core.training import assert_held_out, probe_rows

    if isinstance(k, bool) or int(k) != k or k < 1:
        raise InputError(f"k (families) must be a whole number >= 1, got {k}")
    split_rows = probe_rows() if split_rows is None else np.asarray(split_rows, dtype=np.int64)
    assert_held_out(split_rows)
    of_row = all_formulas(flat_arrays())
    table = families(split_rows, of_row).iloc[:int(k)]
    of_split = of_row[split_rows]
    rng = np.random.default_rng(seed)
    picked = []
    for f in table.index:
        members = split_rows[of_split == f]
        if n is not None and len(members) > n:
            members = members[np.sort(rng.choice(len(members), size=int(n), replace=False))]
        picked.append(members)
    return np.sort(np.concatenate(picked)), table


def shuffled_within(y, group, seed: int = 0) -> np.ndarray:
    """``y`` permuted within each group (seeded): every group keeps its values, their order is cut.

    Examples
    --------
    >>> y = np.array([1.0, 2.0, 3.0, 10.0, 20.0]); g = np.array(["a", "a", "a", "b", "b"])
    >>> out = shuffled_within(y, g, seed=1)
    >>> sorted(out[:3].tolist()), sorted(out[3:].tolist())
    ([1.0, 2.0, 3.0], [10.0, 20.0])
    """
    y, group = np.asarray(y, dtype=np.float64), np.asarray(group)
    rng = np.random.default_rng(seed)
    out = y.copy()
    for g in pd.unique(group):
        idx = np.flatnonzero(group == g)
        out[idx] = y[idx[rng.permutation(len(idx))]]
    return out


class PairedAccuracy:
    r"""Pairwise ordering accuracy of out-of-fold predictions, with a bootstrap over molecules.

    Built once for one target on one set of molecules (``y``, their held-out ``fold_of`` and family
    ``group``); every prediction scored with it uses the same bootstrap replicates, so differences are
    paired. See the module docstring for the pairs and the statistic.

    Parameters
    ----------
    y : array_like, shape (n,)
        True values.
    fold_of : array_like of int, shape (n,)
        Held-out fold of each molecule (:attr:`cpd_core.CPDResult.fold_of`).
    group : array_like, shape (n,)
        Family of each molecule; only pairs within one family (and one fold) are scored.
    n_boot, seed, level
        Bootstrap replicates, their seed and the interval's coverage.

    Attributes
    ----------
    n_pairs : int
        Scored pairs (true gaps differ).
    n_tied : int
        Pairs of the same fold and family left out because their true gaps are equal.

    Examples
    --------
    >>> y = np.arange(20.0); fold = np.arange(20) % 2; fam = np.zeros(20)
    >>> acc = PairedAccuracy(y, fold, fam, n_boot=200)
    >>> acc.accuracy(y), acc.accuracy(-y), acc.accuracy(np.zeros(20)), acc.n_pairs
    (1.0, 0.0, 0.5, 90)
    >>> acc.interval(np.zeros(20))
    (0.5, 0.5, 0.5)
    """

    def __init__(self, y, fold_of, group, n_boot: int = 1000, seed: int = 0, level: float = 0.95):
        y = np.asarray(y, dtype=np.float64)
        fold_of, group = np.asarray(fold_of), np.asarray(group)
        if not (len(y) == len(fold_of) == len(group)):
            raise InputError(f"y, fold_of and group must have one value per molecule, got {len(y)}, "
                             f"{len(fold_of)}, {len(group)}")
        if n_boot < 1 or not 0 < level < 1:
            raise InputError(f"need n_boot >= 1 and 0 < level < 1, got {n_boot}, {level}")
        self.y, self.n, self.n_boot, self.seed, self.level = y, len(y), int(n_boot), seed, level
        self.fold_of, self.group = fold_of, group
        rng = np.random.default_rng(seed)
        self._cells = []  # (rows, sign of y_i - y_j, bootstrap multiplicities (n_boot, n_cell))
        self.n_pairs = self.n_tied = 0
        cells = pd.DataFrame({"f": fold_of, "g": group}).groupby(["f", "g"], sort=True).indices
        for key in sorted(cells, key=str):
            idx = np.sort(cells[key])
            if len(idx) < 2:
                continue
            sy = np.sign(y[idx][:, None] - y[idx][None, :])
            draws = rng.integers(0, len(idx), size=(self.n_boot, len(idx)))
            weights = np.zeros((self.n_boot, len(idx)))
            np.add.at(weights, (np.arange(self.n_boot)[:, None], draws), 1.0)
            pairs = int(np.abs(sy).sum()) // 2
            self.n_pairs += pairs
            self.n_tied += len(idx) * (len(idx) - 1) // 2 - pairs
            self._cells.append((idx, sy, weights))
        if self.n_pairs == 0:
            raise InputError("no pair of molecules of the same fold and family with different values: "
                             "nothing to order")

    def subset(self, mask) -> "PairedAccuracy":
        """The same scorer on the molecules ``mask`` selects (e.g. one family), with its own replicates."""
        mask = np.asarray(mask, dtype=bool)
        return PairedAccuracy(self.y[mask], self.fold_of[mask], self.group[mask], self.n_boot, self.seed, self.level)

    def _terms(self, pred, weighted: bool):
        pred = np.asarray(pred, dtype=np.float64)
        if pred.shape != self.y.shape:
            raise InputError(f"predictions have shape {pred.shape}; expected {self.y.shape}")
        if not np.isfinite(pred).all():
            raise InputError("predictions contain NaN or inf (a probe that was not run?)")
        num = np.zeros(self.n_boot if weighted else 1)
        den = np.zeros_like(num)
        for idx, sy, w in self._cells:
            sp = np.sign(pred[idx][:, None] - pred[idx][None, :])
            score = 0.5 * (np.abs(sy) + sy * sp)  # 1 right, 1/2 predicted tie, 0 wrong; 0 where y ties
            if weighted:
                num += np.einsum("bi,ij,bj->b", w, score, w)
                den += np.einsum("bi,ij,bj->b", w, np.abs(sy), w)
            else:
                num += score.sum()
                den += np.abs(sy).sum()
        return num, den

    def accuracy(self, pred) -> float:
        """Fraction of scored pairs that ``pred`` orders as ``y`` does (a predicted tie counts 1/2)."""
        num, den = self._terms(pred, weighted=False)
        return float(num[0] / den[0])

    def replicates(self, pred) -> np.ndarray:
        """The accuracy on each bootstrap replicate, shape ``(n_boot,)``."""
        num, den = self._terms(pred, weighted=True)
        return np.divide(num, den, out=np.full_like(num, np.nan), where=den > 0)

    def interval(self, pred) -> tuple[float, float, float]:
        """``(accuracy, lo, hi)``: the point value and its ``level`` percentile interval."""
        from cpd_core.intervals import percentile_interval

        return (self.accuracy(pred), *percentile_interval(self.replicates(pred), self.level))

    def compare(self, pred_a, pred_b, what: str = "pairwise accuracy"):
        """Paired difference ``accuracy(a) − accuracy(b)`` on the same replicates
        (a :class:`~cpd_core.intervals.Comparison`)."""
        from cpd_core.intervals import Comparison, percentile_interval

        a, b = self.accuracy(pred_a), self.accuracy(pred_b)
        lo, hi = percentile_interval(self.replicates(pred_a) - self.replicates(pred_b), self.level)
        return Comparison(what, a, b, a - b, lo, hi, self.level, self.n)


def isomer_models(which: str | Sequence[str] = "book-isomers") -> list[str]:
    """A named model set (:data:`MODEL_SETS`) or the list given.

    ``"book-isomers"``: :data:`BOOK_MODELS`. ``"all"``: every offline model of the models chapter
    (:func:`~cpd_core.experiments.model_gradient.default_models`) and the three twins of every
    architecture trained here (:func:`~cpd_core.experiments.task_alignment.alignment_models`).
    """
    if not isinstance(which, str):
        return list(which)
    if which == "book-isomers":
        return list(BOOK_MODELS)
    if which == "all":
        from cpd_core.experiments.model_gradient import default_models
        from cpd_core.experiments.task_alignment import alignment_models

        return default_models("offline") + alignment_models()
    raise InputError(f"unknown model set {which!r}; choose one of {MODEL_SETS} or list the models")


def twin_of(model: str, models: Sequence[str]) -> str | None:
    """The random-init twin of ``model`` among ``models`` (a network trained here on the gap or U0: its
    architecture's ``-qm9-random``), or ``None``.

    Examples
    --------
    >>> twin_of("mace-qm9-U0", ["mace-qm9-U0", "mace-qm9-random"]), twin_of("so3lr", ["so3lr", "so3lr-random"])
    ('mace-qm9-random', 'so3lr-random')
    >>> twin_of("so3lr", ["so3lr"]) is None
    True
    """
    from cpd_core.models import REGISTRY

    if "-qm9-" in model:
        twin = model.rpartition("-qm9-")[0] + "-qm9-random"
        return twin if twin in models and twin != model else None
    for m in models:
        if REGISTRY[m].status == "random-init" and REGISTRY[m].twin_of == model:
            return m
    return None


def is_twin(model: str) -> bool:
    """Whether ``model`` is a random-init twin."""
    from cpd_core.models import REGISTRY

    return REGISTRY[model].status == "random-init"


@dataclass
class IsomerRun:
    """What :func:`isomer_benchmark` computed.

    Attributes
    ----------
    summary : pandas.DataFrame
        One row per (model, seed, features, probe, target): pairwise ``accuracy`` with ``accuracy_lo``
        and ``accuracy_hi`` (95 %), the block probed (chosen most often over outer folds), and the
        nested ridge R²_geom of the gap beside it. ``target`` is :data:`TARGET` or :data:`SHUFFLED`.
    by_family : pandas.DataFrame
        Residual-ridge accuracy of the gap per (model, seed, family), with intervals.
    predictions : dict
        ``(model, seed, features, probe, target)`` → out-of-fold predictions.
    scorer : PairedAccuracy
        Scores the gap's predictions (paired replicates); ``control_scorer`` the shuffled gap's.
    families : pandas.DataFrame
        The families probed: members probed, members in the split and in all of QM9, pairs scored.
    ids, group : numpy.ndarray
        QM9 ids and the family of the probed molecules.
    """

    summary: pd.DataFrame
    by_family: pd.DataFrame
    predictions: dict = field(repr=False)
    scorer: PairedAccuracy = field(repr=False)
    control_scorer: PairedAccuracy = field(repr=False)
    families: pd.DataFrame
    ids: np.ndarray = field(repr=False)
    group: np.ndarray = field(repr=False)
    cv: int = 5

    @property
    def n(self) -> int:
        """Molecules probed."""
        return len(self.ids)

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(self.summary["model"]))

    def compare(self, a: tuple, b: tuple):
        """Paired difference of the gap's accuracy between two keys of :attr:`predictions` (same molecules)."""
        return self.scorer.compare(self.predictions[a], self.predictions[b])


def score_predictions(scorer: PairedAccuracy, oof: dict, info: dict) -> list[dict]:
    """One summary row per ``(features, probe)`` → out-of-fold predictions, scored by ``scorer``."""
    rows = []
    for (feats, probe), pred in oof.items():
        acc, lo, hi = scorer.interval(pred)
        rows.append({**info, "features": feats, "probe": probe, "accuracy": acc, "accuracy_lo": lo,
                     "accuracy_hi": hi})
    return rows


def _check_probes(probes):
    unknown = [p for p in probes if p not in ("ridge", "mlp", "gbt")]
    if unknown:
        raise InputError(f"unknown probe(s) {unknown}; choose among ridge, mlp, gbt")


def isomer_jobs(blocks, C, ys: dict, scorers: dict, probes: Sequence[str] = ("ridge",), cv: int = 5, seed: int = 0,
                info: dict | None = None, cache: bool = True) -> tuple[list[dict], dict, list]:
    """The isomer probes of one representation: summary rows, out-of-fold predictions, pending nonlinear probes.

    Every block is scanned for every target of ``ys`` (:data:`TARGET` and :data:`SHUFFLED`) and the
    block is chosen on inner folds for each (:func:`cpd_core.scan_blocks`); on it the composition
    part, ridge on the residual and ridge on the raw features are scored by ``scorers[target]``
    (:class:`PairedAccuracy`, built on the folds :func:`~cpd_core.decomposition.fold_labels` gives for
    ``cv`` and ``seed``). Nonlinear ``probes`` on the gap's chosen blocks are returned pending:
    ``(key, info, Pending)``, for :func:`finish_pending` after :func:`cpd_core.decomposition.run_pending`.

    Returns
    -------
    rows : list of dict
    predictions : dict
        ``(features, probe, target)`` → out-of-fold predictions.
    pending : list
    """
    from cpd_core.selection import scan_blocks

    _check_probes(probes)
    scan = scan_blocks(blocks, C, ys, cv=cv, seed=seed, cache=cache)
    rows, predictions, pending = [], {}, []
    for target in ys:
        if not np.array_equal(scan.fold_of, scorers[target].fold_of):
            raise InputError("the scorers were built on other folds than the scan's: use fold_labels(n, cv, seed)")
        choice = scan.choose(target)
        res = choice.result
        mine = {("composition", "least squares"): res.oof["comp"], ("residual", "ridge"): res.oof["geom"],
                ("raw", "ridge"): res.oof["full"]}
        extra = {**(info or {}), "target": target, "block": choice.block, "r2_geom": res.r2_geom,
                 "r2_geom_lo": res.ci["r2_geom"][0], "r2_geom_hi": res.ci["r2_geom"][1]}
        rows += score_predictions(scorers[target], mine, extra)
        predictions.update({(*key, target): p for key, p in mine.items()})
        if target == TARGET:
            pending += [(("residual", p, target), extra, choice.pending(p, full=False)) for p in probes if p != "ridge"]
    return rows, predictions, pending


def finish_pending(pending: list, scorers: dict, predictions: dict, done: list) -> list[dict]:
    """Summary rows of the nonlinear probes of ``pending`` (``(key, info, job)``), run as ``done``; their
    out-of-fold predictions are added to ``predictions`` under ``key``."""
    rows = []
    for (key, info, _), res in zip(pending, done):
        predictions[key] = res.oof["geom"]
        info = {**info, "r2_geom": res.r2_geom, "r2_geom_lo": res.ci["r2_geom"][0], "r2_geom_hi": res.ci["r2_geom"][1]}
        rows += score_predictions(scorers[key[-1]], {(key[-3], key[-2]): res.oof["geom"]}, info)
    return rows


def probe_isomers(blocks, C, y, group, probes: Sequence[str] = ("ridge",), cv: int = 5, seed: int = 0,
                  n_boot: int = 1000, cache: bool = False) -> tuple[pd.DataFrame, dict, PairedAccuracy]:
    """:func:`isomer_jobs` on arrays: any representation's blocks, a composition matrix, the gap and families.

    The chapter's procedure without models or QM9, for a user's own features (and the tests).

    Returns
    -------
    summary : pandas.DataFrame
        One row per (features, probe, target), as in :class:`IsomerRun`.
    predictions : dict
        ``(features, probe, target)`` → out-of-fold predictions.
    scorer : PairedAccuracy
        The gap's scorer (for paired comparisons of ``predictions``).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = rng.normal(size=60); group = np.repeat(["a", "b"], 30)
    >>> C = np.column_stack([(group == "a") * 2.0 + 5, np.ones(60)])
    >>> s, _, _ = probe_isomers({"exact": np.column_stack([y, rng.normal(size=60)])}, C, y, group, cv=3, n_boot=50)
    >>> s.set_index(["features", "target"])["accuracy"].round(2).to_dict()[("composition", "gap")]
    0.5
    """
    from cpd_core.decomposition import fold_labels, run_pending

    y, group = np.asarray(y, dtype=np.float64), np.asarray(group)
    ys = {TARGET: y, SHUFFLED: shuffled_within(y, group, seed)}
    fold_of = fold_labels(len(y), cv, seed)
    scorers = {t: PairedAccuracy(v, fold_of, group, n_boot=n_boot, seed=seed) for t, v in ys.items()}
    rows, predictions, pending = isomer_jobs(blocks, C, ys, scorers, probes, cv=cv, seed=seed, cache=cache)
    rows += finish_pending(pending, scorers, predictions, run_pending([job for _, _, job in pending]))
    return pd.DataFrame(rows), predictions, scorers[TARGET]


def isomer_benchmark(models: str | Sequence[str] = "book-isomers", families: int = 1, n: int | None = 300,
                     seed: int = 0, probes: Sequence[str] = ("ridge",), twin_seeds: Sequence[int] = (0,),
                     cv: int = 5, n_boot: int = 1000, device: str = "auto", progress: bool = False) -> IsomerRun:
    """Pairwise gap ordering within same-formula families of the held-out test split, for every model.

    Parameters
    ----------
    models : str or sequence of str
        Registry names or a named set (:func:`isomer_models`).
    families : int
        The ``families`` largest same-formula families of QM9 (:func:`families`).
    n : int or None
        At most this many test-split members per family (seeded); ``None`` every member.
    probes : sequence of str
        ``"ridge"`` (always run: it chooses the block) and optionally ``"mlp"``, ``"gbt"`` on the residual
        of each outer fold's chosen block.
    twin_seeds : sequence of int
        Seeds of the random-init twins.
    cv, seed, n_boot
        Outer folds, the seed of folds, subset, shuffle and bootstrap, and bootstrap replicates.

    Returns
    -------
    IsomerRun
    """
    from tqdm import tqdm

    from cpd_core.decomposition import fold_labels, run_pending
    from cpd_core.experiments.probe_set import probe_set

    _check_probes(probes)
    models = isomer_models(models)
    rows, fam = family_rows(families, n=n, seed=seed)
    chosen = fam.index.tolist()
    ps = probe_set(models, n=None, seed=seed, rows=rows)
    group = np.array([formula(z) for z in ps.data.numbers])
    y = ps.targets([TARGET])[TARGET]
    ys = {TARGET: y, SHUFFLED: shuffled_within(y, group, seed)}
    fold_of = fold_labels(len(y), cv, seed)
    scorers = {t: PairedAccuracy(v, fold_of, group, n_boot=n_boot, seed=seed) for t, v in ys.items()}
    summary, predictions, pending = [], {}, []
    for name, s in tqdm(ps.runs(tuple(twin_seeds)), desc="isomer models", disable=not progress):
        blocks = ps.blocks(name, s, device=device, progress=progress)
        rows_m, preds_m, pending_m = isomer_jobs(blocks, ps.C, ys, scorers, probes, cv=cv, seed=seed,
                                                 info={"model": name, "seed": s, "random_init": is_twin(name)})
        summary += rows_m
        predictions.update({(name, s, *key): p for key, p in preds_m.items()})
        pending += [((name, s, *key), info, job) for key, info, job in pending_m]
        del blocks
    done = run_pending([job for _, _, job in pending], progress="nonlinear probes" if progress else None)
    summary += finish_pending(pending, scorers, predictions, done)
    scorer, control = scorers[TARGET], scorers[SHUFFLED]
    by_family = []
    if len(chosen) > 1:
        per = {f: scorer.subset(group == f) for f in chosen}
        for (name, s, feats, probe, target), pred in predictions.items():
            if feats == "residual" and probe == "ridge" and target == TARGET:
                for f, sc in per.items():
                    acc, lo, hi = sc.interval(pred[group == f])
                    by_family.append({"model": name, "seed": s, "family": f, "accuracy": acc, "accuracy_lo": lo,
                                      "accuracy_hi": hi, "pairs": sc.n_pairs})
    fam = families_table(fam, y, group, scorer)
    return IsomerRun(pd.DataFrame(summary), pd.DataFrame(by_family), predictions, scorer, control, fam,
                     ps.data.ids, group, cv)


def families_table(table: pd.DataFrame, y, group, scorer: PairedAccuracy) -> pd.DataFrame:
    """The probed families (``table`` from :func:`family_rows`): members probed, in the test split and in
    all of QM9, the gap's range, and the pairs scored and left out (equal gaps)."""
    chosen = table.index.tolist()
    table = table.copy()
    table.insert(0, "probed", [int((group == f).sum()) for f in chosen])
    per = [scorer.subset(group == f) for f in chosen]
    table["pairs scored"] = [sc.n_pairs for sc in per]
    table["pairs with equal gaps"] = [sc.n_tied for sc in per]
    table["gap range (eV)"] = [f"{y[group == f].min():.2f}–{y[group == f].max():.2f}" for f in chosen]
    return table.rename(columns={"n_qm9": "in QM9", "n_test": "in test split"})


def _row(run: IsomerRun, model: str, seed: int, features: str, probe: str, target: str = TARGET) -> pd.Series | None:
    s = run.summary
    hit = s[(s["model"] == model) & (s["seed"] == seed) & (s["features"] == features) & (s["probe"] == probe)
            & (s["target"] == target)]
    return hit.iloc[0] if len(hit) else None


def accuracy_table(run: IsomerRun) -> pd.DataFrame:
    """One row per (model, seed): pairwise accuracy [95 % interval] of the gap from the composition part,
    ridge on the residual and on the raw features, each nonlinear probe run, and the shuffled-gap control
    (ridge on the residual); the block and the nested ridge R²_geom of the gap beside them."""
    s = run.summary
    nonlinear = [p for p in ("mlp", "gbt") if (s["probe"] == p).any()]
    columns = [("composition", "least squares", TARGET, "composition"), ("residual", "ridge", TARGET, "residual ridge"),
               ("raw", "ridge", TARGET, "raw ridge")]
    columns += [("residual", p, TARGET, f"residual {p}") for p in nonlinear]
    columns += [("residual", "ridge", SHUFFLED, "shuffled gap")]
    rows = []
    for (model, seed), _ in s.groupby(["model", "seed"], sort=False):
        main = _row(run, model, seed, "residual", "ridge")
        row = {"model": model, "seed": seed, "block": main["block"]}
        for feats, probe, target, label in columns:
            r = _row(run, model, seed, feats, probe, target)
            row[label], row[f"{label}_lo"], row[f"{label}_hi"] = (
                (r["accuracy"], r["accuracy_lo"], r["accuracy_hi"]) if r is not None else (np.nan,) * 3)
        row["r2_geom"], row["r2_geom_lo"], row["r2_geom_hi"] = main["r2_geom"], main["r2_geom_lo"], main["r2_geom_hi"]
        rows.append(row)
    out = pd.DataFrame(rows)
    return out if out["seed"].nunique() > 1 else out.drop(columns="seed")


def isomer_contrasts(run: IsomerRun, raw: bool | None = None) -> pd.DataFrame:
    """Paired differences of the gap's residual-ridge accuracy (same molecules, folds and replicates).

    Each model against its random-init twin (seed 0); each architecture's gap-trained network against
    its U0-trained one; the most accurate model that is not a random-init twin against the next; each
    nonlinear probe against ridge; and with ``raw`` (default: when more than one family was probed;
    within one family both give the same predictions) the residual against the raw features.
    """
    raw = len(run.families) > 1 if raw is None else raw
    s = run.summary
    models = run.models
    main = s[(s["features"] == "residual") & (s["probe"] == "ridge") & (s["target"] == TARGET) & (s["seed"] == 0)]
    acc = main.set_index("model")["accuracy"]
    key = lambda m, feats="residual", probe="ridge": (m, 0, feats, probe, TARGET)  # noqa: E731
    pairs = []
    for m in models:
        twin = None if is_twin(m) else twin_of(m, models)
        if twin is not None:
            pairs.append(("model − random-init twin", m, twin, key(m), key(twin)))
    for m in models:
        if m.endswith("-qm9-gap") and m.replace("-qm9-gap", "-qm9-U0") in models:
            u0 = m.replace("-qm9-gap", "-qm9-U0")
            pairs.append(("gap-trained − U0-trained", m, u0, key(m), key(u0)))
    ranked = acc[[not is_twin(m) for m in acc.index]].sort_values(ascending=False)
    if len(ranked) > 1:
        a, b = ranked.index[:2]
        pairs.append(("best − runner-up", a, b, key(a), key(b)))
    for m in models:
        if raw:
            pairs.append(("residual − raw features (ridge)", m, m, key(m), key(m, "raw")))
        for p in ("mlp", "gbt"):
            if key(m, probe=p) in run.predictions:
                pairs.append((f"residual {p} − residual ridge", m, m, key(m, probe=p), key(m)))
    rows = []
    for kind, a, b, ka, kb in pairs:
        c = run.compare(ka, kb)
        rows.append({"comparison": kind, "A": a if ka[2:4] == ("residual", "ridge") else f"{a} ({ka[2]} {ka[3]})",
                     "B": b if kb[2:4] == ("residual", "ridge") else f"{b} ({kb[2]} {kb[3]})",
                     "accuracy A": c.a, "accuracy B": c.b, "difference": c.diff,
                     "difference_lo": c.lo, "difference_hi": c.hi, "resolved": c.resolved})
    return pd.DataFrame(rows)


#: Bar colours of :func:`isomer_plot`.
PLOT_COLORS = {"residual ridge": "#1f77b4", "raw ridge": "#9ecae1", "random-init twin": "#ff7f0e",
               "shuffled gap": "#bbbbbb"}


def isomer_plot(run: IsomerRun):
    """Pairwise accuracy of the gap per model (twins of seed 0 beside their model): ridge on the residual,
    on the raw features, the random-init twin's residual, and the shuffled-gap control, with 95 %
    intervals and the chance line (1/2)."""
    import matplotlib.pyplot as plt

    models = [m for m in run.models if not is_twin(m)] or run.models
    bars = []
    for m in models:
        twin = twin_of(m, run.models)
        bars.append([_row(run, m, 0, "residual", "ridge"), _row(run, m, 0, "raw", "ridge"),
                     _row(run, twin, 0, "residual", "ridge") if twin else None,
                     _row(run, m, 0, "residual", "ridge", SHUFFLED)])
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(models) + 1.5), 3.8))
    width = 0.8 / len(PLOT_COLORS)
    x = np.arange(len(models))
    for k, label in enumerate(PLOT_COLORS):
        pos = x + (k - (len(PLOT_COLORS) - 1) / 2) * width
        rows = [b[k] for b in bars]
        v = np.array([r["accuracy"] if r is not None else np.nan for r in rows])
        lo = np.array([r["accuracy_lo"] if r is not None else np.nan for r in rows])
        hi = np.array([r["accuracy_hi"] if r is not None else np.nan for r in rows])
        ax.bar(pos, v - 0.4, width, bottom=0.4, color=PLOT_COLORS[label], label=label)
        ax.errorbar(pos, v, yerr=[v - lo, hi - v], fmt="none", ecolor="black", elinewidth=0.8, capsize=2)
    ax.axhline(0.5, color="black", lw=1, ls="--", label="chance (composition)")
    ax.set_xticks(x, models, rotation=30, ha="right")
    ax.set(ylim=(0.4, 1.0), ylabel="pairwise accuracy of the gap order")
    ax.legend(loc="upper center", ncol=3, frameon=False, fontsize=8, bbox_to_anchor=(0.5, 1.2))
    fig.tight_layout()
    plt.close(fig)
    return fig


def _fmt(r) -> str:
    from cpd_core.report import format_interval

    return format_interval(r["accuracy"], r["accuracy_lo"], r["accuracy_hi"])


def best_trained(run: IsomerRun) -> pd.Series:
    """The summary row of the highest residual-ridge gap accuracy among models that are not random-init twins."""
    s = run.summary
    main = s[(s["features"] == "residual") & (s["probe"] == "ridge") & (s["target"] == TARGET) & (s["seed"] == 0)
             & ~s["random_init"]]
    if main.empty:
        raise InputError("no trained model in this run")
    return main.loc[main["accuracy"].idxmax()]


def isomer_facts(run: IsomerRun) -> dict:
    """The numbers the isomer chapter's prose quotes."""
    from cpd_core.paper import paper_value

    s = run.summary
    gap = s[s["target"] == TARGET]
    comp = gap[gap["features"] == "composition"]
    res = gap[(gap["features"] == "residual") & (gap["probe"] == "ridge") & (gap["seed"] == 0)]
    trained, twins = res[~res["random_init"]], res[res["random_init"]]
    ctrl = s[(s["target"] == SHUFFLED) & (s["features"] == "residual") & (s["probe"] == "ridge")]
    fam = run.families
    best = best_trained(run)
    c = isomer_contrasts(run, raw=True)
    facts = {
        "n_mol": run.n, "n_models": len(run.models), "n_trained": len(trained), "n_twins": len(twins),
        "families": ", ".join(fam.index), "n_families": len(fam),
        "family_sizes": "; ".join(f"{f}: {r['probed']} probed of {r['in test split']} in the test split "
                                  f"({r['in QM9']:,} in QM9)" for f, r in fam.iterrows()),
        "n_pairs": f"{run.scorer.n_pairs:,}", "n_tied": f"{run.scorer.n_tied:,}",
        "probes": ", ".join(dict.fromkeys(gap[gap["features"] == "residual"]["probe"])),
        "paper_accuracy": f"{paper_value('isomer_accuracy', '-'):.3f}",
        "comp_min": f"{comp['accuracy'].min():.3f}", "comp_max": f"{comp['accuracy'].max():.3f}",
        "comp_interval": f"[{comp['accuracy_lo'].min():.3f}, {comp['accuracy_hi'].max():.3f}]",
        "best_model": best["model"], "best_block": best["block"], "best_accuracy": _fmt(best),
        "trained_range": f"{trained['accuracy'].min():.3f} to {trained['accuracy'].max():.3f}",
        "twin_range": f"{twins['accuracy'].min():.3f} to {twins['accuracy'].max():.3f}" if len(twins) else "not run",
        "control_range": f"{ctrl['accuracy'].min():.3f} to {ctrl['accuracy'].max():.3f}",
        "control_off_chance": f"{int(((ctrl['accuracy_lo'] > 0.5) | (ctrl['accuracy_hi'] < 0.5)).sum())} "
                              f"of {len(ctrl)}",
    }
    raw = c[c["comparison"] == "residual − raw features (ridge)"]
    facts["raw_max_abs_diff"] = f"{raw['difference'].abs().max():.3f}"
    facts["raw_resolved"] = f"{int(raw['resolved'].sum())} of {len(raw)}"
    for kind, name in (("model − random-init twin", "twin"), ("gap-trained − U0-trained", "gap_u0")):
        sub = c[c["comparison"] == kind]
        facts[f"{name}_above"] = ", ".join(f"{a} (+{d:.3f} [{lo:+.3f}, {hi:+.3f}])" for a, d, lo, hi in zip(
            sub["A"], sub["difference"], sub["difference_lo"], sub["difference_hi"]) if lo > 0) or "none"
        facts[f"{name}_unresolved"] = ", ".join(a for a, r in zip(sub["A"], sub["resolved"]) if not r) or "none"
        facts[f"{name}_below"] = ", ".join(a for a, d, r in zip(sub["A"], sub["difference"], sub["resolved"])
                                           if r and d < 0) or "none"
    top = c[c["comparison"] == "best − runner-up"]
    facts["best_vs_next"] = (f"{top['A'].iloc[0]} − {top['B'].iloc[0]}: {top['difference'].iloc[0]:+.3f} "
                             f"[{top['difference_lo'].iloc[0]:+.3f}, {top['difference_hi'].iloc[0]:+.3f}], "
                             + ("resolved" if top["resolved"].iloc[0] else "not resolved at this scale")
                             if len(top) else "only one trained model")
    mace = res[res["model"] == "mace-qm9-gap"]
    facts["mace_accuracy"] = _fmt(mace.iloc[0]) if len(mace) else "not in this run"
    nonlin = gap[(gap["features"] == "residual") & gap["probe"].isin(["mlp", "gbt"])]
    facts["nonlinear"] = ("; ".join(f"{p}: {g['accuracy'].min():.3f} to {g['accuracy'].max():.3f}"
                                    for p, g in nonlin.groupby("probe")) if len(nonlin) else "not run at this scale")
    return facts


def isomer_measurements(run: IsomerRun) -> list:
    """The scorecard's measurements of this chapter: the best trained model's and MACE's (trained here on the
    gap) residual-ridge accuracy, and the composition part's accuracy."""
    from cpd_core.paper import paper_value
    from cpd_core.scorecard import Measurement

    reason = (f"the paper does not state its pair protocol (which pairs, how ties and folds are handled) nor the "
              f"model behind {100 * paper_value('isomer_accuracy', '-'):.1f} %; ours: pairs of held-out molecules "
              f"within one fold and family, ridge on a block chosen on inner folds")
    fams = ", ".join(run.families.index)
    best = best_trained(run)
    out = [Measurement("isomer_accuracy", float(best["accuracy"]), float(best["accuracy_lo"]),
                       float(best["accuracy_hi"]), run.n,
                       f"{best['model']} (the highest of {len([m for m in run.models if not is_twin(m)])} models that "
                       f"are not random-init), block {best['block']}, ridge on the residual, families {fams}, "
                       f"held-out test split, {run.scorer.n_pairs:,} pairs", comparable=False, reason=reason)]
    mace = _row(run, "mace-qm9-gap", 0, "residual", "ridge")
    if mace is not None and best["model"] != "mace-qm9-gap":
        out.append(Measurement("isomer_accuracy", float(mace["accuracy"]), float(mace["accuracy_lo"]),
                               float(mace["accuracy_hi"]), run.n,
                               f"mace-qm9-gap (trained here), block {mace['block']}, ridge on the residual, "
                               f"families {fams}, held-out test split", comparable=False,
                               reason=reason + "; this MACE was trained here briefly on a CPU, not to convergence"))
    s = run.summary
    comp = s[(s["target"] == TARGET) & (s["features"] == "composition") & (s["seed"] == 0)]
    first = comp.iloc[0]
    out.append(Measurement("isomer_composition_chance", float(first["accuracy"]), float(first["accuracy_lo"]),
                           float(first["accuracy_hi"]), run.n,
                           f"least squares on element counts + intercept (the composition part of CPD, the same "
                           f"for every model), families {fams}, held-out test split, {run.scorer.n_pairs:,} pairs"))
    return out


__all__ = ["BOOK_MODELS", "FEATURES", "IsomerRun", "MODEL_SETS", "PairedAccuracy", "SHUFFLED", "TARGET",
           "accuracy_table", "all_formulas", "best_trained", "families", "families_table", "family_rows", "formula",
           "is_twin", "isomer_benchmark", "isomer_contrasts", "isomer_facts", "isomer_measurements", "isomer_jobs",
           "isomer_models", "isomer_plot", "finish_pending", "probe_isomers", "shuffled_within", "twin_of"]
