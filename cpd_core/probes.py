r"""Probes: the regressors that read a target out of (residual) features.

Three probe families, as in the paper:

``"ridge"``
    Linear ridge regression, :math:`\min_w \|y - Xw - b\|^2 + \alpha\|w\|^2`,
    with :math:`\alpha` chosen per training fold over the grid :data:`RIDGE_ALPHAS`.
    :func:`cpd_core.cpd` runs it in closed form (:mod:`cpd_core.ridge`: penalty by inner folds by
    default, exact leave-one-out with ``select="loo"``, generalised cross-validation with
    ``select="gcv"``); :func:`make_probe` returns the row-wise scikit-learn pipeline of
    ``select="loo"`` (``RidgeCV``) for use elsewhere.
    The primary CPD metric: a ridge probe can only read what is *linearly*
    accessible.
``"mlp"``
    A seeded :class:`~sklearn.neural_network.MLPRegressor` with early stopping
    on a validation split of the training fold; target standardised.
``"gbt"``
    A seeded :class:`~sklearn.ensemble.HistGradientBoostingRegressor`, behind
    :class:`ConstantColumnDropper` (the same trees, without the histograms of
    columns constant on the training rows). Trees split on thresholds, so they can
    decode composition from nonlinear remnants that survive a *linear* projection:
    see the Method chapter.

Feature standardisation (on by default for ridge and MLP, as in the paper) is
:class:`ClippedStandardScaler`: columns constant on the training fold are
dropped, the rest are z-scored with training statistics, and held-out values
are clipped to the training fold's range. Pooled descriptors of real models have
columns that are non-zero for a handful of molecules (terms for elements rare
in QM9, for example); plain z-scoring turns those into values of hundreds of
standard deviations on the few test molecules that have them, and a linear probe
extrapolates wildly. Clipping bounds every test feature by what the probe saw
in training. Pass ``standardize=False`` to probe raw features.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, TransformerMixin, clone
from sklearn.compose import TransformedTargetRegressor
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import RidgeCV
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from cpd_core.errors import InputError

PROBES = ("ridge", "mlp", "gbt")

#: Ridge penalties searched (standardised features): 10^-6 ... 10^8, 4 per decade.
RIDGE_ALPHAS = np.logspace(-6, 8, 57)


class ClippedStandardScaler(TransformerMixin, BaseEstimator):
    r"""Z-score with training statistics, drop constant columns, clip to the training range.

    .. math::

        z_{ij} = \operatorname{clip}\!\left(\frac{x_{ij} - \mu_j}{\sigma_j},
                 \min_{i' \in \text{train}} z_{i'j},\ \max_{i' \in \text{train}} z_{i'j}\right)

    for every column :math:`j` with :math:`\sigma_j > \text{rtol}\cdot\max_i |x_{ij}|`
    on the training rows; other (constant) columns are dropped.

    Parameters
    ----------
    clip : bool
        Clip transformed values to the training range.
    rtol : float
        Columns whose training standard deviation is below ``rtol`` times their
        largest absolute value are treated as constant.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0., 1, 5], [0, 2, 5], [0, 3, 5], [1e-3, 4, 5]])
    >>> s = ClippedStandardScaler().fit(X)
    >>> s.keep_.tolist()
    [True, True, False]
    >>> s.transform(np.array([[1.0, 100.0, 5.0]])).round(3).tolist()  # clipped, not 1000 sigma
    [[1.732, 1.342]]
    """

    def __init__(self, clip: bool = True, rtol: float = 1e-8):
        self.clip = clip
        self.rtol = rtol

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=np.float64)
        scale = np.abs(X).max(axis=0)
        std = X.std(axis=0)
        self.keep_ = std > self.rtol * np.where(scale > 0, scale, 1.0)
        if not self.keep_.any():
            # Every column constant (features inside span(C)): keep one; it z-scores to 0
            # and the probe predicts the training mean, R² ≈ 0, as it should.
            self.keep_[0] = True
        self.scaler_ = StandardScaler().fit(X[:, self.keep_])
        Z = self.scaler_.transform(X[:, self.keep_])
        self.lo_, self.hi_ = Z.min(axis=0), Z.max(axis=0)
        return self

    def transform(self, X):
        Z = self.scaler_.transform(np.asarray(X, dtype=np.float64)[:, self.keep_])
        return np.clip(Z, self.lo_, self.hi_) if self.clip else Z


class ConstantColumnDropper(TransformerMixin, BaseEstimator):
    """Drop the columns that are exactly constant on the training rows (nothing else changes).

    A tree can never split on such a column, so a tree ensemble behind this step grows the same
    trees and predicts the same values; it only stops paying for their histograms (on ANI-2x's AEV
    about half the columns are zero on every molecule of a QM9 subset: the GBT fit is 1.9x faster).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0., 1, 5], [0, 2, 5], [1e-12, 3, 5]])
    >>> ConstantColumnDropper().fit(X).keep_.tolist()
    [True, True, False]
    """

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=np.float64)
        self.keep_ = np.ptp(X, axis=0) > 0
        if not self.keep_.any():
            self.keep_[0] = True          # every column constant: one remains, the trees predict the mean
        return self

    def transform(self, X):
        return np.asarray(X, dtype=np.float64)[:, self.keep_]


def make_probe(name: str | RegressorMixin, seed: int = 0, standardize: bool = True, clip: bool = True):
    """A fresh, unfitted probe.

    Parameters
    ----------
    name : {"ridge", "mlp", "gbt"} or a scikit-learn regressor
        A regressor is cloned and used as it is (bring your own probe).
    seed : int
        Random state of the MLP and GBT probes.
    standardize : bool
        Put a :class:`ClippedStandardScaler` in front of ridge and MLP.
    clip : bool
        Whether that scaler clips held-out values to the training range.

    Examples
    --------
    >>> make_probe("ridge")[-1].__class__.__name__
    'RidgeCV'
    >>> make_probe("gbt")[-1].__class__.__name__
    'HistGradientBoostingRegressor'
    """
    if isinstance(name, BaseEstimator):
        return clone(name)
    if name not in PROBES:
        raise InputError(f"unknown probe {name!r}; choose one of {PROBES} or pass a regressor")
    if name == "gbt":
        return Pipeline([("drop constant", ConstantColumnDropper()),
                         ("probe", HistGradientBoostingRegressor(random_state=seed))])
    if name == "ridge":
        model = RidgeCV(alphas=RIDGE_ALPHAS)
    else:
        mlp = MLPRegressor(
            hidden_layer_sizes=(256, 128),
            alpha=1e-3,
            learning_rate_init=1e-3,
            max_iter=500,
            early_stopping=True,
            n_iter_no_change=20,
            random_state=seed,
        )
        model = TransformedTargetRegressor(regressor=mlp, transformer=StandardScaler())
    steps = [("scale", ClippedStandardScaler(clip=clip))] if standardize else []
    return Pipeline(steps + [("probe", model)])


def ridge_alpha(fitted) -> float | None:
    """The penalty a fitted ridge probe chose, or None for other probes."""
    model = fitted[-1] if isinstance(fitted, Pipeline) else fitted
    return float(model.alpha_) if isinstance(model, RidgeCV) else None
