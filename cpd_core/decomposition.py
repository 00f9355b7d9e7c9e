r"""Composition Projection Decomposition: three cross-validated R² per target.

For features :math:`H`, composition :math:`C` and target :math:`y`, each fold
:math:`f` of a shuffled, seeded K-fold split gives

.. math::

    R^2_{\text{full}} &= R^2\big(y_{\text{test}},\ \hat p(H_{\text{test}})\big) \\
    R^2_{\text{comp}} &= R^2\big(y_{\text{test}},\ C_{\text{test}} \hat\beta\big),
        \quad \hat\beta = \arg\min_\beta \|y_{\text{train}} - C_{\text{train}}\beta\|^2 \\
    R^2_{\text{geom}} &= R^2\big(y_{\text{test}},\ \hat p(H^\perp_{\text{test}})\big)

where :math:`\hat p` is a probe fit on the training rows and :math:`H^\perp`
the residual of :math:`H` after removing span(:math:`C`)
(:mod:`cpd_core.projection`). Scores are the mean over folds; the per-fold
values are kept because a mean can hide one fold that collapsed.

``R^2_geom`` is the share of the target a probe reads from what the features
hold *beyond* a linear function of composition (Steier 2026).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.metrics import r2_score
from sklearn.model_selection import KFold

from cpd_core.errors import InputError
from cpd_core.probes import make_probe, ridge_alpha
from cpd_core.ridge import SELECT, RidgeFolds, as_alpha_grid
from cpd_core.projection import CompositionProjector, _as_2d, project_out

FIT_PROJECTION = ("train", "all")


@dataclass
class CPDResult:
    """Cross-validated CPD scores for one (features, target, probe).

    Attributes
    ----------
    r2_full, r2_comp, r2_geom : float
        Means over folds of the probe on raw features, the linear composition
        baseline, and the probe on the composition residual.
    folds : pandas.DataFrame
        One row per fold: ``r2_full``, ``r2_comp``, ``r2_geom`` and, for ridge,
        the penalties chosen (``alpha_full``, ``alpha_geom``).
    probe, cv, seed, fit_projection : as passed to :func:`cpd`
    n_samples, n_features : int
    composition_rank : int
        Numerical rank of the composition matrix (on all rows).
    y : numpy.ndarray, shape (n,)
        The target.
    fold_of : numpy.ndarray of int, shape (n,)
        The held-out fold of each row.
    oof : dict of str to numpy.ndarray
        Out-of-fold predictions (``"full"``, ``"comp"``, ``"geom"``): each row predicted by the
        probe fit without its fold. The intervals resample these.
    curve : pandas.DataFrame or None
        Ridge only: held-out R² of every penalty of the grid, one row per (fold, alpha), columns
        ``r2_full`` and ``r2_geom`` (the validation curve; the chosen penalty is in ``folds``).
    level, n_boot : float, int
        Coverage and bootstrap replicates of :attr:`ci`.
    """

    r2_full: float
    r2_comp: float
    r2_geom: float
    folds: pd.DataFrame = field(repr=False)
    probe: str
    cv: int
    seed: int
    fit_projection: str
    n_samples: int
    n_features: int
    composition_rank: int
    y: np.ndarray = field(default=None, repr=False)
    fold_of: np.ndarray = field(default=None, repr=False)
    oof: dict = field(default_factory=dict, repr=False)
    curve: pd.DataFrame | None = field(default=None, repr=False)
    level: float = 0.95
    n_boot: int = 1000
    _ci: dict | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def std(self) -> dict[str, float]:
        """Standard deviation over folds of each score."""
        return {k: float(self.folds[k].std(ddof=1)) for k in SCORES}

    @property
    def ci(self) -> dict[str, tuple[float, float]]:
        """95 % (``level``) interval of each score: ``{"r2_geom": (lo, hi), ...}``.

        Percentile interval of a bootstrap over molecules, stratified by fold, of the out-of-fold
        predictions (:func:`cpd_core.intervals.bootstrap_scores`): it covers the uncertainty of
        scoring the fitted probes on finitely many held-out molecules, not that of refitting them.
        """
        if self._ci is None:
            if self.y is None or not self.oof:
                raise InputError("intervals need the out-of-fold predictions: this result was computed without "
                                 "them (cpd_core.streaming.stream_cpd(..., oof=True) keeps them)")
            from cpd_core.intervals import bootstrap_scores, percentile_interval

            reps = bootstrap_scores(self, n_boot=self.n_boot, seed=self.seed)
            self._ci = {k: percentile_interval(v, self.level) for k, v in reps.items()}
        return self._ci

    def summary(self) -> dict:
        """One flat record: means, intervals, stds, worst fold of R²_geom, and the set-up."""
        out = {"probe": self.probe}
        for key in ("r2_comp", "r2_full", "r2_geom"):
            out[key] = getattr(self, key)
            out[f"{key}_lo"], out[f"{key}_hi"] = self.ci[key]
        out.update({
            "r2_geom_std": self.std["r2_geom"],
            "r2_geom_worst_fold": float(self.folds["r2_geom"].min()),
            "n": self.n_samples,
            "d": self.n_features,
            "rank_C": self.composition_rank,
            "fit_projection": self.fit_projection,
        })
        if "alpha_geom" in self.folds:
            out["alpha_geom_median"] = float(self.folds["alpha_geom"].median())
        return out


SCORES = ("r2_full", "r2_comp", "r2_geom")


def _check_inputs(H, C, y, cv):
    H, C = _as_2d("H", H), _as_2d("C", C)
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 1:
        raise InputError(f"y must be 1-D (one value per structure), got shape {y.shape}")
    if not (len(H) == len(C) == len(y)):
        raise InputError(f"H, C and y must have the same number of rows, got {len(H)}, {len(C)}, {len(y)}")
    if not np.isfinite(y).all():
        raise InputError(f"y contains NaN or inf at rows {np.flatnonzero(~np.isfinite(y))[:10].tolist()}")
    if isinstance(cv, bool) or not isinstance(cv, (int, np.integer)) or cv < 2:
        raise InputError(f"cv must be an integer >= 2, got {cv}")
    if len(y) < 2 * cv:
        raise InputError(f"{len(y)} rows are too few for {cv}-fold CV (need at least {2 * cv})")
    if np.ptp(y) == 0:
        raise InputError("y is constant: R² is undefined")
    return H, C, y


def fold_labels(n: int, cv: int = 5, seed: int = 0) -> np.ndarray:
    """The held-out fold of each of ``n`` rows: shuffled, seeded K-fold (scikit-learn's ``KFold``).

    Examples
    --------
    >>> fold_labels(6, cv=3, seed=0).tolist()
    [2, 1, 0, 1, 2, 0]
    """
    fold_of = np.empty(n, dtype=np.int64)
    for fold, (_, te) in enumerate(KFold(n_splits=int(cv), shuffle=True, random_state=seed).split(np.empty(n))):
        fold_of[te] = fold
    return fold_of


def _ridge_folds(H, C, y, fold_of, cv, fit_projection, standardize, grid, select, clip=True):
    """Closed-form ridge on every fold (:mod:`cpd_core.ridge`): per-fold scores, OOF, curves."""
    rf = RidgeFolds(H, C, y, fold_of, standardize=standardize, clip=clip, fit_projection=fit_projection)
    rows, curves = [], []
    oof = {"full": np.empty(len(y)), "geom": np.empty(len(y))}
    for fold in range(cv):
        train = [g for g in range(cv) if g != fold]
        row, curve = {"fold": fold}, {"fold": fold, "alpha": grid}
        for key in ("full", "geom"):
            fit = rf.fit(train, fold, grid, geom=(key == "geom"), select=select)
            row[f"r2_{key}"] = float(fit.r2[fit.chosen])
            row[f"alpha_{key}"] = float(grid[fit.chosen])
            oof[key][rf.rows[fold]] = fit.predictions
            curve[f"r2_{key}"] = fit.r2
        rows.append(row)
        curves.append(pd.DataFrame(curve))
    return rows, oof, pd.concat(curves, ignore_index=True)


def cpd(H, C, y, probe="ridge", cv: int = 5, seed: int = 0, fit_projection: str = "train",
        standardize: bool = True, alphas=None, select: str = "folds", level: float = 0.95,
        n_boot: int = 1000, clip: bool = True, full: bool = True) -> CPDResult:
    r"""Composition Projection Decomposition of one target.

    Parameters
    ----------
    H : array_like, shape (n, d)
        Pooled features, one row per structure.
    C : array_like, shape (n, k)
        Composition matrix (:func:`cpd_core.composition_matrix`), intercept included.
    y : array_like, shape (n,)
        Target.
    probe : {"ridge", "mlp", "gbt"} or scikit-learn regressor
        See :mod:`cpd_core.probes`. ``"ridge"`` runs in closed form (:mod:`cpd_core.ridge`): every
        penalty of the grid is scored on every fold from one pass over the rows.
    cv : int
        Number of shuffled K folds.
    seed : int
        Seeds the fold split, the stochastic probes and the bootstrap.
    fit_projection : {"train", "all"}
        ``"train"``: the composition projection is fit on the training folds
        and applied to the test fold (no information from test rows reaches
        the residual). ``"all"``: :func:`~cpd_core.project_out` once on all
        rows before splitting, as the paper appears to do. Both are offered so
        the difference can be measured; it is small when n ≫ rank(C).
    standardize : bool
        Feature standardisation for ridge and MLP (:class:`~cpd_core.probes.ClippedStandardScaler`).
    alphas : None, float or sequence of float
        Ridge penalties: ``None`` the default grid (:data:`~cpd_core.probes.RIDGE_ALPHAS`), a
        sequence that grid, one number a fixed penalty. The held-out R² of every penalty is kept
        (:attr:`CPDResult.curve`).
    select : {"folds", "loo", "gcv"}
        How ridge chooses its penalty inside each training fold: ``"folds"`` (default) by the
        held-out error over the training fold's own folds (each of the other ``cv - 1`` folds held out
        in turn: a nested cross-validation, as cheap as GCV here); ``"loo"`` by exact leave-one-out
        (scikit-learn ``RidgeCV``'s rule; a d x d product per training row, about 3x the cost); or
        ``"gcv"``, generalised cross-validation (free, but fooled by high-leverage rows). See
        :mod:`cpd_core.ridge`.
    level, n_boot : float, int
        Coverage and bootstrap replicates of the intervals (:attr:`CPDResult.ci`).
    clip : bool
        With ``standardize``, clip held-out standardised values to the training range (default);
        ``False`` is plain z-scoring (scikit-learn's ``StandardScaler``).

    full : bool
        Refit probes (MLP, GBT, a regressor) are fit on the raw features too (default). ``False``
        fits them on the residual only, half the cost: ``r2_full`` is then NaN. Ridge always
        reports both (its raw-feature fit costs little in closed form).

    Returns
    -------
    CPDResult

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> counts = rng.integers(0, 6, size=(1000, 3)).astype(float)
    >>> C = np.hstack([counts, np.ones((1000, 1))])
    >>> g = project_out(rng.normal(size=(1000, 1)), C)[:, 0]    # geometry, orthogonal to C
    >>> H = np.hstack([counts, g[:, None], rng.normal(size=(1000, 5))])
    >>> y = counts @ [1.0, -0.5, 0.2] + g                      # var split between C and g
    >>> res = cpd(H, C, y, probe="ridge", seed=0)
    >>> bool(res.r2_full > 0.99), bool(res.r2_comp < 0.95), bool(abs(res.r2_geom - g.var() / y.var()) < 0.02)
    (True, True, True)
    >>> lo, hi = res.ci["r2_geom"]; bool(lo < res.r2_geom < hi)
    True
    """
    return run_pending([_cpd_pending(H, C, y, probe=probe, cv=cv, seed=seed, fit_projection=fit_projection,
                                     standardize=standardize, alphas=alphas, select=select, level=level,
                                     n_boot=n_boot, clip=clip, full=full)])[0]


def cpd_many(jobs: Sequence[Mapping], progress: str | None = None, **common) -> list[CPDResult]:
    """:func:`cpd` of each job, with the folds of every refit probe in one pool of worker processes.

    The same results as ``[cpd(**common, **job) for job in jobs]`` (every fold is seeded and
    independent), but the MLP, GBT and other refit folds of all jobs are spread over
    :func:`fold_jobs` processes together, so no core idles while the last fold of one job runs.

    Parameters
    ----------
    jobs : sequence of mapping
        Keyword arguments of :func:`cpd` per job (``H``, ``C``, ``y``, ``probe``, ...).
    progress : str, optional
        Description of a progress bar over the refit folds (none by default).
    **common
        Keyword arguments shared by every job (a job's own value wins).

    Returns
    -------
    list of CPDResult
        In the order of ``jobs``.

    Examples
    --------
    >>> from cpd_core.synthetic import planted
    >>> d = planted(n=300, seed=0)
    >>> a, b = cpd_many([{"probe": "ridge"}, {"probe": "gbt", "full": False}], H=d.H, C=d.C, y=d.y, cv=3)
    >>> bool(a.r2_geom == cpd(d.H, d.C, d.y, cv=3).r2_geom), bool(np.isnan(b.r2_full))
    (True, True)
    """
    return run_pending([_cpd_pending(**{**common, **job}) for job in jobs], progress=progress)


@dataclass
class Pending:
    """A computation whose refit folds (:func:`_probe_fold` argument tuples) have yet to run.

    ``finish(outputs)`` turns the folds' outputs, in the order of ``calls``, into the result."""

    calls: list
    finish: Callable[[list], object]


def run_pending(pending: Sequence[Pending], progress: str | None = None) -> list:
    """The results of ``pending``, their folds run together on :func:`fold_jobs` processes (:func:`run_folds`)."""
    outputs = run_folds([c for p in pending for c in p.calls], progress=progress)
    results, start = [], 0
    for p in pending:
        results.append(p.finish(outputs[start:start + len(p.calls)]))
        start += len(p.calls)
    return results


def _cpd_pending(H, C, y, probe="ridge", cv: int = 5, seed: int = 0, fit_projection: str = "train",
                 standardize: bool = True, alphas=None, select: str = "folds", level: float = 0.95,
                 n_boot: int = 1000, clip: bool = True, full: bool = True) -> Pending:
    """:func:`cpd`, checked and (for ridge) computed now; the folds of a refit probe left pending."""
    if fit_projection not in FIT_PROJECTION:
        raise InputError(f"fit_projection must be one of {FIT_PROJECTION}, got {fit_projection!r}")
    make_probe(probe)  # validates the name before any work
    if select not in SELECT:
        raise InputError(f"select must be one of {SELECT}, got {select!r}")
    if not 0 < level < 1:
        raise InputError(f"level must be in (0, 1), got {level}")
    grid = as_alpha_grid(alphas)
    H, C, y = _check_inputs(H, C, y, cv)
    rank = CompositionProjector().fit(C, y).rank_
    fold_of = fold_labels(len(y), cv, seed)
    name = probe if isinstance(probe, str) else type(probe).__name__

    def assemble(rows, oof, curve=None):
        return _assemble(rows, oof, y, C, fold_of, int(cv), seed, name, fit_projection, H.shape[1], level, n_boot,
                         curve, rank)

    if isinstance(probe, str) and probe == "ridge":
        rows, oof, curve = _ridge_folds(H, C, y, fold_of, int(cv), fit_projection, standardize, grid, select, clip)
        result = assemble(rows, oof, curve)
        return Pending([], lambda outputs: result)
    H_all = project_out(H, C) if fit_projection == "all" else None
    calls = [(H, C, y, fold_of != fold, fold_of == fold, probe, seed, standardize, clip, H_all, full)
             for fold in range(int(cv))]
    return Pending(calls, lambda outputs: assemble(*collect_folds(outputs, range(int(cv)), fold_of, len(y))))


def _assemble(rows, oof, y, C, fold_of, cv, seed, probe, fit_projection, n_features, level, n_boot,
              curve=None, rank=None) -> CPDResult:
    """Add the composition baseline to per-fold probe scores and build the result."""
    oof = {"comp": np.empty(len(y)), **oof}
    for row in rows:
        te = fold_of == row["fold"]
        comp = CompositionProjector().fit(C[~te], y[~te])
        oof["comp"][te] = C[te] @ comp.coef_[:, 0]
        row["r2_comp"] = r2_score(y[te], oof["comp"][te])
    folds = pd.DataFrame(rows).set_index("fold")
    folds = folds[[c for c in ("r2_full", "r2_comp", "r2_geom", "alpha_full", "alpha_geom") if c in folds]]
    return CPDResult(
        r2_full=float(folds["r2_full"].mean()),
        r2_comp=float(folds["r2_comp"].mean()),
        r2_geom=float(folds["r2_geom"].mean()),
        folds=folds,
        probe=probe,
        cv=cv,
        seed=seed,
        fit_projection=fit_projection,
        n_samples=len(y),
        n_features=n_features,
        composition_rank=CompositionProjector().fit(C, y).rank_ if rank is None else rank,
        y=y,
        fold_of=fold_of,
        oof=oof,
        curve=curve,
        level=level,
        n_boot=n_boot,
    )


def _probe_fold(H, C, y, tr, te, probe, seed, standardize, clip=True, H_all=None, full=True):
    """One fold of any probe (MLP, GBT, a user's regressor) on raw features and on the residual.

    The residual is the training-fold projection, or rows of ``H_all`` (projected on all rows).
    Returns the fold's scores (and ridge penalties) and the held-out predictions per feature set.
    ``full=False`` skips the raw features: ``r2_full`` and its predictions are NaN.
    """
    if H_all is None:
        proj = CompositionProjector().fit(C[tr], H[tr])
        R_tr, R_te = proj.transform(C[tr], H[tr]), proj.transform(C[te], H[te])
    else:
        R_tr, R_te = H_all[tr], H_all[te]
    row, pred = {}, {}
    if not full:
        row["r2_full"], pred["full"] = np.nan, np.full(len(y[te]), np.nan)
    for key, X_tr, X_te in ((("full", H[tr], H[te]),) if full else ()) + (("geom", R_tr, R_te),):
        model = make_probe(probe, seed=seed, standardize=standardize, clip=clip).fit(X_tr, y[tr])
        pred[key] = model.predict(X_te)
        row[f"r2_{key}"] = r2_score(y[te], pred[key])
        alpha = ridge_alpha(model)
        if alpha is not None:
            row[f"alpha_{key}"] = alpha
    return row, pred


def fold_jobs() -> int:
    """Worker processes for the folds of MLP, GBT and other row-wise probes: ``$CPD_JOBS``, else every core
    this process may use. The folds are independent and seeded, so the results do not depend on it;
    each worker runs single-threaded (BLAS/OpenMP as the caller pins them)."""
    env = os.environ.get("CPD_JOBS")
    if env:
        try:
            jobs = int(env)
        except ValueError:
            raise InputError(f"CPD_JOBS must be a whole number of processes, got {env!r}") from None
        if jobs < 1:
            raise InputError(f"CPD_JOBS must be at least 1, got {jobs}")
        return jobs
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def run_folds(calls: list[tuple], progress: str | None = None) -> list:
    """``_probe_fold(*args)`` for each argument tuple, on :func:`fold_jobs` processes (in order).

    ``progress``: a description for a progress bar over the folds (none by default)."""
    from tqdm import tqdm

    jobs = min(fold_jobs(), len(calls))
    bar = dict(total=len(calls), desc=progress, unit="fold", disable=progress is None)
    if jobs <= 1:
        return [_probe_fold(*args) for args in tqdm(calls, **bar)]
    from joblib import Parallel, delayed

    # loky replaces a worker whose memory grew (MLP fits on wide blocks) and says so from its
    # manager thread, possibly after this call returns, so the filter stays for the process; the
    # jobs still run, each seeded, so the numbers are the same
    warnings.filterwarnings("ignore", message="A worker stopped while some jobs were given", category=UserWarning)
    outputs = Parallel(n_jobs=jobs, backend="loky", return_as="generator")(
        delayed(_probe_fold)(*args) for args in calls)
    return list(tqdm(outputs, **bar))


def collect_folds(outputs, folds, fold_of, n):
    """Per-fold rows and out-of-fold predictions from :func:`_probe_fold` outputs, one per fold of ``folds``."""
    oof = {"full": np.empty(n), "geom": np.empty(n)}
    rows = []
    for fold, (row, pred) in zip(folds, outputs):
        te = fold_of == fold
        for key in oof:
            oof[key][te] = pred[key]
        rows.append({"fold": fold, **row})
    return rows, oof


def cpd_table(H, C, targets: dict, probes=("ridge", "mlp", "gbt"), progress: bool = True,
              **kwargs) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run :func:`cpd` for every (target, probe) pair.

    Parameters
    ----------
    H, C : array_like
        As in :func:`cpd`.
    targets : dict of str to array_like
        Target name → values.
    probes : sequence
        Probe names (or regressors).
    progress : bool
        Show a progress bar.
    **kwargs
        Passed to :func:`cpd` (``cv``, ``seed``, ``fit_projection``, ...).

    Returns
    -------
    summary : pandas.DataFrame
        One row per (target, probe) with :meth:`CPDResult.summary`.
    folds : pandas.DataFrame
        Long format: one row per (target, probe, fold, score).
    """
    from tqdm import tqdm

    jobs = [(t, p) for t in targets for p in probes]
    summary, folds = [], []
    for target, probe in tqdm(jobs, desc="CPD probes", disable=not progress):
        res = cpd(H, C, targets[target], probe=probe, **kwargs)
        summary.append({"target": target, **res.summary()})
        long = res.folds[["r2_full", "r2_comp", "r2_geom"]].reset_index().melt(
            id_vars="fold", var_name="score", value_name="r2")
        folds.append(long.assign(target=target, probe=res.probe))
    return pd.DataFrame(summary), pd.concat(folds, ignore_index=True)
