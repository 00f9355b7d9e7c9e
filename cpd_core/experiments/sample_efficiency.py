r"""Sample efficiency: how R²_geom grows with the number of molecules a probe is trained on.

The paper states that linearly disentangled representations are more sample-efficient under linear
probing. Here each model's learning curve is measured, for the gap and for the dipole, on the block the
models chapter reports for that target (chosen nested, per outer fold, from its cached scan): for every
outer fold :math:`f` of the same shuffled, seeded 5 folds, the probe (projection, clipped scaler, ridge
with its penalty chosen on inner folds) is refit on :math:`m` molecules drawn from the training folds,
on a doubling grid :math:`m = 32, 64, \dots` up to all training rows (:func:`size_grid`), and scored on
fold :math:`f`. The draw keeps each training fold's share (:func:`subsample`), so the inner folds that
choose the penalty are the subset's rows of the other outer folds; at the largest size the fit *is*
the scan's (its held-out predictions are read from it). Each size below the largest is drawn
``draws`` times with seeded draws, and

.. math::

    R^2_\text{geom}(m) = \frac{1}{R} \sum_{r=1}^{R} \frac{1}{K} \sum_f R^2\big(y_f,\ \hat p_{f,m,r}(H^\perp_f)\big).

Readings of "more sample-efficient" are compared with the disentanglement :math:`D =
R^2_\text{geom}(m_\text{max})` over models, by Spearman's rank correlation :math:`\rho`:

``absolute``
    :math:`A = R^2_\text{geom}(m_\text{min})`: what a linear probe reads from the fewest molecules.
    A positive :math:`\rho(D, A)` says the models' order at all training rows holds at the fewest
    (the learning curves do not cross); it is the paper's statement read literally.
``relative``
    :math:`F = \frac{1}{|M|}\sum_{m \in M} R^2_\text{geom}(m) / D`, the mean share of its own ceiling a
    model reaches along the grid (the area under its curve on a log axis, normalised), for the models
    whose :math:`D` has an interval above zero. A positive :math:`\rho(D, F)` says the better
    disentangled models also approach their ceiling with fewer molecules. It is not free of :math:`D`
    either: if every curve fell short of its ceiling by the same amount at each size (the same
    estimation error), :math:`F = 1 - c/D` would still rise with :math:`D`.
``shortfall``
    :math:`S = D - A`, how far below its ceiling a model starts. Under that same-error null
    :math:`\rho(D, S) = 0`; if the curves were the same shape scaled by :math:`D`, :math:`\rho(D, S) > 0`.
    Only a *negative* :math:`\rho(D, S)` says that better disentangled models lose less when labels are
    few, beyond either null.
``n90``
    :math:`n_{90}`, the number of training molecules at which the curve first reaches 90 % of its own
    :math:`D` (:func:`n_reach`: interpolated on :math:`\log m` between grid sizes), for the models whose
    :math:`D` has an interval above zero. A *negative* :math:`\rho(D, n_{90})` says better disentangled
    models get there with fewer molecules; like ``relative`` it leans that way under the same-error
    null (the 10 % margin :math:`0.1 D` is wider for a larger :math:`D`).

Every interval is a bootstrap over held-out molecules, stratified by fold (the resamples of
:func:`cpd_core.intervals.bootstrap_r2`, computed as resample counts times squared errors,
:func:`fold_r2`); every model is scored on the *same* resamples, so the replicates of :math:`\rho`
are paired over models. They cover the molecules, not the refitting on other subsets nor the choice
of models: Spearman's own p-value (a permutation null over the models) is given beside them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cpd_core.errors import InputError

#: The fewest training molecules of a learning curve.
SMALLEST = 32
#: Readings of sample efficiency (see the module docstring).
MEASURES = ("absolute", "relative", "shortfall", "n90")
#: The targets of the learning curves: the issue's two.
TARGETS = ("gap", "dipole")
#: The share of its own largest-size score at which a curve's ``n90`` is read.
SHARE = 0.9


def shuffled(target: str) -> str:
    """Name of the control: ``target`` shuffled over molecules.

    >>> shuffled("gap")
    'gap (shuffled)'
    """
    return f"{target} (shuffled)"


#: The shuffled gap: a control on which every learning curve should stay at or below zero.
SHUFFLED = shuffled("gap")


def size_grid(n_train: int, smallest: int = SMALLEST) -> list[int]:
    """Training-set sizes of a learning curve: doubling from ``smallest`` while below ``n_train``, then ``n_train``.

    Examples
    --------
    >>> size_grid(400)
    [32, 64, 128, 256, 400]
    >>> size_grid(256)
    [32, 64, 128, 256]
    >>> size_grid(20)
    [20]
    """
    if n_train < 1 or smallest < 1:
        raise InputError(f"sizes must be positive, got n_train={n_train}, smallest={smallest}")
    sizes, m = [], int(smallest)
    while m < n_train:
        sizes.append(m)
        m *= 2
    return sizes + [int(n_train)]


def subsample(fold_of, test: int, m: int, rng) -> np.ndarray:
    """Row positions of ``m`` training molecules for outer fold ``test``, spread evenly over the other folds.

    Each training fold gives ``m // (K - 1)`` rows (the first ``m % (K - 1)`` one more), drawn without
    replacement, so the subset's inner folds (its rows of each other outer fold) stay balanced.

    Examples
    --------
    >>> fold_of = np.arange(20) % 4
    >>> rows = subsample(fold_of, 0, 7, np.random.default_rng(0))
    >>> len(rows), sorted(np.bincount(fold_of[rows], minlength=4).tolist())
    (7, [0, 2, 2, 3])
    """
    fold_of = np.asarray(fold_of)
    K = int(fold_of.max()) + 1
    train = [g for g in range(K) if g != test]
    if m < len(train):
        raise InputError(f"{m} training molecules cannot fill {len(train)} inner folds")
    out = []
    for i, g in enumerate(train):
        rows = np.flatnonzero(fold_of == g)
        take = m // len(train) + (1 if i < m % len(train) else 0)
        if take > len(rows):
            raise InputError(f"fold {g} has {len(rows)} rows, {take} asked")
        out.append(rows if take == len(rows) else rng.choice(rows, size=take, replace=False))
    return np.sort(np.concatenate(out))


def curve_predictions(blocks: dict, C, ys: dict, fold_of, sizes: Sequence[int], draws: int = 5, seed: int = 0,
                      probe: str = "ridge", alphas=None, known: dict | None = None) -> dict:
    """Out-of-fold predictions of the probe on the geometric residual, at each training-set size and draw.

    Parameters
    ----------
    blocks : dict of int to numpy.ndarray (n, d_f), or dict of str to such dicts
        Outer fold → the features probed for it (the block chosen for that fold), for every target; or
        target → its own such dict (each target its own nested block per fold).
    C : numpy.ndarray, shape (n, k)
    ys : dict of str to numpy.ndarray, shape (n,)
        Targets. With ridge, the targets that probe the same array in a fold share its per-fold Gram
        matrices and eigendecompositions (:meth:`cpd_core.ridge.RidgeFolds.retarget`).
    fold_of : numpy.ndarray of int, shape (n,)
        The outer folds (:func:`cpd_core.decomposition.fold_labels`).
    sizes : sequence of int or None
        Training molecules per outer fold; ``None``, or a size at least as large as a fold's training
        rows, uses them all (one fit, the same in every draw).
    draws, seed : int
        Subsets per size and their seed (draw ``r`` of size ``m`` of fold ``f`` is the same for every
        model and target: the curves are paired).
    probe : {"ridge", "mlp", "gbt"}
        Ridge in closed form with inner-fold penalty choice (the scans' probe); others refit row-wise.
    known : dict of str to numpy.ndarray (n,), optional
        Target → held-out predictions of this probe at all training rows, already computed (the block
        scan's nested ones): those targets are not refit at the largest size.

    Returns
    -------
    dict of str to numpy.ndarray, shape (len(sizes), draws, n)
    """
    from cpd_core.decomposition import run_folds
    from cpd_core.ridge import RidgeFolds

    fold_of = np.asarray(fold_of)
    K = int(fold_of.max()) + 1
    n = len(fold_of)
    known = known or {}
    per_target = blocks if blocks and all(isinstance(k, str) for k in blocks) else {t: blocks for t in ys}
    missing = [t for t in ys if t not in per_target]
    if missing:
        raise InputError(f"no blocks for target(s) {missing}")
    out = {t: np.full((len(sizes), draws, n), np.nan) for t in ys}
    pending, on_all_rows = [], {}
    for f in range(K):
        te = np.flatnonzero(fold_of == f)
        groups = {}                                    # targets probing the same array in this fold
        for t in ys:
            groups.setdefault(id(per_target[t][f]), []).append(t)
        for i, m in enumerate(sizes):
            every = m is None or m >= n - len(te)
            rng = np.random.default_rng([seed, f, 0 if every else int(m)])
            for r in range(1 if every else draws):
                tr = np.flatnonzero(fold_of != f) if every else subsample(fold_of, f, m, rng)
                for group in groups.values():
                    todo = [t for t in group if not (every and t in known)]
                    if not todo:
                        continue
                    H = per_target[todo[0]][f]
                    if probe != "ridge":
                        mask_tr, mask_te = np.zeros(n, bool), np.zeros(n, bool)
                        mask_tr[tr], mask_te[te] = True, True
                        pending += [((t, i, r, te), (H, C, ys[t], mask_tr, mask_te, probe, seed, True, True, None,
                                                     False)) for t in todo]
                        continue
                    if every:
                        # all rows in every fold: one RidgeFolds per array serves each fold that probes it
                        rfs = on_all_rows.setdefault(id(H), {})
                        for t in todo:
                            if t not in rfs:
                                rfs[t] = (RidgeFolds(_live_columns(H), C, ys[t], fold_of) if not rfs
                                          else next(iter(rfs.values())).retarget(ys[t]))
                            fit = rfs[t].fit([g for g in range(K) if g != f], f, alphas, geom=True, select="folds")
                            out[t][i, r, te] = fit.predictions
                        continue
                    rows = np.concatenate([te, tr])
                    rf, H_rows = None, _live_columns(H[rows])
                    for t in todo:
                        y = ys[t][rows]
                        rf = RidgeFolds(H_rows, C[rows], y, fold_of[rows]) if rf is None else rf.retarget(y)
                        fit = rf.fit([g for g in range(K) if g != f], f, alphas, geom=True, select="folds")
                        out[t][i, r, te] = fit.predictions
            if every:
                for t in ys:
                    if t in known:
                        out[t][i, 0, te] = np.asarray(known[t])[te]
    if pending:
        for ((t, i, r, te), _), (_, pred) in zip(pending, run_folds([call for _, call in pending])):
            out[t][i, r, te] = pred["geom"]
    for t in ys:
        for i in range(len(sizes)):
            # a fold fit on all its training rows ran once: that fit stands in every draw
            out[t][i, 1:] = np.where(np.isnan(out[t][i, 1:]), out[t][i, :1], out[t][i, 1:])
    return out


def _live_columns(H: np.ndarray) -> np.ndarray:
    """``H`` without its columns that are zero on every row (AEV pairs of absent elements, species networks of
    absent species). Such a column changes no fit of :class:`~cpd_core.ridge.RidgeFolds`: its residual and
    Gram entries are exactly zero, so the probe drops it as constant; leaving it out saves its share of the
    :math:`d^2` work.

    >>> _live_columns(np.array([[0.0, 1.0, 0.0], [0.0, 2.0, 3.0]])).tolist()
    [[1.0, 0.0], [2.0, 3.0]]
    """
    live = np.any(H != 0, axis=0)
    return H if live.all() else H[:, live]


def fold_r2(y, fold_of, predictions, n_boot: int = 1000, seed: int = 0, chunk: int = 100):
    r"""Fold-mean held-out R² of each prediction vector, and its bootstrap replicates.

    The replicates are those of :func:`cpd_core.intervals.bootstrap_r2` (the same resamples, drawn in
    the same order from ``seed``), computed at once for every prediction: a resample of fold :math:`f`
    is a count vector :math:`w` over its rows, and :math:`\mathrm{SSE}_b = w^\top e^2`,
    :math:`\mathrm{SST}_b = w^\top y_c^2 - (w^\top y_c)^2 / n_f` (:math:`y_c`: centred on the fold).

    Parameters
    ----------
    y : numpy.ndarray, shape (n,)
    fold_of : numpy.ndarray of int, shape (n,)
    predictions : numpy.ndarray, shape (J, n)

    Returns
    -------
    (values, replicates) : numpy.ndarray of shape (J,) and (n_boot, J)

    Examples
    --------
    >>> from cpd_core.intervals import bootstrap_r2
    >>> rng = np.random.default_rng(0)
    >>> y = rng.normal(size=300); P = y + rng.normal(size=(4, 300)) * [[0.1], [0.5], [1.0], [2.0]]
    >>> values, reps = fold_r2(y, np.arange(300) % 3, P, n_boot=50)
    >>> bool(np.allclose(reps, bootstrap_r2(y, np.arange(300) % 3, list(P), n_boot=50), atol=1e-10))
    True
    """
    if n_boot < 1:
        raise InputError(f"n_boot must be >= 1, got {n_boot}")
    y = np.asarray(y, dtype=np.float64)
    fold_of = np.asarray(fold_of)
    P = np.atleast_2d(np.asarray(predictions, dtype=np.float64))
    folds = [np.flatnonzero(fold_of == f) for f in np.unique(fold_of)]
    E2 = (y[None, :] - P) ** 2
    values = np.zeros(P.shape[0])
    fold_data = []
    for idx in folds:
        yc = y[idx] - y[idx].mean()
        values += 1.0 - E2[:, idx].sum(axis=1) / np.sum(yc ** 2)
        fold_data.append((idx, yc, np.ascontiguousarray(E2[:, idx].T)))
    rng = np.random.default_rng(seed)
    reps = np.zeros((n_boot, P.shape[0]))
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        for idx, yc, e2 in fold_data:
            nf = len(idx)
            pick = rng.integers(0, nf, size=(b, nf))
            w = np.bincount((np.arange(b)[:, None] * nf + pick).ravel(), minlength=b * nf).reshape(b, nf)
            w = w.astype(np.float64)
            sst = w @ yc ** 2 - (w @ yc) ** 2 / nf
            sst = np.where(sst > 0, sst, np.nan)
            reps[start:start + b] += 1.0 - (w @ e2) / sst[:, None]
    return values / len(folds), reps / len(folds)


def curve_scores(y, fold_of, predictions: np.ndarray, n_boot: int = 1000, seed: int = 0):
    """R²_geom per size (mean over draws of the fold-mean R²) and its bootstrap replicates.

    Parameters
    ----------
    predictions : numpy.ndarray, shape (n_sizes, draws, n)

    Returns
    -------
    (values, replicates) : numpy.ndarray of shape (n_sizes,) and (n_boot, n_sizes)
        Replicates on the fold-stratified resamples of :func:`~cpd_core.intervals.bootstrap_r2` with
        ``seed``: the same molecules for every call with the same ``y``, ``fold_of`` and ``seed``.
    """
    S, R, n = predictions.shape
    values, reps = fold_r2(y, fold_of, predictions.reshape(S * R, n), n_boot=n_boot, seed=seed)
    return values.reshape(S, R).mean(axis=1), reps.reshape(n_boot, S, R).mean(axis=2)


def n_reach(values, sizes, share: float = SHARE) -> np.ndarray:
    r"""Training molecules at which each learning curve first reaches ``share`` of its own last value :math:`D`.

    With :math:`i` the first grid size where :math:`R^2(m_i) \ge s D`, the crossing is interpolated
    linearly in :math:`\log m` between :math:`m_{i-1}` and :math:`m_i`. Explicit cases:

    - :math:`D \le 0` or NaN anywhere on the curve: NaN (no ceiling to reach a share of);
    - reached at the smallest size: :math:`m_0` (the value is censored: it may be reached with fewer);
    - "not reached" cannot occur for :math:`D > 0`: the last point *is* :math:`D \ge s D`.

    Parameters
    ----------
    values : numpy.ndarray, shape (..., n_sizes)
    sizes : sequence of int, increasing

    Examples
    --------
    >>> n_reach(np.array([[0.0, 0.45, 0.5], [0.5, 0.5, 0.5], [0.1, 0.2, -0.1]]), [32, 64, 128]).tolist()
    [64.0, 32.0, nan]
    >>> float(np.round(n_reach(np.array([0.0, 0.9, 1.0]), [32, 64, 128], share=0.45), 3))  # halfway on log m
    45.255
    """
    v = np.asarray(values, dtype=np.float64)
    logm = np.log(np.asarray(sizes, dtype=np.float64))
    if v.shape[-1] != len(logm):
        raise InputError(f"{v.shape[-1]} values per curve for {len(logm)} sizes")
    D = v[..., -1]
    target = share * D
    ok = (D > 0) & ~np.isnan(v).any(axis=-1)
    i = np.argmax(v >= target[..., None], axis=-1)
    prev = np.maximum(i - 1, 0)
    v0 = np.take_along_axis(v, prev[..., None], axis=-1)[..., 0]
    v1 = np.take_along_axis(v, i[..., None], axis=-1)[..., 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(i > 0, (target - v0) / (v1 - v0), 0.0)
        out = np.exp(logm[prev] + frac * (logm[i] - logm[prev]))
    return np.where(ok, out, np.nan)


def n90_note(n90: float, D: float, smallest: int = SMALLEST) -> str:
    """What an ``n90`` value means: ``"D ≤ 0"``, ``"at or below {smallest}"`` (censored) or ``"reached"``.

    >>> n90_note(float("nan"), -0.1), n90_note(32.0, 0.5), n90_note(80.0, 0.5)
    ('D ≤ 0', 'at or below 32', 'reached')
    """
    if np.isnan(n90) or not D > 0:
        return "D ≤ 0"
    return f"at or below {smallest}" if n90 <= smallest else "reached"


def efficiency(values: np.ndarray, measure: str, sizes: Sequence[int] | None = None) -> np.ndarray:
    """Sample efficiency of learning curves ``values`` (``(..., n_sizes)``) by ``measure`` (``n90`` needs ``sizes``).

    Examples
    --------
    >>> curves = np.array([[0.2, 0.4, 0.5], [0.0, 0.3, 0.6]])
    >>> efficiency(curves, "absolute").tolist()
    [0.2, 0.0]
    >>> np.round(efficiency(curves, "relative"), 3).tolist()
    [0.733, 0.5]
    >>> np.round(efficiency(curves, "shortfall"), 3).tolist()
    [0.3, 0.6]
    >>> np.round(efficiency(curves, "n90", sizes=[32, 64, 128]), 1).tolist()
    [90.5, 111.4]
    """
    values = np.asarray(values, dtype=np.float64)
    if measure == "absolute":
        return values[..., 0]
    if measure == "relative":
        return values.mean(axis=-1) / values[..., -1]
    if measure == "shortfall":
        return values[..., -1] - values[..., 0]
    if measure == "n90":
        if sizes is None:
            raise InputError("n90 needs the sizes of the curve")
        return n_reach(values, sizes)
    raise InputError(f"measure must be one of {MEASURES}, got {measure!r}")


def rank_correlation(D: np.ndarray, E: np.ndarray, D_reps: np.ndarray, E_reps: np.ndarray,
                     level: float = 0.95) -> dict:
    """Spearman's ρ between disentanglement ``D`` and efficiency ``E`` over models, with its interval.

    ``D_reps``, ``E_reps`` (shape ``(n_boot, n_models)``) are paired replicates; the interval is the
    percentile interval of ρ over them. ``p_value`` is Spearman's test over the models (scipy).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> D = np.linspace(0, 1, 8); reps = D + 0.01 * rng.normal(size=(200, 8))
    >>> out = rank_correlation(D, D ** 2, reps, reps ** 2)
    >>> out["rho"], out["lo"] > 0.9
    (1.0, True)
    """
    from scipy.stats import rankdata, spearmanr

    from cpd_core.intervals import percentile_interval

    D, E = np.asarray(D, float), np.asarray(E, float)
    if len(D) < 3:
        return {"rho": np.nan, "lo": np.nan, "hi": np.nan, "p_value": np.nan, "n_models": len(D)}
    res = spearmanr(D, E)
    rd, re = rankdata(D_reps, axis=1), rankdata(E_reps, axis=1)
    rd -= rd.mean(axis=1, keepdims=True)
    re -= re.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        reps = np.sum(rd * re, axis=1) / np.sqrt(np.sum(rd ** 2, axis=1) * np.sum(re ** 2, axis=1))
    lo, hi = percentile_interval(reps, level)
    return {"rho": float(res.statistic), "lo": lo, "hi": hi, "p_value": float(res.pvalue), "n_models": len(D)}


@dataclass
class EfficiencyRun:
    """What :func:`sample_efficiency` computed.

    Attributes
    ----------
    curves : pandas.DataFrame
        One row per (molecules, model, target, size ``m``): ``r2_geom`` with its 95 % interval, the
        model's ``family``, ``status`` and the blocks probed.
    models : pandas.DataFrame
        One row per (molecules, model, target): ``D`` (R²_geom at all training rows), the
        efficiencies of :data:`MEASURES`, each with its interval, and ``n90_note`` (:func:`n90_note`).
    ranks : pandas.DataFrame
        One row per (molecules, group, target, measure): Spearman's ρ over models with its interval,
        p-value and the number of models. Groups: ``all`` (trained models and random-init twins) and
        ``trained`` (twins left out).
    n : dict
        Molecules probed per probe set.
    sizes : dict
        Training-set sizes per probe set.
    draws : int
    targets : tuple of str
        The targets of the curves; the shuffled control is the first one's.
    n_boot : int
        Bootstrap replicates of every interval.
    """

    curves: pd.DataFrame
    models: pd.DataFrame
    ranks: pd.DataFrame
    n: dict
    sizes: dict
    draws: int = 1
    replicates: dict = field(default_factory=dict, repr=False)
    targets: tuple = ("gap",)
    n_boot: int = 1000


def model_curves(blocks_by_fold: dict, C, ys: dict, fold_of, sizes, draws: int = 5, seed: int = 0,
                 probe: str = "ridge", n_boot: int = 1000, known: dict | None = None) -> dict:
    """Learning curves of one model: target → ``(values, replicates)`` of :func:`curve_scores`.

    ``blocks_by_fold`` and ``known`` as in :func:`curve_predictions`.
    """
    preds = curve_predictions(blocks_by_fold, C, ys, fold_of, sizes, draws=draws, seed=seed, probe=probe,
                              known=known)
    return {t: curve_scores(ys[t], fold_of, preds[t], n_boot=n_boot, seed=seed) for t in ys}


def _interval(reps: np.ndarray, measure: str) -> list:
    """95 % percentile interval of one efficiency's replicates; for ``n90`` a replicate whose ``D`` is not above
    zero never reaches its share (+inf), and the bounds are order statistics (no interpolation with inf)."""
    if measure != "n90":
        return np.percentile(reps, [2.5, 97.5]).tolist()
    x = np.where(np.isnan(reps), np.inf, reps)
    return [float(np.percentile(x, 2.5, method="lower")), float(np.percentile(x, 97.5, method="higher"))]


def model_row(vals: np.ndarray, reps: np.ndarray, sizes: Sequence[int]) -> dict:
    """``D`` and every efficiency of one learning curve, each with its 95 % interval (one row of ``models``)."""
    ci = np.percentile(reps, [2.5, 97.5], axis=0)
    row = {"D": float(vals[-1]), "D_lo": float(ci[0, -1]), "D_hi": float(ci[1, -1])}
    for measure in MEASURES:
        row[measure] = float(efficiency(vals, measure, sizes))
        row[f"{measure}_lo"], row[f"{measure}_hi"] = _interval(efficiency(reps, measure, sizes), measure)
    row["n90_note"] = n90_note(row["n90"], row["D"], sizes[0])
    return row


def ranks_of(models: pd.DataFrame, replicates: dict, target: str, sizes: Sequence[int] | None = None,
             level: float = 0.95) -> list[dict]:
    """Spearman's ρ of each measure over the models of ``models`` (one probe set), for groups ``all`` and ``trained``.

    ``replicates``: model → target → (values, replicates) of :func:`model_curves`. ``relative`` and
    ``n90`` keep only the models whose ``D`` has an interval above zero; ``n90`` needs ``sizes`` (it is
    left out without them), and a replicate whose ``D`` is not above zero ranks as never reaching.
    """
    rows = []
    sub = models[models["target"] == target]
    for group, keep in (("all", np.ones(len(sub), bool)), ("trained", (sub["status"] != "random-init").to_numpy())):
        for measure in MEASURES:
            if measure == "n90" and sizes is None:
                continue
            mask = keep & ((sub["D_lo"] > 0).to_numpy() if measure in ("relative", "n90") else True)
            names = sub["model"].to_numpy()[mask]
            if len(names) == 0:
                continue
            vals = np.array([replicates[m][target][0] for m in names])           # (models, sizes)
            reps = np.stack([replicates[m][target][1] for m in names], axis=2)   # (boot, sizes, models)
            e_reps = efficiency(np.moveaxis(reps, 2, 1), measure, sizes)
            if measure == "n90":
                e_reps = np.where(np.isnan(e_reps), np.inf, e_reps)
            out = rank_correlation(vals[:, -1], efficiency(vals, measure, sizes), reps[:, -1, :], e_reps, level)
            rows.append({"group": group, "target": target, "measure": measure, **out,
                         "models": ", ".join(names)})
    return rows


def efficiency_set(models: Sequence[str], label: str, probe_kwargs: dict, draws: int = 5, seed: int = 0,
                   probe: str = "ridge", cv: int = 5, n_boot: int = 1000, device: str = "auto",
                   progress: bool = False, targets: Sequence[str] = TARGETS) -> tuple[list, list, list, dict, int, list]:
    """Learning curves of every model of one probe set (twins with their first seed): rows of the run's tables.

    Each target is probed on its own nested block per outer fold, read from the models chapter's cached
    scan of ``targets`` (every target a cache entry of its own); with ridge, the curve at all training
    rows is that scan's nested held-out predictions. The first target is also probed shuffled.
    """
    from tqdm import tqdm

    from cpd_core.experiments.probe_set import probe_set
    from cpd_core.models import REGISTRY
    from cpd_core.selection import scan_blocks

    targets = list(targets)
    ps = probe_set(models, **probe_kwargs)
    scanned = ps.targets(targets)
    control = shuffled(targets[0])
    ys = {**scanned, control: np.random.default_rng(seed).permutation(scanned[targets[0]])}
    curves, per_model, replicates, sizes = [], [], {}, None
    for name, s in tqdm(ps.runs((0,)), desc=f"learning curves ({label})", disable=not progress):
        card = REGISTRY[name]
        blocks = ps.blocks(name, s, device=device, progress=progress)
        scan = scan_blocks(blocks, ps.C, scanned, cv=cv, seed=0, cache=True)
        choice = {t: scan.choose(t) for t in targets}
        fold_of = scan.fold_of
        if sizes is None:
            sizes = size_grid(int(min(np.sum(fold_of != f) for f in range(cv))))
        by_fold = {t: {f: blocks[b] for f, b in choice[t].choices["block"].items()} for t in targets}
        by_fold[control] = by_fold[targets[0]]
        known = {t: choice[t].result.oof["geom"] for t in targets} if probe == "ridge" else None
        replicates[name] = model_curves(by_fold, ps.C, ys, fold_of, sizes[:-1] + [None], draws=draws, seed=seed,
                                        probe=probe, n_boot=n_boot, known=known)
        info = {"molecules": label, "model": name, "family": card.family, "status": card.status}
        for t, (vals, reps) in replicates[name].items():
            block = choice[t if t in choice else targets[0]].block
            ci = np.percentile(reps, [2.5, 97.5], axis=0)
            for i, m in enumerate(sizes):
                curves.append({**info, "block": block, "target": t, "m": m, "r2_geom": vals[i],
                               "r2_geom_lo": ci[0, i], "r2_geom_hi": ci[1, i]})
            per_model.append({**info, "block": block, "target": t, **model_row(vals, reps, sizes)})
        del blocks
    frame = pd.DataFrame(per_model)
    ranks = [{"molecules": label, **r} for t in targets for r in ranks_of(frame, replicates, t, sizes)]
    return curves, per_model, ranks, replicates, len(ps.data), sizes


def sample_efficiency(models: Sequence[str] | None = None, archs: Sequence[str] | None = None, n: int | None = 500,
                      seed: int = 0, draws: int = 5, probes: Sequence[str] = ("ridge",), cv: int = 5,
                      n_boot: int = 1000, device: str = "auto", progress: bool = False,
                      targets: Sequence[str] = TARGETS) -> EfficiencyRun:
    """Learning curves of R²_geom of each target for the models chapter's two probe sets, and their rank correlations.

    Parameters
    ----------
    models, archs, n, seed
        As in :func:`~cpd_core.experiments.probe_set.chapter_sets`: the models chapter's models on its
        seeded QM9 subset, and the networks trained here on ``n`` molecules of their held-out test split.
    draws : int
        Subsets drawn per training-set size below the largest.
    probes : sequence of str
        ``"ridge"`` (the claim's probe) and optionally ``"mlp"``/``"gbt"`` (their curves are added with
        ``probe`` in the tables; the rank correlations are computed per probe).
    targets : sequence of str
        QM9 targets, each probed on its own nested block (default the gap and the dipole); the first is
        also probed shuffled over molecules (the control).
    """
    from cpd_core.experiments.probe_set import chapter_sets

    probes, targets = list(probes), list(targets)
    if not probes or any(p not in ("ridge", "mlp", "gbt") for p in probes):
        raise InputError(f"probes must be a non-empty list of 'ridge', 'mlp', 'gbt'; got {probes}")
    if not targets or len(set(targets)) != len(targets):
        raise InputError(f"targets must be a non-empty list of distinct QM9 targets; got {targets}")
    if draws < 1:
        raise InputError(f"draws must be >= 1, got {draws}")
    curves, per_model, ranks, n_of, sizes_of, reps = [], [], [], {}, {}, {}
    for label, ms, kw in chapter_sets(models, archs, n=n, seed=seed):
        for probe in probes:
            c, m, r, rep, n_mol, sizes = efficiency_set(ms, label, kw, draws=draws, seed=seed, probe=probe, cv=cv,
                                                         n_boot=n_boot, device=device, progress=progress,
                                                         targets=targets)
            curves += [{**row, "probe": probe} for row in c]
            per_model += [{**row, "probe": probe} for row in m]
            ranks += [{**row, "probe": probe} for row in r]
            reps[(label, probe)] = rep
            n_of[label], sizes_of[label] = n_mol, sizes
    return EfficiencyRun(pd.DataFrame(curves), pd.DataFrame(per_model), pd.DataFrame(ranks), n_of, sizes_of, draws,
                         reps, tuple(targets), n_boot)


def _verdict(rho: float, lo: float, hi: float) -> str:
    """Prose for one rank correlation and its interval.

    >>> _verdict(0.8, 0.5, 0.9), _verdict(0.2, -0.3, 0.6), _verdict(float("nan"), float("nan"), float("nan"))
    ('positive (interval above zero)', 'not resolved from zero', 'not computed (fewer than three models)')
    """
    if np.isnan(rho):
        return "not computed (fewer than three models)"
    if lo > 0:
        return "positive (interval above zero)"
    if hi < 0:
        return "negative (interval below zero)"
    return "not resolved from zero"


def rank_table(run: EfficiencyRun) -> pd.DataFrame:
    """Spearman's ρ per (molecules, probe, target, group, measure) with its interval, p-value and models."""
    r = run.ranks
    cols = ["molecules", "probe", "target", "group", "measure", "rho", "lo", "hi", "p_value", "n_models", "models"]
    out = r[cols].rename(columns={"lo": "rho_lo", "hi": "rho_hi"})
    return out.reset_index(drop=True)


def model_table(run: EfficiencyRun, target: str | None = None, probe: str = "ridge") -> pd.DataFrame:
    """Per model and target (``target=None``: the curves' targets, not the control): D and every efficiency,
    each with its interval (``*_lo``, ``*_hi``), and what ``n90`` means (``n90_note``)."""
    m = run.models
    keep = m["target"].isin(run.targets) if target is None else m["target"] == target
    m = m[keep & (m["probe"] == probe)]
    cols = (["molecules", "target", "model", "status", "block"]
            + [f"{c}{s}" for c in ("D",) + MEASURES for s in ("", "_lo", "_hi")] + ["n90_note"])
    return m[cols].reset_index(drop=True)


def _n90_summary(g: pd.DataFrame) -> str:
    """Median and range of ``n90`` over the models of ``g`` whose D has an interval above zero."""
    ok = g[g["D_lo"] > 0]
    if ok.empty:
        return "not computed (no model's D has an interval above zero)"
    low = int((ok["n90_note"] != "reached").sum())
    return (f"median {ok['n90'].median():.0f} molecules (range {ok['n90'].min():.0f} to {ok['n90'].max():.0f}) "
            f"over {len(ok)} models whose D has an interval above zero; {low} of them reach it at or below "
            f"{SMALLEST}")


def efficiency_facts(run: EfficiencyRun, probe: str = "ridge") -> dict:
    """The numbers the sample-efficiency chapter's prose quotes (``subset_*``: the QM9 subset; ``heldout_*``:
    the networks trained here on their held-out test split; ``{set}_{target}_*`` per target of
    :data:`TARGETS`; the shuffled control is the first target's)."""
    facts = {"draws": run.draws, "smallest": SMALLEST, "n_boot": run.n_boot, "share": f"{100 * SHARE:.0f} %",
             "control": shuffled(run.targets[0])}
    per_target = [f"{s}_{g}{v}" for s in ("abs", "rel", "short", "n90") for g in ("all", "trained")
                                    for v in ("", "_verdict")] + ["best", "worst", "n90"]
    targets = list(dict.fromkeys(list(TARGETS) + list(run.targets)))
    for label, key in (("QM9 subset", "subset"), ("held-out test split", "heldout")):
        for k in ("n_mol", "sizes", "n_models", "shuffled_max", "shuffled_hi"):
            facts[f"{key}_{k}"] = "not run here"
        for t in targets:
            for k in per_target:
                facts[f"{key}_{t}_{k}"] = "not run here"
        if label not in run.n:
            continue
        facts[f"{key}_n_mol"] = run.n[label]
        sizes = run.sizes[label]
        facts[f"{key}_sizes"] = ", ".join(str(s) for s in sizes[:-1]) + f" and {sizes[-1]}"
        mine = run.models[(run.models["molecules"] == label) & (run.models["probe"] == probe)]
        facts[f"{key}_n_models"] = int(mine["model"].nunique())
        r = run.ranks[(run.ranks["molecules"] == label) & (run.ranks["probe"] == probe)]
        for t in run.targets:
            for measure, short in (("absolute", "abs"), ("relative", "rel"), ("shortfall", "short"), ("n90", "n90")):
                for group in ("all", "trained"):
                    row = r[(r["target"] == t) & (r["measure"] == measure) & (r["group"] == group)]
                    name = f"{key}_{t}_{short}_{group}"
                    if row.empty:
                        facts[name] = "not computed (no model qualified)"
                        facts[f"{name}_verdict"] = "not computed"
                        continue
                    row = row.iloc[0]
                    facts[name] = (f"ρ = {row['rho']:+.2f} [{row['lo']:+.2f}, {row['hi']:+.2f}] over "
                                   f"{int(row['n_models'])} models (p = {row['p_value']:.2g})"
                                   if not np.isnan(row["rho"]) else f"not computed ({int(row['n_models'])} models)")
                    facts[f"{name}_verdict"] = _verdict(row["rho"], row["lo"], row["hi"])
            g = mine[mine["target"] == t]
            best, worst = g.loc[g["D"].idxmax()], g.loc[g["D"].idxmin()]
            for which, row in (("best", best), ("worst", worst)):
                facts[f"{key}_{t}_{which}"] = (f"{row['model']} (D = {row['D']:.3f} [{row['D_lo']:.3f}, "
                                               f"{row['D_hi']:.3f}], at {SMALLEST}: {row['absolute']:.3f} "
                                               f"[{row['absolute_lo']:.3f}, {row['absolute_hi']:.3f}])")
            facts[f"{key}_{t}_n90"] = _n90_summary(g)
        sh = run.curves[(run.curves["molecules"] == label) & (run.curves["target"] == shuffled(run.targets[0]))
                        & (run.curves["probe"] == probe)]
        facts[f"{key}_shuffled_max"] = f"{sh['r2_geom'].max():+.3f}" if len(sh) else "not run here"
        facts[f"{key}_shuffled_hi"] = f"{sh['r2_geom_hi'].max():+.3f}" if len(sh) else "not run here"
    return facts


def efficiency_measurements(run: EfficiencyRun, probe: str = "ridge", target: str = "gap") -> list:
    """The scorecard's measurements of claim ``sample_efficiency``: ρ(D, absolute) of the gap over all models of
    each probe set (the claim is measured on the gap, as the models chapter's; the dipole is shown beside it)."""
    from cpd_core.scorecard import Measurement

    out = []
    for label in run.n:
        r = run.ranks[(run.ranks["molecules"] == label) & (run.ranks["probe"] == probe)
                      & (run.ranks["target"] == target) & (run.ranks["measure"] == "absolute")
                      & (run.ranks["group"] == "all")]
        if r.empty:
            continue
        r = r.iloc[0]
        out.append(Measurement(
            "sample_efficiency", float(r["rho"]), float(r["lo"]), float(r["hi"]), int(run.n[label]),
            what=(f"Spearman ρ over {int(r['n_models'])} models ({label}, twins included) between ridge R²_geom of "
                  f"the {target} at all training rows and at {SMALLEST} training molecules; nested {target} block"),
            comparable=False,
            reason=("the paper does not state its measure of sample efficiency, and its models (MACE, ViSNet, ...) "
                    "are not these; interval over molecules, not over the choice of models")))
    return out


def efficiency_plot(run: EfficiencyRun, probe: str = "ridge", floor: float = -0.3):
    """One row per (probe set, target): learning curves (left) and ``n90`` against D (right), 95 % bars."""
    import matplotlib.pyplot as plt

    rows = [(label, t) for label in run.n for t in run.targets]
    fig, axes = plt.subplots(len(rows), 2, figsize=(11, 3.8 * len(rows)), squeeze=False)
    for row, (label, t) in zip(axes, rows):
        c = run.curves[(run.curves["molecules"] == label) & (run.curves["target"] == t)
                       & (run.curves["probe"] == probe)]
        ax = row[0]
        for model, g in c.groupby("model", sort=False):
            twin = g["status"].iloc[0] == "random-init"
            y = g["r2_geom"].clip(lower=floor)
            err = np.vstack([y - g["r2_geom_lo"].clip(lower=floor), g["r2_geom_hi"].clip(lower=floor) - y])
            ax.errorbar(g["m"], y, yerr=np.maximum(err, 0), marker="o", ms=3, capsize=2, label=model,
                        color="0.6" if twin else None, ls="--" if twin else "-", lw=1)
        ax.set_xscale("log", base=2)
        ax.axhline(0, color="k", lw=0.5)
        ax.set(xlabel="training molecules per fold", ylabel=f"ridge R²_geom ({t})", title=f"{label}, {t}: learning curves")
        ax.legend(fontsize=6, ncol=2)
        ax = row[1]
        sizes = run.sizes[label]
        m = run.models[(run.models["molecules"] == label) & (run.models["target"] == t)
                       & (run.models["probe"] == probe) & (run.models["D_lo"] > 0)]
        for _, r in m.iterrows():
            twin = r["status"] == "random-init"
            hi = min(r["n90_hi"], sizes[-1])
            censored = r["n90_note"] != "reached"
            ax.errorbar(r["D"], r["n90"], xerr=[[r["D"] - r["D_lo"]], [r["D_hi"] - r["D"]]],
                        yerr=[[r["n90"] - r["n90_lo"]], [max(hi - r["n90"], 0)]],
                        fmt="v" if censored else ("s" if twin else "o"), color="0.6" if twin else "C0", capsize=2, ms=4)
            ax.annotate(r["model"], (r["D"], r["n90"]), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.set_yscale("log", base=2)
        ax.set_ylim(sizes[0] / 1.5, sizes[-1] * 1.5)
        ax.set(xlabel="D = R²_geom at all training rows", ylabel=f"n90: molecules to reach {100 * SHARE:.0f} % of D",
               title=f"{label}, {t}: n90 (D > 0; ▼ at or below {sizes[0]})")
    fig.tight_layout()
    return fig


__all__ = ["EfficiencyRun", "MEASURES", "SHARE", "SHUFFLED", "SMALLEST", "TARGETS", "curve_predictions",
           "curve_scores", "efficiency", "efficiency_facts", "efficiency_measurements", "efficiency_plot",
           "efficiency_set", "fold_r2", "model_curves", "model_row", "model_table", "n90_note", "n_reach",
           "rank_correlation", "rank_table", "ranks_of", "sample_efficiency", "shuffled", "size_grid", "subsample"]
