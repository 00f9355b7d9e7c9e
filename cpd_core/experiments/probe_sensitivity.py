r"""Probe sensitivity: the same ridge R²_geom under every choice a reader could make, and under the author's toolkit.

A ridge R²_geom is a number produced by a protocol, and the protocol has more choices than the
method's definition fixes. This module scores one block of features under a :class:`Protocol`, a
point in the space of those choices, with CPD's defaults (:func:`cpd_core.cpd`) as the origin:

=====================  ==============================  =================================================
choice                 ours (:func:`~cpd_core.cpd`)    alternatives
=====================  ==============================  =================================================
``scaler``             ``"clipped"``                   ``"zscore"`` (scikit-learn ``StandardScaler``), ``"none"``
``near_constant``      ``"drop"`` (rtol rule)          ``"keep"``
``alpha``              ``None``: chosen inside the     a fixed penalty (scikit-learn ``Ridge()``: 1.0)
                       training fold (inner folds)
``projection``         ``"train"`` (exact, training    ``"all"`` (exact, all rows); ``"ridge-all"``:
                       folds)                          ``Ridge(composition_alpha)`` on standardised
                                                       composition, all rows (not a projection)
``composition``        ``"counts"``                    ``"fractions"``
``intercept``          ``True``                        ``False``
``folds``              ``"shuffled"`` (seeded)         ``"unshuffled"`` (``KFold()``, rows in QM9 order)
``aggregate``          ``"fold-mean"``                 ``"pooled"``: one R² over all out-of-fold predictions
=====================  ==============================  =================================================

With :math:`K` folds :math:`f`, out-of-fold predictions :math:`\hat y` and fold means :math:`\bar y_f`,

.. math::

    R^2_\text{fold-mean} = \frac1K \sum_f \Big(1 - \frac{\sum_{i\in f}(y_i-\hat y_i)^2}
                                                        {\sum_{i\in f}(y_i-\bar y_f)^2}\Big),
    \qquad
    R^2_\text{pooled} = 1 - \frac{\sum_i (y_i-\hat y_i)^2}{\sum_i (y_i-\bar y)^2}.

:func:`cpd_core.cpd` reports the fold mean, as scikit-learn's ``cross_validate`` does.

:data:`MATSCOPE` is the protocol of the author's public toolkit ``matscope`` 0.2.0
(``CompositionProjectionDecomposition.decompose`` with ``probe_type="linear"``), read from its source:
element fractions without an intercept; composition removed by
:math:`H - \operatorname{Ridge}_{\alpha=1}(Z_C \to H)(Z_C)` with :math:`Z_C` the ``StandardScaler``'d
fractions, fitted once on all rows; then ``make_pipeline(StandardScaler(), Ridge(alpha=1))`` under
``cross_validate(cv=5)`` (unshuffled ``KFold``), the mean of the fold R². Because the composition fit is
penalised, :math:`H - Z_C B_\alpha` still holds :math:`Z_C (B_0 - B_\alpha)`, a linear function of
composition, in every column; z-scoring the residual scales it up with whatever geometry the column
holds. :func:`ridge_residual` reproduces the step exactly (tested against scikit-learn and, when it
is installed, against ``matscope`` itself).

Every protocol is scored with the closed-form ridge of :mod:`cpd_core.ridge`; the default protocol
gives :func:`cpd_core.cpd`'s R²_geom and out-of-fold predictions. Intervals are the book's bootstrap over
held-out molecules (:func:`cpd_core.intervals.bootstrap_r2`), here stratified by the cells of all fold
assignments compared, so that a protocol with other folds is still compared *paired* with ours (the
same resampled molecules score both; :func:`replicates`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from cpd_core.errors import InputError

SCALER_CHOICES = ("clipped", "zscore", "none")
NEAR_CONSTANT_CHOICES = ("drop", "keep")
PROJECTION_CHOICES = ("train", "all", "ridge-all")
COMPOSITION_CHOICES = ("counts", "fractions")
FOLD_CHOICES = ("shuffled", "unshuffled")
AGGREGATE_CHOICES = ("fold-mean", "pooled")

#: Columns whose training standard deviation is below this times their largest training magnitude are
#: dropped (:class:`cpd_core.probes.ClippedStandardScaler`'s rule; ``near_constant="keep"`` uses 0).
RTOL = 1e-8


@dataclass(frozen=True)
class Protocol:
    """The choices behind one ridge R²_geom; the defaults are :func:`cpd_core.cpd`'s.

    Attributes
    ----------
    scaler : {"clipped", "zscore", "none"}
        Feature standardisation fitted on the training fold: z-score with held-out values clipped to the
        training range (ours), plain z-score (scikit-learn ``StandardScaler``), or none.
    near_constant : {"drop", "keep"}
        ``"drop"``: columns with a training standard deviation below :data:`RTOL` × their largest magnitude
        are left out (ours); ``"keep"``: only columns constant to round-off are (as ``StandardScaler``,
        which gives them unit scale).
    alpha : float or None
        ``None``: the ridge penalty is chosen inside each training fold from
        :data:`cpd_core.probes.RIDGE_ALPHAS` by inner folds (ours); a number fixes it.
    projection : {"train", "all", "ridge-all"}
        Exact projection on span(C) fitted on the training folds (ours) or on all rows; or matscope's
        penalised composition fit on all rows (:func:`ridge_residual`).
    composition, intercept
        Element counts or fractions, with or without a column of ones.
    folds : {"shuffled", "unshuffled"}
        Seeded shuffled K-fold (ours) or K contiguous blocks of rows as given.
    aggregate : {"fold-mean", "pooled"}
        Mean of the per-fold R² (ours, and ``cross_validate``'s) or one R² of all out-of-fold predictions.
    composition_alpha : float
        Penalty of the ``"ridge-all"`` composition fit (matscope's default 1.0).
    """

    scaler: str = "clipped"
    near_constant: str = "drop"
    alpha: float | None = None
    projection: str = "train"
    composition: str = "counts"
    intercept: bool = True
    folds: str = "shuffled"
    aggregate: str = "fold-mean"
    composition_alpha: float = 1.0

    def __post_init__(self):
        for name, allowed in (("scaler", SCALER_CHOICES), ("near_constant", NEAR_CONSTANT_CHOICES),
                              ("projection", PROJECTION_CHOICES), ("composition", COMPOSITION_CHOICES),
                              ("folds", FOLD_CHOICES), ("aggregate", AGGREGATE_CHOICES)):
            if getattr(self, name) not in allowed:
                raise InputError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.alpha is not None and not (np.isfinite(self.alpha) and self.alpha > 0):
            raise InputError(f"alpha must be None or a finite penalty > 0, got {self.alpha!r}")
        if not (np.isfinite(self.composition_alpha) and self.composition_alpha > 0):
            raise InputError(f"composition_alpha must be finite and > 0, got {self.composition_alpha!r}")

    def differs(self, other: "Protocol" = None) -> dict:
        """The choices in which this protocol differs from ``other`` (default: ours), as ``{name: value}``.

        >>> Protocol(alpha=1.0, folds="unshuffled").differs()
        {'alpha': 1.0, 'folds': 'unshuffled'}
        """
        other = Protocol() if other is None else other
        return {k: getattr(self, k) for k in self.__dataclass_fields__ if getattr(self, k) != getattr(other, k)
                and not (k == "composition_alpha" and "ridge-all" not in (self.projection, other.projection))}


#: The author's public toolkit ``matscope`` 0.2.0, ``CompositionProjectionDecomposition().decompose``'s
#: linear probe (see the module docstring).
MATSCOPE = Protocol(scaler="zscore", near_constant="keep", alpha=1.0, projection="ridge-all",
                    composition="fractions", intercept=False, folds="unshuffled", aggregate="fold-mean")

#: The name of :func:`cpd_core.cpd`'s protocol, and of matscope's.
OURS, MATSCOPE_NAME = "ours", "matscope 0.2.0"

#: What each choice of matscope is called when it is put back to ours (the ablations of :data:`PROTOCOLS`).
MATSCOPE_BACK = {"scaler": "clipped scaler", "near_constant": "rtol rule", "alpha": "α chosen",
                 "projection": "exact projection (train folds)", "composition": "counts + intercept",
                 "folds": "shuffled folds"}


def _matscope_ablations() -> dict:
    """matscope's protocol with one choice at a time put back to ours (counts also restore the intercept)."""
    out = {}
    for key, label in MATSCOPE_BACK.items():
        back = {key: getattr(Protocol(), key)}
        if key == "composition":
            back["intercept"] = True
        out[f"matscope, {label}"] = replace(MATSCOPE, **back)
    return out


#: Every protocol of the chapter: ours, each choice changed alone, matscope's, and matscope's with one
#: choice at a time put back to ours.
PROTOCOLS: dict[str, Protocol] = {
    OURS: Protocol(),
    "no scaling": Protocol(scaler="none"),
    "plain z-score": Protocol(scaler="zscore"),
    "near-constant kept": Protocol(near_constant="keep"),
    "α = 1": Protocol(alpha=1.0),
    "projection on all rows": Protocol(projection="all"),
    "unshuffled folds": Protocol(folds="unshuffled"),
    "counts, no intercept": Protocol(intercept=False),
    "fractions + intercept": Protocol(composition="fractions"),
    "fractions, no intercept": Protocol(composition="fractions", intercept=False),
    "pooled R²": Protocol(aggregate="pooled"),
    MATSCOPE_NAME: MATSCOPE,
    **_matscope_ablations(),
}


# --- the pieces ------------------------------------------------------------------------------------

def composition_columns(counts, kind: str = "counts", intercept: bool = True) -> np.ndarray:
    """The composition matrix of a protocol from element counts (one column per element, no intercept).

    >>> composition_columns([[2, 1], [4, 0]], "fractions", intercept=False).tolist()
    [[0.6666666666666666, 0.3333333333333333], [1.0, 0.0]]
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 2:
        raise InputError(f"counts must be 2-D (molecules x elements), got shape {counts.shape}")
    if kind not in COMPOSITION_CHOICES:
        raise InputError(f"composition must be one of {COMPOSITION_CHOICES}, got {kind!r}")
    if kind == "fractions":
        size = counts.sum(axis=1, keepdims=True)
        if np.any(size <= 0):
            raise InputError("a molecule without atoms has no element fractions")
        counts = counts / size
    return np.column_stack([counts, np.ones(len(counts))]) if intercept else counts


def standard_scale(X) -> tuple[np.ndarray, np.ndarray]:
    """Column means and scales as scikit-learn's ``StandardScaler`` fits them (population std; a column
    constant to round-off gets scale 1, by scikit-learn's ``_is_constant_feature`` rule).

    >>> mu, sd = standard_scale([[1.0, 5.0], [3.0, 5.0]])
    >>> mu.tolist(), sd.tolist()
    ([2.0, 5.0], [1.0, 1.0])
    """
    X = np.asarray(X, dtype=np.float64)
    mu, var = X.mean(axis=0), X.var(axis=0)
    n, eps = len(X), np.finfo(np.float64).eps
    constant = var <= n * eps * var + (n * mu * eps) ** 2
    return mu, np.where(constant, 1.0, np.sqrt(var))


def ridge_residual(H, X, alpha: float = 1.0) -> np.ndarray:
    r"""``H`` minus a ridge regression of ``H`` on the standardised columns of ``X``, fitted on all rows.

    matscope 0.2.0's composition removal: with :math:`Z = (X - \bar X)/s_X` (:func:`standard_scale`) and
    centred :math:`H_c`,

    .. math::

        R = H_c - Z B_\alpha, \qquad B_\alpha = (Z^\top Z + \alpha I)^{-1} Z^\top H_c,

    which is ``H - Ridge(alpha).fit(Z, H).predict(Z)``. As :math:`\alpha \to 0` it becomes the exact
    projection on span(:math:`X`, 1); for :math:`\alpha > 0` a part linear in :math:`X` stays in :math:`R`.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(50, 3)); H = X @ rng.normal(size=(3, 4)) + 2.0
    >>> bool(np.abs(ridge_residual(H, X, alpha=1e-10)).max() < 1e-8), bool(np.abs(ridge_residual(H, X)).max() > 1e-3)
    (True, True)
    """
    H = np.asarray(H, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64)
    if len(H) != len(X):
        raise InputError(f"H and X must have the same rows, got {len(H)} and {len(X)}")
    mu, sd = standard_scale(X)
    Z = (X - mu) / sd
    Z -= Z.mean(axis=0)
    Hc = H - H.mean(axis=0)
    B = np.linalg.solve(Z.T @ Z + alpha * np.eye(Z.shape[1]), Z.T @ Hc)
    return Hc - Z @ B


def fold_assignment(n: int, cv: int = 5, seed: int = 0, folds: str = "shuffled") -> np.ndarray:
    """The held-out fold of each row: :func:`cpd_core.decomposition.fold_labels` (shuffled, seeded), or
    scikit-learn's unshuffled ``KFold`` (the first ``n % cv`` blocks one row longer).

    >>> fold_assignment(7, cv=3, folds="unshuffled").tolist()
    [0, 0, 0, 1, 1, 2, 2]
    """
    from cpd_core.decomposition import fold_labels

    if folds not in FOLD_CHOICES:
        raise InputError(f"folds must be one of {FOLD_CHOICES}, got {folds!r}")
    if folds == "shuffled":
        return fold_labels(n, cv, seed)
    from sklearn.model_selection import KFold

    fold_of = np.empty(n, dtype=np.int64)
    for f, (_, te) in enumerate(KFold(n_splits=int(cv)).split(np.empty(n))):
        fold_of[te] = f
    return fold_of


# --- scoring ---------------------------------------------------------------------------------------

@dataclass
class ProtocolResult:
    """Ridge R²_geom of one target under one :class:`Protocol`.

    Attributes
    ----------
    protocol : Protocol
    value : float
        R²_geom (``protocol.aggregate``: the mean of the fold R² or the pooled R²).
    fold_r2 : numpy.ndarray, shape (K,)
        Held-out R² of each fold.
    alpha : numpy.ndarray, shape (K,)
        The penalty each fold used.
    n_kept : numpy.ndarray of int, shape (K,)
        Columns the probe used in each fold.
    y, fold_of, oof : numpy.ndarray, shape (n,)
        Target, held-out fold and out-of-fold prediction of each row.
    lo, hi : float
        95 % (``level``) interval, filled by :func:`attach_intervals` (NaN before).
    """

    protocol: Protocol
    value: float
    fold_r2: np.ndarray = field(repr=False)
    alpha: np.ndarray = field(repr=False)
    n_kept: np.ndarray = field(repr=False)
    y: np.ndarray = field(repr=False)
    fold_of: np.ndarray = field(repr=False)
    oof: np.ndarray = field(repr=False)
    lo: float = np.nan
    hi: float = np.nan
    level: float = 0.95

    @property
    def pooled(self) -> bool:
        return self.protocol.aggregate == "pooled"


def _r2(y, p) -> float:
    return float(1.0 - np.sum((y - p) ** 2) / np.sum((y - y.mean()) ** 2))


def _group_key(p: Protocol) -> tuple:
    """What a protocol's per-fold Gram matrices depend on: the residual's input, the span of its composition,
    folds, projection. Element fractions sum to one, so with or without an intercept they span the same
    space (an exact projection cannot tell them apart); ``"ridge-all"`` standardises the composition, which
    turns an intercept into a zero column. Such protocols share one residual."""
    intercept = p.intercept or p.composition == "fractions" or p.projection == "ridge-all"
    if p.projection == "ridge-all":
        return ("ridge-all", p.composition, intercept, p.composition_alpha, p.folds)
    return (p.projection, p.composition, intercept, p.folds)


def _ridge_folds(H, counts, y, p: Protocol, fold_of):
    """The :class:`~cpd_core.ridge.RidgeFolds` of protocol ``p``'s residual input and composition."""
    from cpd_core.ridge import RidgeFolds

    C = composition_columns(counts, p.composition, p.intercept)
    if p.projection == "ridge-all":
        # the residual is fixed before any split; centring it on the training rows (a projection on a
        # column of ones) changes nothing for a ridge with an intercept
        return RidgeFolds(ridge_residual(H, C, p.composition_alpha), np.ones((len(H), 1)), y, fold_of)
    return RidgeFolds(H, C, y, fold_of, fit_projection=p.projection)


def _near_constant_rule(p: Protocol) -> str:
    r"""The near-constant rule that acts under protocol ``p``: ``"drop"`` where keeping or dropping cannot differ.

    Without standardisation there is no rule. With an exact projection fit on the training folds and a
    composition whose span holds the constant (an intercept, or fractions), every residual column is
    centred on the training rows, and a centred column of :math:`n_T` values with largest magnitude
    :math:`M` has standard deviation at least :math:`M/\sqrt{n_T}`: the rule (std below
    :data:`RTOL` :math:`\times M`) drops nothing for :math:`n_T < 10^{16}`, so the two fits are the same.
    """
    centred = p.projection == "train" and (p.intercept or p.composition == "fractions")
    return "drop" if p.scaler == "none" or centred else p.near_constant


def _with_scaler(rf, p: Protocol):
    """``rf``'s Gram matrices under ``p``'s scaler and near-constant rule (a copy with its own memo: these
    settings enter only the fits, not the per-fold statistics)."""
    return rf.with_options(standardize=p.scaler != "none", clip=p.scaler == "clipped",
                           rtol=RTOL if _near_constant_rule(p) == "drop" else 0.0)


def _fit_folds(rf, p: Protocol, cv: int):
    """Out-of-fold predictions, penalty and columns used per fold of protocol ``p`` on ``rf``."""
    from cpd_core.probes import RIDGE_ALPHAS

    grid = RIDGE_ALPHAS if p.alpha is None else np.array([float(p.alpha)])
    # a fixed penalty needs no inner folds (select="gcv" with one penalty skips the criterion)
    select = "folds" if p.alpha is None else "gcv"
    oof, alphas, kept = np.empty(rf.n), np.empty(cv), np.empty(cv, dtype=np.int64)
    for f in range(cv):
        fit = rf.fit([g for g in range(cv) if g != f], f, grid, geom=True, select=select)
        oof[rf.rows[f]] = fit.predictions
        alphas[f], kept[f] = grid[fit.chosen], fit.n_kept
    return oof, alphas, kept


def _result(p: Protocol, y, fold_of, oof, alphas, kept, cv) -> ProtocolResult:
    fold_r2 = np.array([_r2(y[fold_of == f], oof[fold_of == f]) for f in range(cv)])
    value = _r2(y, oof) if p.aggregate == "pooled" else float(fold_r2.mean())
    return ProtocolResult(p, value, fold_r2, alphas, kept, y, fold_of, oof)


def score_protocols(H, counts, ys: Mapping[str, np.ndarray], protocols: Mapping[str, Protocol] | None = None,
                    cv: int = 5, seed: int = 0, intervals: bool = True, n_boot: int = 1000) -> dict:
    """Ridge R²_geom of each target under each protocol, all on the same molecules.

    Every protocol runs in closed form (:class:`~cpd_core.ridge.RidgeFolds`). Protocols that share the
    residual's input, composition, folds and projection share its per-fold Gram matrices (the one pass over
    the rows); the scaler and the near-constant rule enter only the fits; targets share
    eigendecompositions (:meth:`~cpd_core.ridge.RidgeFolds.retarget`); protocols that differ only in how
    R² is aggregated share the fits.

    Parameters
    ----------
    H : array_like, shape (n, d)
        Pooled features.
    counts : array_like, shape (n, E)
        Element counts, no intercept (``Dataset.composition(intercept=False)``); each protocol builds
        its composition matrix from them (:func:`composition_columns`).
    ys : mapping of str to array_like, shape (n,)
    protocols : mapping of str to Protocol
        Default :data:`PROTOCOLS`.
    cv, seed : int
        Folds, and the seed of the shuffled ones and of the bootstrap.
    intervals : bool
        Attach 95 % intervals (:func:`attach_intervals`, one bootstrap per fold assignment and target).

    Returns
    -------
    dict of (protocol name, target) to ProtocolResult

    Examples
    --------
    >>> from cpd_core import cpd
    >>> rng = np.random.default_rng(0)
    >>> counts = rng.integers(1, 6, size=(300, 3)).astype(float)
    >>> H = np.hstack([counts, rng.normal(size=(300, 4))]); y = H[:, 4] + counts[:, 0]
    >>> res = score_protocols(H, counts, {"y": y}, {"ours": Protocol()})[("ours", "y")]
    >>> ref = cpd(H, np.column_stack([counts, np.ones(300)]), y)
    >>> bool(abs(res.value - ref.r2_geom) < 1e-10), bool(np.allclose(res.oof, ref.oof["geom"], atol=1e-10))
    (True, True)
    """
    from cpd_core.decomposition import _check_inputs

    protocols = PROTOCOLS if protocols is None else protocols
    if not protocols:
        raise InputError("no protocols given")
    if not ys:
        raise InputError("ys is empty: give at least one target")
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 2 or len(counts) != len(H):
        raise InputError(f"counts must have one row per row of H ({len(H)}), got shape {counts.shape}")
    checked = {}
    for t, y in ys.items():
        H, _, checked[t] = _check_inputs(H, np.column_stack([counts, np.ones(len(counts))]), y, cv)
    targets, cv = list(checked), int(cv)
    groups: dict = {}
    for name, p in protocols.items():
        groups.setdefault(_group_key(p), []).append(name)
    results = {}
    for names in groups.values():
        first = protocols[names[0]]
        fold_of = fold_assignment(len(H), cv, seed, first.folds)
        base = _ridge_folds(H, counts, checked[targets[0]], replace(first, intercept=_group_key(first)[2]), fold_of)
        variants: dict = {}
        for name in names:
            p = protocols[name]
            variants.setdefault((p.scaler, _near_constant_rule(p)), []).append(name)
        for members in variants.values():
            rf0 = _with_scaler(base, protocols[members[0]])
            for t in targets:
                rf = rf0 if t == targets[0] else rf0.retarget(checked[t])   # shares rf0's memo
                fits = {}
                for name in members:
                    p = protocols[name]
                    if p.alpha not in fits:
                        fits[p.alpha] = _fit_folds(rf, p, cv)
                    results[(name, t)] = _result(p, checked[t], fold_of, *fits[p.alpha], cv)
                del rf
            del rf0
        del base
    results = {(name, t): results[(name, t)] for t in targets for name in protocols}
    if intervals:
        attach_intervals(list(results.values()), n_boot=n_boot, seed=seed)
    return results


# --- intervals -------------------------------------------------------------------------------------

def replicates(results: Sequence[ProtocolResult], n_boot: int = 1000, seed: int = 0, chunk: int = 100) -> np.ndarray:
    r"""Bootstrap replicates of every result's R²_geom on the *same* resampled molecules.

    Molecules are drawn with replacement within each cell of the fold assignments present (a fold,
    or with several assignments each non-empty intersection of their folds), so every fold of every
    result keeps its size; each result is then scored as it reports (fold mean under its own folds,
    or pooled). With one fold assignment and fold means this is
    :func:`cpd_core.intervals.bootstrap_r2`, draw for draw.

    Parameters
    ----------
    results : sequence of ProtocolResult
        On the same molecules and target (equal ``y``).

    Returns
    -------
    numpy.ndarray, shape (n_boot, len(results))

    Examples
    --------
    >>> from cpd_core.intervals import bootstrap_r2
    >>> rng = np.random.default_rng(0)
    >>> y = rng.normal(size=200); p = y + rng.normal(size=200); folds = np.arange(200) % 4
    >>> r = ProtocolResult(Protocol(), 0.0, None, None, None, y, folds, p)
    >>> bool(np.allclose(replicates([r], n_boot=50), bootstrap_r2(y, folds, [p], n_boot=50), atol=1e-12))
    True
    """
    results = list(results)
    if not results:
        raise InputError("no results to resample")
    y = np.asarray(results[0].y, dtype=np.float64)
    for r in results:
        if r.y.shape != y.shape or not np.array_equal(r.y, y):
            raise InputError("the results are not on the same molecules and target (y differs)")
    labelings, which = [], []
    for r in results:
        for i, lab in enumerate(labelings):
            if np.array_equal(lab, r.fold_of):
                which.append(i)
                break
        else:
            labelings.append(np.asarray(r.fold_of))
            which.append(len(labelings) - 1)
    cell = labelings[0] if len(labelings) == 1 else np.unique(np.column_stack(labelings), axis=0,
                                                              return_inverse=True)[1].ravel()
    strata = [np.flatnonzero(cell == s) for s in np.unique(cell)]
    fold_in = np.array([[lab[idx[0]] for lab in labelings] for idx in strata])        # (S, L)
    sizes = np.array([len(idx) for idx in strata], dtype=np.float64)
    yc = y - y.mean()
    E = np.column_stack([y - r.oof for r in results])                                   # (n, m) residuals
    pooled = np.array([r.pooled for r in results])
    which = np.array(which)
    rng = np.random.default_rng(seed)
    out = np.empty((n_boot, len(results)))
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        sy, syy, sse = np.empty((len(strata), b)), np.empty((len(strata), b)), np.empty((len(strata), b, len(results)))
        for s, idx in enumerate(strata):
            pick = idx[rng.integers(0, len(idx), size=(b, len(idx)))]
            yb = yc[pick]
            sy[s], syy[s] = yb.sum(axis=1), (yb * yb).sum(axis=1)
            sse[s] = np.einsum("bkm,bkm->bm", E[pick], E[pick])
        block = out[start:start + b]
        tot_n, tot_sy, tot_syy = sizes.sum(), sy.sum(axis=0), syy.sum(axis=0)
        sst = tot_syy - tot_sy ** 2 / tot_n
        block[:, pooled] = 1.0 - sse.sum(axis=0)[:, pooled] / np.where(sst > 0, sst, np.nan)[:, None]
        for lab in range(len(labelings)):
            cols = np.flatnonzero((which == lab) & ~pooled)
            if not cols.size:
                continue
            folds = np.unique(fold_in[:, lab])
            acc = np.zeros((b, cols.size))
            for f in folds:
                cells = fold_in[:, lab] == f
                nf = sizes[cells].sum()
                sst_f = syy[cells].sum(axis=0) - sy[cells].sum(axis=0) ** 2 / nf
                acc += 1.0 - sse[cells][:, :, cols].sum(axis=0) / np.where(sst_f > 0, sst_f, np.nan)[:, None]
            block[:, cols] = acc / len(folds)
    return out


def attach_intervals(results: Sequence[ProtocolResult], n_boot: int = 1000, seed: int = 0,
                     level: float = 0.95) -> None:
    """Fill ``lo``/``hi`` of each result: one :func:`replicates` per (target, fold assignment), so each
    interval is the one its result has alone (for ours: :attr:`cpd_core.CPDResult.ci`)."""
    from cpd_core.intervals import percentile_interval

    groups: dict = {}
    for r in results:
        key = (r.y.tobytes(), r.fold_of.tobytes())
        groups.setdefault(key, []).append(r)
    for group in groups.values():
        reps = replicates(group, n_boot=n_boot, seed=seed)
        for j, r in enumerate(group):
            r.lo, r.hi = percentile_interval(reps[:, j], level)
            r.level = level


def compare_protocols(a: ProtocolResult, b: ProtocolResult, n_boot: int = 1000, seed: int = 0, level: float = 0.95):
    """Paired difference ``a − b`` of R²_geom with its interval (:class:`cpd_core.intervals.Comparison`),
    also between protocols with different folds (:func:`replicates`).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> counts = rng.integers(1, 6, size=(400, 2)).astype(float)
    >>> H = np.hstack([counts, rng.normal(size=(400, 3))]); y = H[:, 2] + 0.5 * rng.normal(size=400)
    >>> res = score_protocols(H, counts, {"y": y}, {"a": Protocol(), "b": Protocol(folds="unshuffled")})
    >>> c = compare_protocols(res[("a", "y")], res[("b", "y")])
    >>> bool(c.lo <= c.diff <= c.hi), c.n
    (True, 400)
    """
    from cpd_core.intervals import Comparison, percentile_interval

    reps = replicates([a, b], n_boot=n_boot, seed=seed)
    lo, hi = percentile_interval(reps[:, 0] - reps[:, 1], level)
    return Comparison("r2_geom", a.value, b.value, a.value - b.value, lo, hi, level, len(a.y))


# --- the chapter -----------------------------------------------------------------------------------

#: Label of the extra probe set: ANI-2x's AEV on the ANI-2x chapter's molecules.
AEV_SET = "ANI-2x chapter's subset"


@dataclass
class SensitivityRun:
    """What :func:`probe_sensitivity` computed.

    Attributes
    ----------
    summary : pandas.DataFrame
        One row per (set, model, target, protocol): block, n, ``r2_geom`` with ``r2_geom_lo``/``_hi``,
        the worst fold, the median penalty and the columns used.
    contrasts : pandas.DataFrame
        One row per (set, model, target, protocol other than ours): R²_geom(protocol) − R²_geom(ours),
        paired, with ``diff_lo``/``diff_hi`` and ``resolved``.
    orders : pandas.DataFrame
        One row per (set, target, protocol, pair of models) whose order ours resolves: ours' paired
        difference and the protocol's, and ``flipped`` (the protocol resolves the opposite order) or
        ``lost`` (it resolves neither).
    results : dict
        ``(set, model, target, protocol)`` → :class:`ProtocolResult`.
    n : dict
        Set → molecules.
    protocols : dict
        Name → :class:`Protocol`.
    size_order : dict
        Set → Spearman correlation of a molecule's row (the order unshuffled folds cut) with its number of
        heavy atoms.
    """

    summary: pd.DataFrame
    contrasts: pd.DataFrame
    orders: pd.DataFrame
    results: dict = field(repr=False)
    n: dict
    protocols: dict
    size_order: dict = field(default_factory=dict)


def set_tables(label: str, results: Mapping, info: Mapping[str, dict], protocols: Mapping[str, Protocol],
               n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[list, list, list]:
    """Summary, contrast and order rows of one probe set; fills each result's interval.

    ``results`` maps ``(model, target, protocol)`` → :class:`ProtocolResult`, all models on the same
    molecules; ``info`` maps a model to the columns its rows carry. Per target, one bootstrap
    (:func:`replicates`) holds every model under every protocol with the same folds: it gives each
    result's interval (the one it has alone), the contrasts with :data:`OURS` of the protocols with ours'
    folds and the orders of models. One joint bootstrap holds ours and every protocol with other folds,
    for their contrasts.
    """
    from cpd_core.intervals import percentile_interval

    models = list(dict.fromkeys(k[0] for k in results))
    targets = list(dict.fromkeys(k[1] for k in results))
    names = [name for name in protocols if name != OURS]
    contrasts, orders = [], []
    for t in targets:
        groups: dict = {}
        for name in protocols:
            groups.setdefault(results[(models[0], t, name)].fold_of.tobytes(), []).append(name)
        ours_key = results[(models[0], t, OURS)].fold_of.tobytes()
        col, reps = {}, {}
        for g, members in groups.items():
            cells = [(m, name) for m in models for name in members]
            reps[g] = replicates([results[(m, t, name)] for m, name in cells], n_boot=n_boot, seed=seed)
            col.update({cell: (g, j) for j, cell in enumerate(cells)})
            for j, (m, name) in enumerate(cells):
                r = results[(m, t, name)]
                r.lo, r.hi = percentile_interval(reps[g][:, j], level)
                r.level = level
        others = [name for g, members in groups.items() if g != ours_key for name in members]
        if others:
            cells = [(m, name) for m in models for name in [OURS] + others]
            joint = replicates([results[(m, t, name)] for m, name in cells], n_boot=n_boot, seed=seed)
            jcol = {cell: j for j, cell in enumerate(cells)}
        for name in names:
            for m in models:
                a, b = results[(m, t, name)], results[(m, t, OURS)]
                if name in others:
                    diff = joint[:, jcol[(m, name)]] - joint[:, jcol[(m, OURS)]]
                else:
                    diff = reps[ours_key][:, col[(m, name)][1]] - reps[ours_key][:, col[(m, OURS)][1]]
                lo, hi = percentile_interval(diff, level)
                contrasts.append({"set": label, "model": m, "target": t, "protocol": name, "ours": b.value,
                                  "this protocol": a.value, "diff": a.value - b.value, "diff_lo": lo, "diff_hi": hi,
                                  "resolved": bool(lo > 0 or hi < 0)})
        # orders of two models: each pair ours resolves, against each protocol's paired difference
        for i, ma in enumerate(models):
            for mb in models[i + 1:]:
                def paired(name):
                    g, ja = col[(ma, name)]
                    lo, hi = percentile_interval(reps[g][:, ja] - reps[g][:, col[(mb, name)][1]], level)
                    return results[(ma, t, name)].value - results[(mb, t, name)].value, lo, hi

                v0, lo0, hi0 = paired(OURS)
                if not (lo0 > 0 or hi0 < 0):
                    continue
                for name in names:
                    v, lo, hi = paired(name)
                    resolved = lo > 0 or hi < 0
                    orders.append({"set": label, "target": t, "protocol": name, "model_a": ma, "model_b": mb,
                                   "ours": v0, "ours_lo": lo0, "ours_hi": hi0, "this protocol": v,
                                   "this protocol_lo": lo, "this protocol_hi": hi,
                                   "flipped": bool(resolved and np.sign(v) != np.sign(v0)),
                                   "lost": bool(not resolved)})
    rows = [{"set": label, **info[m], "target": t, "protocol": name, "n": len(r.y), "r2_geom": r.value,
             "r2_geom_lo": r.lo, "r2_geom_hi": r.hi, "worst_fold": float(r.fold_r2.min()),
             "alpha_median": float(np.median(r.alpha)), "columns_used": int(np.median(r.n_kept))}
            for (m, t, name), r in results.items()]
    return rows, contrasts, orders


def probe_sensitivity(models: Sequence[str] | None = None, archs: Sequence[str] | None = None, n: int | None = 500,
                      seed: int = 0, targets: Sequence[str] = ("gap", "dipole"),
                      protocols: Mapping[str, Protocol] | None = None, aev_molecules: int | None = 2000,
                      cv: int = 5, n_boot: int = 1000, device: str = "auto", progress: bool = False) -> SensitivityRun:
    """Every model's gap block under every protocol, on the models chapter's two probe sets.

    Parameters
    ----------
    models, archs, n, seed
        The probe sets of :func:`cpd_core.experiments.probe_set.chapter_sets`: the models chapter's
        models on its seeded QM9 subset, and the networks trained here on their held-out test split.
        Random-init twins run with their first seed. Each model is probed on the block the models
        chapter reports for the gap (its nested choice, read from the cached block scan).
    targets : sequence of str
        QM9 targets probed on that block.
    protocols : mapping of str to Protocol
        Default :data:`PROTOCOLS`; must hold :data:`OURS`.
    aev_molecules : int or None
        Add ANI-2x's full AEV (block ``aev``) on the ANI-2x chapter's subset of this many molecules (the
        set its reported R²_geom is about); ``None`` or 0 for none.
    """
    from tqdm import tqdm

    from cpd_core.experiments.probe_set import chapter_sets, probe_set
    from cpd_core.models import REGISTRY
    from cpd_core.selection import scan_blocks

    protocols = dict(PROTOCOLS if protocols is None else protocols)
    if OURS not in protocols:
        raise InputError(f"protocols must include {OURS!r}, the protocol every other one is compared with")
    if protocols[OURS] != Protocol():
        raise InputError(f"protocol {OURS!r} must be Protocol(), cpd()'s defaults")
    targets = list(targets)
    if "gap" not in targets:
        raise InputError("targets must include 'gap' (the block probed is each model's gap block)")
    sets = [(label, ms, kw, None) for label, ms, kw in chapter_sets(models, archs, n=n, seed=seed)]
    if aev_molecules:
        sets.append((AEV_SET, ["ani2x-aev"], {"n": aev_molecules, "seed": seed}, "aev"))
    from scipy.stats import spearmanr

    rows, contrasts, orders, results, sizes, size_order = [], [], [], {}, {}, {}
    for label, ms, kw, fixed_block in sets:
        ps = probe_set(ms, **kw)
        ys = ps.targets(targets)
        counts = ps.data.composition(intercept=False)
        mine, info, seen = {}, {}, {}
        for name, s in tqdm(ps.runs((0,)), desc=label, disable=not progress):
            card = REGISTRY[name]
            blocks = ps.blocks(name, s, device=device, progress=progress)
            block = fixed_block or scan_blocks(blocks, ps.C, {"gap": ys["gap"]}, cv=cv, seed=0,
                                               cache=True).choose("gap").block
            H = blocks[block]
            info[name] = {"model": name, "family": card.family, "status": card.status, "block": block,
                          "width": int(H.shape[1]), "same block as": ""}
            # a block equal to one already scored (a twin whose gap block has no weights, e.g. ANI-2x's AEV)
            # gets the same results without computing them again
            key = next((k for k, other in seen.items() if other.shape == H.shape and np.array_equal(other, H)), None)
            if key is None:
                got = score_protocols(H, counts, ys, protocols, cv=cv, seed=0, intervals=False)
                seen[name] = H
            else:
                got = {(pname, t): copy.copy(mine[(key, t, pname)]) for pname in protocols for t in targets}
                info[name]["same block as"] = key
            mine.update({(name, t, pname): r for (pname, t), r in got.items()})
            del blocks
        r, c, o = set_tables(label, mine, info, protocols, n_boot=n_boot, seed=0)
        rows += r
        contrasts += c
        orders += o
        results.update({(label, *k): v for k, v in mine.items()})
        sizes[label] = len(ps.data)
        heavy = np.array([int(np.sum(np.asarray(z) > 1)) for z in ps.data.numbers])
        size_order[label] = float(spearmanr(np.arange(len(heavy)), heavy)[0])
    return SensitivityRun(pd.DataFrame(rows), pd.DataFrame(contrasts), pd.DataFrame(orders), results, sizes,
                          protocols, size_order)


# --- tables, figure, facts -------------------------------------------------------------------------

def protocol_table(protocols: Mapping[str, Protocol] | None = None) -> pd.DataFrame:
    """One row per protocol: each choice, ours' shown as ``·`` so that what a protocol changes stands out."""
    protocols = PROTOCOLS if protocols is None else protocols
    ours = Protocol()
    rows = []
    for name, p in protocols.items():
        row = {"protocol": name}
        for k in ("composition", "intercept", "projection", "scaler", "near_constant", "alpha", "folds", "aggregate"):
            v = getattr(p, k)
            shown = ("chosen" if v is None else f"{v:g}") if k == "alpha" else ("yes" if v else "no") \
                if k == "intercept" else v
            row[k.replace("_", "-")] = shown if (v != getattr(ours, k) or name == OURS) else "·"
        rows.append(row)
    return pd.DataFrame(rows)


def model_table(run: SensitivityRun, target: str = "gap", protocols: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per (set, model), one column per protocol: R²_geom [95 % interval] of ``target``."""
    from cpd_core.report import format_interval

    s = run.summary[run.summary["target"] == target]
    if s.empty:
        raise InputError(f"target {target!r} was not probed; probed: {sorted(set(run.summary['target']))}")
    names = list(run.protocols) if protocols is None else list(protocols)
    rows = []
    for (label, model), grp in s.groupby(["set", "model"], sort=False):
        by = grp.set_index("protocol")
        row = {"set": label, "model": model, "block": by["block"].iloc[0]}
        for name in names:
            if name in by.index:
                row[name] = format_interval(*(by.loc[name, k] for k in ("r2_geom", "r2_geom_lo", "r2_geom_hi")))
        rows.append(row)
    return pd.DataFrame(rows)


def choice_summary(run: SensitivityRun) -> pd.DataFrame:
    """Per (target, protocol): the median R²_geom over models, the median paired change from ours, in how many
    models it lowered / raised R²_geom with an interval excluding zero, sign flips and order flips."""
    s, c, o = run.summary, run.contrasts, run.orders
    flips = sign_flips(run)
    rows = []
    for (t, name), grp in s.groupby(["target", "protocol"], sort=False):
        mine = c[(c["target"] == t) & (c["protocol"] == name)] if len(c) else c
        ords = o[(o["target"] == t) & (o["protocol"] == name)] if len(o) else o
        rows.append({"target": t, "protocol": name, "models": len(grp), "median R²_geom": grp["r2_geom"].median(),
                     "median change": mine["diff"].median() if len(mine) else 0.0,
                     "lowered": int((mine["resolved"] & (mine["diff"] < 0)).sum()) if len(mine) else 0,
                     "raised": int((mine["resolved"] & (mine["diff"] > 0)).sum()) if len(mine) else 0,
                     "sign flips": int(((flips["target"] == t) & (flips["protocol"] == name)).sum()),
                     "order flips": int(ords["flipped"].sum()) if len(ords) else 0,
                     "orders ours resolves": len(ords)})
    return pd.DataFrame(rows)


def _sign(lo: float, hi: float) -> int:
    return 1 if lo > 0 else (-1 if hi < 0 else 0)


def sign_flips(run: SensitivityRun, target: str | None = None, protocol: str | None = None) -> pd.DataFrame:
    """(set, model, target, protocol) where the protocol's interval of R²_geom lies on the other side of zero
    from ours' (both resolved)."""
    s = run.summary
    ours = s[s["protocol"] == OURS].set_index(["set", "model", "target"])
    rows = []
    for _, r in s[s["protocol"] != OURS].iterrows():
        if (target is not None and r["target"] != target) or (protocol is not None and r["protocol"] != protocol):
            continue
        o = ours.loc[(r["set"], r["model"], r["target"])]
        a, b = _sign(o["r2_geom_lo"], o["r2_geom_hi"]), _sign(r["r2_geom_lo"], r["r2_geom_hi"])
        if a and b and a != b:
            rows.append({"set": r["set"], "model": r["model"], "target": r["target"], "protocol": r["protocol"],
                         "ours": o["r2_geom"], "ours_lo": o["r2_geom_lo"], "ours_hi": o["r2_geom_hi"],
                         "this protocol": r["r2_geom"], "this protocol_lo": r["r2_geom_lo"],
                         "this protocol_hi": r["r2_geom_hi"]})
    return pd.DataFrame(rows, columns=["set", "model", "target", "protocol", "ours", "ours_lo", "ours_hi",
                                       "this protocol", "this protocol_lo", "this protocol_hi"])


def ani_rows(run: SensitivityRun, target: str = "gap") -> pd.DataFrame:
    """ANI-2x's descriptor (model ``ani2x-aev``) in every set under every protocol, with the paired change from
    ours and whether the paper's ridge R²_geom lies inside the interval."""
    from cpd_core.paper import paper_value

    paper = paper_value("r2_geom", "ANI-2x", "gap", "ridge") if target == "gap" else np.nan
    s = run.summary[(run.summary["model"] == "ani2x-aev") & (run.summary["target"] == target)]
    c = run.contrasts.set_index(["set", "model", "target", "protocol"]) if len(run.contrasts) else None
    rows = []
    for _, r in s.iterrows():
        key = (r["set"], r["model"], r["target"], r["protocol"])
        d = c.loc[key] if c is not None and key in c.index else None
        rows.append({"set": r["set"], "n": r["n"], "protocol": r["protocol"], "r2_geom": r["r2_geom"],
                     "r2_geom_lo": r["r2_geom_lo"], "r2_geom_hi": r["r2_geom_hi"], "worst_fold": r["worst_fold"],
                     "alpha_median": r["alpha_median"],
                     "change": 0.0 if d is None else d["diff"], "change_lo": 0.0 if d is None else d["diff_lo"],
                     "change_hi": 0.0 if d is None else d["diff_hi"],
                     "paper inside": bool(r["r2_geom_lo"] <= paper <= r["r2_geom_hi"])})
    return pd.DataFrame(rows)


def sensitivity_plot(run: SensitivityRun, target: str = "gap", highlight: Sequence[str] = (OURS, MATSCOPE_NAME)):
    """R²_geom of ``target`` per model under every protocol, 95 % intervals as error bars.

    One row per (set, model); grey marks are the protocols other than ``highlight``, which are drawn in
    colour. The x axis is symmetric-log beyond ±1, so collapsed protocols stay on the page.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    s = run.summary[run.summary["target"] == target]
    if s.empty:
        raise InputError(f"target {target!r} was not probed")
    keys = list(dict.fromkeys(zip(s["set"], s["model"])))
    names = list(dict.fromkeys(s["protocol"]))
    others = [p for p in names if p not in highlight]
    colors = dict(zip(highlight, sns.color_palette("colorblind", len(highlight))))
    fig, ax = plt.subplots(figsize=(9.0, 0.36 * len(keys) + 1.6))
    offsets = {p: 0.3 * (i - (len(others) - 1) / 2) / max(len(others), 1) for i, p in enumerate(others)}
    offsets.update({p: 0.18 * (i - (len(highlight) - 1) / 2) for i, p in enumerate(highlight)})
    idx = s.set_index(["set", "model", "protocol"])
    for name in others + list(highlight):
        if name not in names:
            continue
        sub = idx.xs(name, level="protocol").reindex(keys)
        ypos = np.arange(len(keys)) + offsets[name]
        v, lo, hi = (sub[k].to_numpy(dtype=float) for k in ("r2_geom", "r2_geom_lo", "r2_geom_hi"))
        err = np.vstack([np.maximum(v - lo, 0), np.maximum(hi - v, 0)])
        kw = dict(color=colors[name], ms=5, elinewidth=1.4, zorder=3, label=name) if name in highlight else \
            dict(color="0.6", ms=2.5, elinewidth=0.6, alpha=0.7, zorder=2)
        ax.errorbar(v, ypos, xerr=err, fmt="o", capsize=0, **kw)
    ax.errorbar([], [], xerr=[], fmt="o", color="0.6", ms=2.5, label="every other protocol")
    short = {label: label.split(" ")[0] if label != AEV_SET else "ANI-2x chapter" for label in dict.fromkeys(s["set"])}
    short.update({"QM9 subset": "QM9 subset", "held-out test split": "held-out"})
    ax.set_yticks(np.arange(len(keys)), [f"{m}  ({short[lab]})" for lab, m in keys], fontsize=8)
    ax.invert_yaxis()
    if np.nanmax(np.abs(s[["r2_geom_lo", "r2_geom_hi"]].to_numpy(dtype=float))) > 1.0:
        ax.set_xscale("symlog", linthresh=1.0, linscale=4.0)
        ax.set_xlim(right=1.0)
        ticks = [t for t in (-1000, -100, -10, -1, -0.5, 0, 0.5, 1) if t >= ax.get_xlim()[0]]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.axvline(0, color="0.4", lw=0.8)
    ax.set(xlabel=f"ridge R²_geom of the {target} (95 % interval; linear in [-1, 1], logarithmic beyond)",
           ylabel="")
    ax.legend(frameon=False, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, fontsize=8)
    fig.tight_layout()
    plt.close(fig)
    return fig


def _fmt(v, lo, hi) -> str:
    from cpd_core.report import format_interval

    return format_interval(v, lo, hi)


def sensitivity_facts(run: SensitivityRun) -> dict:
    """The numbers the chapter's prose quotes."""
    from cpd_core.paper import paper_value

    s = run.summary
    gap = s[s["target"] == "gap"]
    cs = choice_summary(run)
    facts = {"protocols": len(run.protocols),
             "targets": ", ".join(dict.fromkeys(s["target"])),
             "paper_ani_ridge": f"{paper_value('r2_geom', 'ANI-2x', 'gap', 'ridge'):+.3f}"}
    sets = list(run.n)
    counts = {label: s[s["set"] == label]["model"].nunique() for label in sets}
    facts["sets"] = "; ".join(f"{label}: {run.n[label]:,} molecules, {k} model{'s' if k != 1 else ''}"
                              for label, k in counts.items())
    facts["n_models"] = int(s.drop_duplicates(["set", "model"]).shape[0])
    facts["size_order"] = "; ".join(f"{label} {rho:.2f}" for label, rho in run.size_order.items()) or "not measured"
    # which single choice moves the gap's R²_geom, and how often resolved
    parts = []
    for _, r in cs[(cs["target"] == "gap") & (cs["protocol"] != OURS)].iterrows():
        if r["protocol"] in PROTOCOLS and not r["protocol"].startswith("matscope"):
            parts.append(f"{r['protocol']} lowered {r['lowered']}, raised {r['raised']} of {r['models']}")
    facts["gap_moves"] = "; ".join(parts)
    none_moved = [r["protocol"] for _, r in cs[(cs["target"] == "gap") & (cs["protocol"] != OURS)].iterrows()
                  if r["lowered"] == 0 and r["raised"] == 0]
    facts["gap_unmoved"] = "; ".join(none_moved) if none_moved else "none"
    flips = sign_flips(run)
    for t in ("gap", "dipole"):
        if t not in set(s["target"]):
            facts[f"sign_flips_{t}"] = facts[f"sign_flips_matscope_{t}"] = "not probed"
            continue
        ft = flips[flips["target"] == t]
        mat = ft["protocol"].str.startswith("matscope")
        facts[f"sign_flips_{t}"] = _flip_text(ft[~mat])
        by = ft[mat].groupby("protocol", sort=False).size()
        facts[f"sign_flips_matscope_{t}"] = "; ".join(f"{p}: {k}" for p, k in by.items()) if len(by) else "none"
    same = s[s["same block as"].fillna("") != ""].drop_duplicates(["set", "model"]) if "same block as" in s else s[:0]
    facts["same_block"] = ("; ".join(f"{r['model']}'s gap block is {r['same block as']}'s ({r['block']}), so its "
                                     "numbers are the same" for _, r in same.iterrows()) if len(same)
                           else "no two models share a gap block")
    o = run.orders
    for t in ("gap", "dipole"):
        ot = o[o["target"] == t] if len(o) else o
        if not len(ot):
            facts[f"order_flips_{t}"] = "none (no order resolved under ours)"
            continue
        pairs = ot.drop_duplicates(["set", "model_a", "model_b"]).shape[0]
        fl = ot[ot["flipped"]]
        by = fl.groupby("protocol").size().sort_values(ascending=False)
        facts[f"order_pairs_{t}"] = pairs
        facts[f"order_flips_{t}"] = ("; ".join(f"{p}: {k} of {pairs}" for p, k in by.items()) if len(by)
                                     else f"none of {pairs}")
    # ANI-2x
    for label in sets:
        a = ani_rows(run)
        a = a[a["set"] == label].set_index("protocol") if len(a) else a
        if not len(a):
            continue
        key = "aev2000" if label == AEV_SET else "aev500"
        facts[f"{key}_n"] = int(a["n"].iloc[0])
        facts[f"{key}_ours"] = _fmt(*a.loc[OURS, ["r2_geom", "r2_geom_lo", "r2_geom_hi"]])
        if MATSCOPE_NAME in a.index:
            facts[f"{key}_matscope"] = _fmt(*a.loc[MATSCOPE_NAME, ["r2_geom", "r2_geom_lo", "r2_geom_hi"]])
            facts[f"{key}_matscope_worst"] = f"{a.loc[MATSCOPE_NAME, 'worst_fold']:.3g}"
            facts[f"{key}_matscope_change"] = _fmt(*a.loc[MATSCOPE_NAME, ["change", "change_lo", "change_hi"]])
        inside = [p for p in a.index if a.loc[p, "paper inside"]]
        facts[f"{key}_paper_inside"] = "; ".join(inside) if inside else "none"
        negative = [f"{p} ({_fmt(*a.loc[p, ['r2_geom', 'r2_geom_lo', 'r2_geom_hi']])})" for p in a.index
                    if a.loc[p, "r2_geom_hi"] < 0]
        facts[f"{key}_negative"] = "; ".join(negative) if negative else "none"
        ablate = [f"{p.split(', ', 1)[1]} {_fmt(*a.loc[p, ['r2_geom', 'r2_geom_lo', 'r2_geom_hi']])}"
                  for p in a.index if p.startswith("matscope, ")]
        facts[f"{key}_matscope_back"] = "; ".join(ablate) if ablate else "not run"
        back = [p for p in a.index if p.startswith("matscope, ")]
        facts[f"{key}_back_positive"] = "; ".join(p.split(", ", 1)[1] for p in back
                                                  if a.loc[p, "r2_geom_lo"] > 0) or "none"
        facts[f"{key}_back_negative"] = "; ".join(p.split(", ", 1)[1] for p in back
                                                  if a.loc[p, "r2_geom_hi"] < 0) or "none"
        pos = facts[f"{key}_back_positive"]
        facts[f"{key}_back_verdict"] = ("no single one of matscope's choices is responsible: with any one of them put "
                                        "back to ours, its interval stays below zero"
                                        if pos == "none" else
                                        f"putting back one of matscope's choices alone brings its interval above zero: "
                                        f"{pos}")
        single = [p for p in a.index if p != OURS and not p.startswith("matscope")]
        facts[f"{key}_single_negative"] = "; ".join(p for p in single if a.loc[p, "r2_geom_hi"] < 0) or "none"
        if MATSCOPE_NAME in a.index:
            facts[f"{key}_matscope_paper"] = "inside" if a.loc[MATSCOPE_NAME, "paper inside"] else "outside"
        if MATSCOPE_NAME in a.index:
            row = a.loc[MATSCOPE_NAME]
            facts[f"{key}_reappears"] = (
                "the paper's value reappears under the author's toolkit: it lies inside the interval"
                if row["paper inside"] else
                "the sign of the paper's value reappears under the author's toolkit, but not its size"
                if row["r2_geom_hi"] < 0 else "the paper's value does not reappear under the author's toolkit")
        for p in (OURS, MATSCOPE_NAME):
            if p in a.index:
                side = _sign(a.loc[p, "r2_geom_lo"], a.loc[p, "r2_geom_hi"])
                facts[f"{key}_{'ours' if p == OURS else 'matscope'}_side"] = {1: "above zero", -1: "below zero",
                                                                                0: "across zero"}[side]
        for p, k in (("plain z-score", "zscore"), ("α = 1", "alpha1"), ("no scaling", "noscale"),
                     ("unshuffled folds", "unshuffled"), ("fractions, no intercept", "fractions")):
            if p in a.index:
                facts[f"{key}_{k}"] = _fmt(*a.loc[p, ["r2_geom", "r2_geom_lo", "r2_geom_hi"]])
    # matscope over every model
    ms = gap[gap["protocol"] == MATSCOPE_NAME]
    if len(ms):
        c = run.contrasts
        mc = c[(c["target"] == "gap") & (c["protocol"] == MATSCOPE_NAME)]
        facts["matscope_lowered"] = int((mc["resolved"] & (mc["diff"] < 0)).sum())
        facts["matscope_raised"] = int((mc["resolved"] & (mc["diff"] > 0)).sum())
        facts["matscope_models"] = len(mc)
        facts["matscope_negative"] = int((ms["r2_geom_hi"] < 0).sum())
        exact = gap[gap["protocol"] == "matscope, exact projection (train folds)"].set_index(["set", "model"])
        raised = []
        for _, r in mc[mc["resolved"] & (mc["diff"] > 0)].iterrows():
            text = f"{r['model']} (ours {r['ours']:.3f}, matscope {r['this protocol']:.3f}"
            if (r["set"], r["model"]) in exact.index:
                text += f", matscope with the exact projection {exact.loc[(r['set'], r['model']), 'r2_geom']:.3f}"
            raised.append(text + ")")
        facts["matscope_raised_models"] = "; ".join(raised) if raised else "none"
        facts["ours_negative"] = int((gap[gap["protocol"] == OURS]["r2_geom_hi"] < 0).sum())
    return facts


def _flip_text(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "none"
    return "; ".join(f"{r['model']} under {r['protocol']} ({_fmt(r['ours'], r['ours_lo'], r['ours_hi'])} → "
                     f"{_fmt(r['this protocol'], r['this protocol_lo'], r['this protocol_hi'])})"
                     for _, r in frame.iterrows())


def sensitivity_measurements(run: SensitivityRun) -> list:
    """The scorecard's number from this chapter: ANI-2x's AEV, gap ridge R²_geom under matscope 0.2.0's protocol,
    on the ANI-2x chapter's subset when it was run, else on the models chapter's."""
    from cpd_core.scorecard import Measurement

    a = ani_rows(run)
    if a.empty or MATSCOPE_NAME not in set(a["protocol"]):
        return []
    a = a[a["protocol"] == MATSCOPE_NAME]
    row = a[a["set"] == AEV_SET].iloc[0] if AEV_SET in set(a["set"]) else a.iloc[0]
    return [Measurement("ani_gap_ridge", float(row["r2_geom"]), float(row["r2_geom_lo"]), float(row["r2_geom_hi"]),
                        n=int(row["n"]),
                        what="ANI-2x AEV, matscope 0.2.0's protocol (element fractions; composition removed by "
                             "Ridge(α=1) on standardised fractions fitted on all rows; StandardScaler + Ridge(α=1); "
                             "unshuffled 5-fold, mean of fold R²), reimplemented and checked against the package",
                        reason="the author's public toolkit's protocol; the paper does not state the one behind its "
                               "number")]


__all__ = ["AEV_SET", "MATSCOPE", "MATSCOPE_NAME", "OURS", "PROTOCOLS", "Protocol", "ProtocolResult", "RTOL",
           "SensitivityRun", "ani_rows", "attach_intervals", "choice_summary", "compare_protocols",
           "composition_columns", "fold_assignment", "model_table", "probe_sensitivity", "protocol_table",
           "replicates", "ridge_residual", "score_protocols", "sensitivity_facts", "sensitivity_measurements",
           "sensitivity_plot", "set_tables", "sign_flips", "standard_scale"]
