r"""Closed-form cross-validated ridge CPD from per-fold Gram matrices.

The ridge probe of :func:`cpd_core.cpd` — composition projection fit on the training folds,
:class:`~cpd_core.probes.ClippedStandardScaler`, ridge with an unpenalised intercept, penalty chosen
inside the training fold — computed exactly for every fold and **every penalty of the grid at once**,
from one pass over the rows.

How
---
Let :math:`H_0 = H - C B` be the features after the composition fit on *all* rows (exact pivoted QR,
:class:`~cpd_core.projection.CompositionProjector`); it is used only as a well-conditioned basis, no
information flows from it into a fold. With :math:`A = [C, \mathbf 1]` and the centred target
:math:`y_0`, one pass stores for each fold :math:`g` the Gram matrix of its rows

.. math::

    G_g = X_g^\top X_g, \qquad X = [H_0,\ A,\ y_0],

and a training set :math:`T` (any union of folds) has :math:`G_T = \sum_{g \in T} G_g`. Every
feature matrix the probe sees is a *residual* :math:`R = H_0 - A E` for some
:math:`E \in \mathbb R^{(k+1) \times d}`:

- geometric residual, projection fit on :math:`T`: :math:`E` = the least-squares coefficients of
  :math:`H_0` on :math:`C_T` (pivoted QR of :math:`C_T`, so a rank-deficient training composition —
  an element absent from the training folds — is handled as the row-wise projector handles it);
- raw features: :math:`E = [-B;\ \bar h]`, i.e. :math:`R = H - \bar h` (centred for precision).

Its training statistics follow from :math:`G_T` without touching the rows again:

.. math::

    R_T^\top R_T = S_{HH} - S_{HA}E - E^\top S_{AH} + E^\top S_{AA} E, \qquad
    R_T^\top y_0 = S_{Hy} - E^\top S_{Ay}, \qquad \mathbf 1^\top R_T = S_{H1} - E^\top S_{A1}.

Standardising gives the correlation-scaled Gram :math:`Z^\top Z = n_T\,\Sigma / \sigma\sigma^\top`
(constant columns dropped, as the clipped scaler does); one eigendecomposition
:math:`Z^\top Z = V \operatorname{diag}(s) V^\top` with :math:`q = V^\top Z^\top (y - \bar y)` gives the
ridge weights for every :math:`\alpha`, :math:`w(\alpha) = V \operatorname{diag}\big(1/(s+\alpha)\big) q`,
and the held-out predictions :math:`\bar y_T + \operatorname{clip}(Z_\text{test})\, w(\alpha)`.

Choosing :math:`\alpha` inside the training fold
-----------------------------------------------
``select="folds"`` (default): **inner folds**. The training set :math:`T` is the union of
:math:`K-1` folds; each of them, :math:`g`, is held out in turn, the ridge refit on the others from
:math:`S_T - G_g` (one more :math:`d \times d` eigendecomposition), and its squared error on the rows
of :math:`g` summed; the penalty with the smallest pooled error wins. The probe of the inner fits is
the outer one's: residual and standardisation fit on all of :math:`T` (as scikit-learn's ``RidgeCV``
behind a ``StandardScaler`` in one pipeline), ridge with its own intercept refit per inner fold. Its
cost per outer fold is :math:`K-1` eigendecompositions and one :math:`O(n_T d\, n_\alpha)` product,
about that of GCV. Being a true held-out error, it is not fooled by a few high-leverage molecules.

``select="loo"``: exact leave-one-out, scikit-learn ``RidgeCV``'s criterion (the project's rule
before inner folds), which needs the training rows once more per fold with a :math:`d \times d`
product per row (:math:`h_{ii} = \sum_j U_{ij}^2/(s_j+\alpha) + 1/n_T`, :math:`U = Z_T V`, and the
LOO residual :math:`(y_i - \hat y_i)/(1 - h_{ii})`): about 3x the cost of the default on 512 columns.
``select="gcv"``: generalised cross-validation (Golub, Heath & Wahba 1979), which replaces every
:math:`h_{ii}` by their mean,

.. math::

    \operatorname{GCV}(\alpha) = \frac{\tfrac1{n_T}\operatorname{RSS}(\alpha)}{\big(1 - (1 + \sum_j s_j/(s_j+\alpha))/n_T\big)^2},
    \qquad \operatorname{RSS}(\alpha) = \|y_c\|^2 - \sum_j q_j^2 \frac{s_j + 2\alpha}{(s_j+\alpha)^2},

free given :math:`(s, q)`, but blind to single high-leverage rows: on ANI-2x's AEV (columns non-zero
for a handful of molecules, leverages near 1) it picks :math:`\alpha \approx 10^{-3}` and the held-out
R² collapses, where leave-one-out and inner folds do not. With a single training fold (``cv=2``)
inner folds do not exist and leave-one-out is used. A single penalty fixes :math:`\alpha`.

When a block has more columns than training rows the same is done on the :math:`n_T \times n_T`
kernel :math:`Z Z^\top` (same non-zero spectrum; needs the training rows, cheap at such :math:`n`).

Cost: one :math:`O(n d^2)` pass for the Gram matrices, one :math:`d \times d` eigendecomposition per
fold (:math:`K` with inner folds), and :math:`O(n d)` per fold for the clipping bounds and the held-out
rows. Rows are stored fold after fold, and :math:`n \times d` intermediates reuse one buffer.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import scipy.linalg

from cpd_core.errors import InputError
from cpd_core.projection import INSIDE_RTOL, _inside_span, _pivoted_qr, residual_in_place

#: Selection rules for the penalty inside a training fold (see the module docstring).
SELECT = ("folds", "loo", "gcv")


def as_alpha_grid(alphas) -> np.ndarray:
    """The penalty grid: ``None`` → :data:`cpd_core.probes.RIDGE_ALPHAS`, a number → that one penalty.

    Examples
    --------
    >>> as_alpha_grid(3.0).tolist()
    [3.0]
    >>> len(as_alpha_grid(None))
    57
    """
    from cpd_core.probes import RIDGE_ALPHAS

    grid = RIDGE_ALPHAS if alphas is None else np.atleast_1d(np.asarray(alphas, dtype=np.float64))
    if grid.ndim != 1 or grid.size == 0:
        raise InputError(f"alphas must be None, a number or a 1-D sequence, got {alphas!r}")
    if not np.all(np.isfinite(grid)) or np.any(grid <= 0):
        raise InputError(f"ridge penalties must be finite and > 0, got {grid.tolist()}")
    return grid


@dataclass
class FoldFit:
    """The closed-form ridge probe of one feature set on one (train, test) split.

    Attributes
    ----------
    r2 : numpy.ndarray, shape (n_alphas,)
        Held-out R² for every penalty of the grid.
    criterion : numpy.ndarray, shape (n_alphas,)
        The selection criterion on the training rows (GCV or LOO mean squared error).
    chosen : int
        Index of the selected penalty (first minimum of ``criterion``).
    predictions : numpy.ndarray, shape (n_test,)
        Held-out predictions at the selected penalty (in the units of ``y``).
    n_kept : int
        Columns left after dropping the constant ones.
    """

    r2: np.ndarray
    criterion: np.ndarray
    chosen: int
    predictions: np.ndarray
    n_kept: int


def _r2_curve(y: np.ndarray, P: np.ndarray) -> np.ndarray:
    """R² of each column of predictions ``P`` (n, m) against ``y`` (n,)."""
    sst = np.sum((y - y.mean()) ** 2)
    sse = np.sum((y[:, None] - P) ** 2, axis=0)
    return 1.0 - sse / sst


class RidgeFolds:
    """Per-fold sufficient statistics of one feature block, and the closed-form ridge probe on them.

    Parameters
    ----------
    H : array_like, shape (n, d)
        Pooled features.
    C : array_like, shape (n, k)
        Composition matrix.
    y : array_like, shape (n,)
        Target.
    fold_of : array_like of int, shape (n,)
        The fold of each row, ``0 … K-1``.
    standardize : bool
        Put the clipped standardisation (:class:`~cpd_core.probes.ClippedStandardScaler`) in front.
    clip : bool
        Clip held-out standardised values to the training range (with ``standardize``).
    rtol : float
        Columns with training standard deviation below ``rtol`` × their largest training magnitude
        are dropped (the scaler's rule).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> C = np.column_stack([rng.integers(0, 5, 200), np.ones(200)])
    >>> H = rng.normal(size=(200, 3)); y = H[:, 0] + 0.1 * rng.normal(size=200)
    >>> rf = RidgeFolds(H, C, y, np.arange(200) % 4)
    >>> fit = rf.fit(train=[1, 2, 3], test=0, alphas=[1.0], geom=True)
    >>> bool(fit.r2[0] > 0.95)
    True
    """

    def __init__(self, H, C, y, fold_of, standardize: bool = True, clip: bool = True, rtol: float = 1e-8,
                 fit_projection: str = "train"):
        H = np.asarray(H, dtype=np.float64)
        C = np.asarray(C, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        fold_of = np.asarray(fold_of)
        n, d = H.shape
        if C.shape[0] != n or y.shape != (n,) or fold_of.shape != (n,):
            raise InputError(f"H, C, y and fold_of must have {n} rows")
        self.n, self.d, self.k = n, d, C.shape[1]
        self.standardize, self.clip, self.rtol = standardize, clip, rtol
        self.n_folds = int(fold_of.max()) + 1
        #: the original row indices of each fold (where its held-out predictions belong)
        self.rows = [np.flatnonzero(fold_of == g) for g in range(self.n_folds)]
        if any(len(r) == 0 for r in self.rows):
            raise InputError("every fold must have at least one row")
        # rows are stored fold after fold (one permutation), so a fold is a contiguous slice
        order = np.concatenate(self.rows)
        ends = np.cumsum([0] + [len(r) for r in self.rows])
        self.span = [slice(int(ends[g]), int(ends[g + 1])) for g in range(self.n_folds)]

        # H0: residual of the all-rows composition fit, a well-conditioned basis (see module doc),
        # built in place from the rows in fold order (one n x d array)
        self.fit_projection = fit_projection
        self._order = order
        self.C = C[order]
        self.h_mean = H.mean(axis=0)
        H0 = H[order]
        self.h_sq = np.empty((self.n_folds, d))        # column sums of H² per fold (inside-span test)
        self.full_lo = np.empty((self.n_folds, d))     # per-fold min / max of H - h_mean
        self.full_hi = np.empty((self.n_folds, d))
        for g, sl in enumerate(self.span):
            Hg = H0[sl]
            self.h_sq[g] = np.einsum("ij,ij->j", Hg, Hg)
            self.full_lo[g] = Hg.min(axis=0) - self.h_mean
            self.full_hi[g] = Hg.max(axis=0) - self.h_mean
        self.B, _ = residual_in_place(self.C, H0)
        if fit_projection == "all":
            # the paper's variant: one projection on all rows (project_out), not refit per fold
            self.inside_all = _inside_span(H, H0)
            H0[:, self.inside_all] = 0.0
        self.H0 = H0
        A_cols = self.k + 1
        p = d + A_cols + 1
        self.G = np.empty((self.n_folds, p, p))
        for g, sl in enumerate(self.span):
            Hg = self.H0[sl]
            A = self._A(sl)
            self.G[g, :d, :d] = Hg.T @ Hg
            self.G[g, :d, d:d + A_cols] = Hg.T @ A
            self.G[g, d:d + A_cols, :d] = self.G[g, :d, d:d + A_cols].T
            self.G[g, d:d + A_cols, d:d + A_cols] = A.T @ A
        self._sl = (slice(0, d), slice(d, d + A_cols), d + A_cols)
        self._set_target(y)
        #: y-independent work (residual coefficients, kept columns, eigendecompositions) by training
        #: set, shared with every :meth:`retarget` copy
        self._memo = {}

    def _set_target(self, y: np.ndarray) -> None:
        """Store ``y`` (centred, in fold order) and its row and column of the per-fold Gram matrices."""
        if y.shape != (self.n,):
            raise InputError(f"y must have shape ({self.n},), got {y.shape}")
        self.y_mean = float(y.mean())
        self.y0 = (y - self.y_mean)[self._order]
        yi = self._sl[2]
        for g, sl in enumerate(self.span):
            y_g = self.y0[sl]
            col = np.concatenate([self.H0[sl].T @ y_g, self._A(sl).T @ y_g])
            self.G[g, :yi, yi] = col
            self.G[g, yi, :yi] = col
            self.G[g, yi, yi] = y_g @ y_g

    def retarget(self, y) -> "RidgeFolds":
        """The same features, composition and folds with another target ``y`` (shape ``(n,)``).

        Everything that does not depend on the target (residual coefficients, kept columns,
        standardisation, eigendecompositions) is shared with this object and computed once for
        all of them: probing several targets of one block costs little more than one.

        Examples
        --------
        >>> rng = np.random.default_rng(0)
        >>> C = np.column_stack([rng.integers(0, 5, 200), np.ones(200)])
        >>> H = rng.normal(size=(200, 3)); y1 = H[:, 0] + 0.1 * rng.normal(size=200); y2 = H[:, 1]
        >>> rf = RidgeFolds(H, C, y1, np.arange(200) % 4)
        >>> a = rf.retarget(y2).fit([1, 2, 3], 0).r2; b = RidgeFolds(H, C, y2, np.arange(200) % 4).fit([1, 2, 3], 0).r2
        >>> bool(np.allclose(a, b, rtol=0, atol=1e-12))
        True
        """
        other = copy.copy(self)
        other.G = self.G.copy()
        other._set_target(np.asarray(y, dtype=np.float64))
        return other

    def with_options(self, standardize: bool | None = None, clip: bool | None = None,
                     rtol: float | None = None) -> "RidgeFolds":
        """The same per-fold statistics under another scaler or near-constant-column rule (``None``: keep).

        These settings enter only the fits, not the Gram matrices: the copy shares them and starts its own
        memo of fit set-ups (kept columns, standardisation, eigendecompositions), so a block can be probed
        under several protocols from one pass over its rows.

        Examples
        --------
        >>> rng = np.random.default_rng(0)
        >>> C = np.column_stack([rng.integers(0, 5, 200), np.ones(200)])
        >>> H = rng.normal(size=(200, 3)) * [1, 10, 100]; y = H[:, 0] + 0.1 * rng.normal(size=200)
        >>> a = RidgeFolds(H, C, y, np.arange(200) % 4).with_options(standardize=False).fit([1, 2, 3], 0).r2
        >>> b = RidgeFolds(H, C, y, np.arange(200) % 4, standardize=False).fit([1, 2, 3], 0).r2
        >>> bool(np.allclose(a, b, rtol=0, atol=1e-12))
        True
        """
        other = copy.copy(self)
        if standardize is not None:
            other.standardize = standardize
        if clip is not None:
            other.clip = clip
        if rtol is not None:
            other.rtol = rtol
        other._memo, other._buf = {}, None
        return other

    # --- residual coefficients ------------------------------------------------------------
    def _A(self, sl) -> np.ndarray:
        """``[C, 1]`` of stored rows ``sl`` (a slice or positions in fold order)."""
        C = self.C[sl]
        return np.column_stack([C, np.ones(len(C))])

    def _positions(self, folds) -> np.ndarray:
        """Stored positions (fold order) of the rows of ``folds``."""
        return np.concatenate([np.arange(self.span[g].start, self.span[g].stop) for g in folds])

    def geom_coef(self, train) -> tuple[np.ndarray, np.ndarray]:
        """:math:`E` of the geometric residual with the projection fit on folds ``train``, and the
        columns that lie inside span(:math:`C_T`) (set to zero, as the row-wise projector does)."""
        train = list(train)
        R, piv, r = self._train_qr(train)
        S = self.G[train].sum(axis=0)
        h, a, _ = self._sl
        E = np.zeros((self.k + 1, self.d))
        if r:
            Rr = R[:r, :r]
            S_CH = S[a, h][:self.k][piv[:r]]              # C_piv^T H0 on the training rows
            E_r = scipy.linalg.solve_triangular(Rr, scipy.linalg.solve_triangular(Rr, S_CH, trans="T"))
            E[piv[:r]] = E_r
            if r < self.k:
                # redundant training columns get zero coefficients: move B's part on them
                X = np.zeros((self.k, self.d))
                X[piv[:r]] = scipy.linalg.solve_triangular(Rr, R[:r, :] @ self.B[piv])
                E[:self.k] += X - self.B
        # training norms of the residual and of H, for the inside-span rule. A residual at the
        # round-off of H0 (1e-14 of the column's norm over all rows) or of its Gram formula is zero:
        # a column that is zero on every training row, which the row-wise projector zeroes exactly
        RR_diag = self._gram_diag(S, E)
        norm = np.sqrt(RR_diag)
        inside = ((norm <= INSIDE_RTOL * np.sqrt(self.h_sq[train].sum(axis=0)))
                  | (norm <= 64 * np.finfo(np.float64).eps * np.sqrt(self.h_sq.sum(axis=0)))
                  | (RR_diag <= self._roundoff(S, E)))
        return E, inside

    def _train_qr(self, train) -> tuple[np.ndarray, np.ndarray, int]:
        """``R``, pivots and rank of the pivoted QR of the training composition :math:`C_T`."""
        _, R, piv, r = _pivoted_qr(self.C[self._positions(train)], None)
        return R, piv, r

    def full_coef(self) -> np.ndarray:
        """:math:`E` for the raw (centred) features, :math:`R = H - \\bar h`."""
        return np.vstack([-self.B, self.h_mean[None, :]])

    def _gram_diag(self, S, E):
        h, a, _ = self._sl
        S_HH, S_HA, S_AA = S[h, h], S[h, a], S[a, a]
        diag = np.diag(S_HH) - 2 * np.einsum("ij,ji->i", S_HA, E) + np.einsum("ij,ik,kj->j", E, S_AA, E)
        return np.maximum(diag, 0.0)

    def _residual(self, sl: slice, E: np.ndarray) -> np.ndarray:
        """:math:`H_0 - A E` on the stored rows ``sl``, in a buffer reused between calls (on tall
        matrices, first-touch allocation costs as much as the arithmetic). Valid until the next call."""
        m = sl.stop - sl.start
        if getattr(self, "_buf", None) is None or self._buf.shape[0] < m:
            self._buf = np.empty((max(len(r) for r in self.rows), self.d))
        out = self._buf[:m]
        np.matmul(self._A(sl), E, out=out)
        np.subtract(self.H0[sl], out, out=out)
        return out

    def _roundoff(self, S, E) -> np.ndarray:
        """Bound on the rounding error of the diagonal of :math:`R_T^\top R_T` computed from ``S``."""
        h, a, _ = self._sl
        aE, aS_AA = np.abs(E), np.abs(S[a, a])
        size = (np.diag(S[h, h]) + 2 * np.einsum("ij,ji->i", np.abs(S[h, a]), aE)
                + np.einsum("ij,ik,kj->j", aE, aS_AA, aE))
        return 16 * (self.k + 2) * np.finfo(np.float64).eps * size

    def _train_bounds(self, train, E, full: bool):
        """Column-wise min and max of the residual over the training rows."""
        if full:
            return self.full_lo[train].min(axis=0), self.full_hi[train].max(axis=0)
        lo = np.full(self.d, np.inf)
        hi = np.full(self.d, -np.inf)
        for g in train:
            sl = self.span[g]
            Rg = self._residual(sl, E)
            np.minimum(lo, Rg.min(axis=0), out=lo)
            np.maximum(hi, Rg.max(axis=0), out=hi)
        return lo, hi

    # --- the probe ------------------------------------------------------------------------
    def fit(self, train, test, alphas=None, geom: bool = True, select: str = "folds",
            E: np.ndarray | None = None, inside: np.ndarray | None = None) -> FoldFit:
        """Ridge on folds ``train``, scored on fold ``test``, for every penalty of ``alphas``.

        ``geom``: probe the geometric residual (projection fit on ``train``, or on all rows with
        ``fit_projection="all"``); else the raw features. ``E``/``inside`` give another residual
        :math:`H_0 - A E` explicitly. The target-independent work of a training set is kept
        (:meth:`retarget`), unless ``E`` is given.
        """
        if select not in SELECT:
            raise InputError(f"select must be one of {SELECT}, got {select!r}")
        grid = as_alpha_grid(alphas)
        train = [int(g) for g in train]
        prep = self._prepared(train, geom, E, inside)
        E, keep_idx, mu_k, sig_k, n_T = prep["E"], prep["keep_idx"], prep["mu_k"], prep["sig_k"], prep["n_T"]
        h, a, yi = self._sl
        Sy = self.G[train][:, :, yi].sum(axis=0)         # the target's column of S_T
        y_bar = Sy[a][-1] / n_T
        test_idx = self.span[int(test)]
        y_te = self.y0[test_idx]
        n_a = len(grid)
        yc2 = max(Sy[yi] - n_T * y_bar ** 2, 0.0)
        if keep_idx.size == 0:
            P = np.full((len(y_te), n_a), y_bar)
            crit = np.full(n_a, (Sy[yi] - n_T * y_bar ** 2) / n_T)
            return FoldFit(_r2_curve(y_te, P), crit, 0, P[:, 0] + self.y_mean, 0)
        R_te = self._residual(test_idx, E)
        Z_te = (R_te if keep_idx.size == self.d else R_te[:, keep_idx]) - mu_k
        Z_te /= sig_k
        if self.standardize and self.clip:
            lo, hi = prep["lo"], prep["hi"]
            np.clip(Z_te, (lo[keep_idx] - mu_k) / sig_k, (hi[keep_idx] - mu_k) / sig_k, out=Z_te)
        dual = prep["dual"]
        if dual:
            # more columns than training rows: the n_T x n_T kernel Z Z^T has the same spectrum
            s, U, ZtU = prep["s"], prep["U"], prep["ZtU"]
            y_c = self.y0[prep["idx"]] - y_bar
            c = U.T @ y_c
            filt = 1.0 / (s[:, None] + grid[None, :])                 # (n_T, n_alphas)
            P = y_bar + (Z_te @ ZtU) @ (c[:, None] * filt)
            q2 = s * c ** 2
        else:
            s, V = prep["s"], prep["V"]
            Ry = Sy[h] - E.T @ Sy[a]
            Zy = (Ry[keep_idx] - n_T * mu_k * y_bar) / sig_k
            q = V.T @ Zy
            filt = 1.0 / (s[:, None] + grid[None, :])                 # (d', n_alphas)
            P = y_bar + Z_te @ (V @ (q[:, None] * filt))              # ridge weights, every alpha
            q2 = q ** 2
        r2 = _r2_curve(y_te, P)

        if select == "folds" and len(train) > 1:
            # computed for a single penalty too: it is the block's inner score (cpd_core.selection)
            crit = self._inner_folds(prep, train, Sy, grid)
        elif n_a == 1:
            crit = np.zeros(1)
        elif select == "gcv":
            rss = yc2 - np.sum(q2[:, None] * (s[:, None] + 2 * grid) * filt ** 2, axis=0)
            df = 1.0 + np.sum(s[:, None] * filt, axis=0)
            crit = (np.maximum(rss, 0.0) / n_T) / (1.0 - df / n_T) ** 2
        elif dual:
            fitted = U @ (c[:, None] * s[:, None] * filt)
            lev = (U ** 2) @ (s[:, None] * filt) + 1.0 / n_T
            crit = np.mean(((y_c[:, None] - fitted) / (1.0 - lev)) ** 2, axis=0)
        else:
            crit = self._loo_primal(train, E, keep_idx, mu_k, sig_k, V, q, filt, y_bar, n_T)
        chosen = int(np.argmin(crit))
        return FoldFit(r2, crit, chosen, P[:, chosen] + self.y_mean, keep_idx.size)

    def _prepared(self, train, geom, E=None, inside=None) -> dict:
        """What a fit on folds ``train`` needs that does not depend on the target: residual
        coefficients, training moments and range, kept columns, the eigendecomposition. Kept in
        the memo shared with :meth:`retarget` copies (not when ``E`` is given explicitly)."""
        key = ("fit", tuple(train), bool(geom)) if E is None else None
        if key is not None and key in self._memo:
            return self._memo[key]
        full = E is None and not geom
        if E is None and geom and self.fit_projection == "all":
            E, inside = np.zeros((self.k + 1, self.d)), self.inside_all
        elif E is None:
            E, inside = self.geom_coef(train) if geom else (self.full_coef(), np.zeros(self.d, dtype=bool))
        if inside is None:
            inside = np.zeros(self.d, dtype=bool)
        S = self.G[train].sum(axis=0)
        h, a, yi = self._sl
        S = S[:yi, :yi]                                      # the target-independent blocks of S_T
        n_T = S[a, a][-1, -1]
        HA_E = S[h, a] @ E
        RR = S[h, h] - HA_E - HA_E.T + E.T @ S[a, a] @ E
        s_R = S[h, a][:, -1] - E.T @ S[a, a][:, -1]
        mu = s_R / n_T
        cov = RR / n_T - np.outer(mu, mu)
        lo, hi = self._train_bounds(train, E, full)
        std = np.sqrt(np.maximum(np.diag(cov), 0.0))
        if self.standardize:
            # the scaler's rule (std below rtol x the largest magnitude: constant), and a variance
            # below the round-off of its Gram formula is zero
            scale = np.maximum(np.abs(lo), np.abs(hi))
            numerically_zero = np.diag(cov) <= self._roundoff(S, E) / n_T + 16 * np.finfo(np.float64).eps * mu ** 2
            keep = (std > self.rtol * np.where(scale > 0, scale, 1.0)) & ~inside & ~numerically_zero
            sig = std
        else:
            keep = ~inside
            sig = np.ones(self.d)
        keep_idx = np.flatnonzero(keep)
        prep = {"E": E, "S": S, "n_T": n_T, "lo": lo, "hi": hi, "keep_idx": keep_idx, "mu_k": mu[keep_idx],
                "sig_k": sig[keep_idx], "dual": keep_idx.size > n_T, "key": key}
        if keep_idx.size and prep["dual"]:
            idx = self._positions(train)
            Z = self._standardized(idx, E, keep_idx, prep["mu_k"], prep["sig_k"])
            s, U = np.linalg.eigh(Z @ Z.T)
            prep.update(idx=idx, s=np.maximum(s, 0.0), U=U, ZtU=Z.T @ U)
        elif keep_idx.size:
            ZZ = n_T * cov[np.ix_(keep_idx, keep_idx)] / np.outer(prep["sig_k"], prep["sig_k"])
            s, V = np.linalg.eigh(ZZ)
            prep.update(s=np.maximum(s, 0.0), V=V)
        if key is not None:
            self._memo[key] = prep
        return prep

    def _inner_folds(self, prep, train, Sy, grid) -> np.ndarray:
        r"""Mean squared error per penalty over the inner folds: each training fold held out in turn.

        The probe standardised on the whole training set (as for the outer fit) is refit by ridge, with
        its own intercept, on the other training folds, and predicts the held-out one. Its Gram
        matrices are :math:`S_T - G_g`; its predictions are formed from the stored rows without
        building the standardised matrix:
        :math:`\hat y = \bar y_{in} + H_{0,g} W - A_g (E W) - \mu_{in}^\top W` with
        :math:`W = V\,\mathrm{diag}(q)\,F / \sigma` (zero rows for dropped columns). No clipping:
        training rows lie inside the training range by construction. The eigendecompositions do
        not depend on the target and are kept with ``prep``.
        """
        h, a, yi = self._sl
        E, keep_idx, sig_k, S = prep["E"], prep["keep_idx"], prep["sig_k"], prep["S"]
        inner = prep.setdefault("inner", {})
        total, count = np.zeros(len(grid)), 0
        if max(S[a, a][-1, -1] - self.G[g][a, a][-1, -1] for g in train) < keep_idx.size:
            # fewer inner training rows than columns: the kernel of the standardised rows
            if not inner:
                Z = {g: (self._residual(self.span[g], E)[:, keep_idx] / sig_k) for g in train}
                for g in train:
                    Z_in = np.concatenate([Z[o] for o in train if o != g])
                    z_bar = Z_in.mean(axis=0)
                    Z_in -= z_bar
                    s, U = np.linalg.eigh(Z_in @ Z_in.T)
                    inner[g] = (np.maximum(s, 0.0), U, ((Z[g] - z_bar) @ Z_in.T) @ U)
            for g in train:
                s, U, M = inner[g]
                y_in = np.concatenate([self.y0[self.span[o]] for o in train if o != g])
                y_bar = y_in.mean()
                c = U.T @ (y_in - y_bar)
                P = y_bar + M @ (c[:, None] / (s[:, None] + grid[None, :]))
                total += np.sum((self.y0[self.span[g]][:, None] - P) ** 2, axis=0)
                count += len(P)
            return total / count
        W = np.zeros((self.d, len(grid)))
        for g in train:
            W[keep_idx], c = self._inner_weights(prep, g, Sy, grid)
            sl = self.span[g]
            P = c + self.H0[sl] @ W - self._A(sl) @ (E @ W)
            total += np.sum((self.y0[sl][:, None] - P) ** 2, axis=0)
            count += sl.stop - sl.start
        return total / count

    def _inner_weights(self, prep, g, Sy, grid) -> tuple[np.ndarray, np.ndarray]:
        r"""The inner fit without training fold ``g``: ridge weights on the kept residual columns (unscaled,
        one column per penalty) and intercepts ``c``, so that :math:`\hat y = c + R_{kept} W`. The
        eigendecomposition does not depend on the target and is kept in ``prep["inner"]``."""
        h, a, yi = self._sl
        E, keep_idx, sig_k, S = prep["E"], prep["keep_idx"], prep["sig_k"], prep["S"]
        inner = prep.setdefault("inner", {})
        Ek = E[:, keep_idx]
        if g not in inner:
            S_in = S - self.G[g][:yi, :yi]
            n_in = S_in[a, a][-1, -1]
            S_HA = S_in[h, a][keep_idx]
            HA_E = S_HA @ Ek
            RR = S_in[h, h][np.ix_(keep_idx, keep_idx)] - HA_E - HA_E.T + Ek.T @ S_in[a, a] @ Ek
            mu = (S_HA[:, -1] - Ek.T @ S_in[a, a][:, -1]) / n_in
            s, V = np.linalg.eigh((RR - n_in * np.outer(mu, mu)) / np.outer(sig_k, sig_k))
            inner[g] = (np.maximum(s, 0.0), V, mu, n_in)
        s, V, mu, n_in = inner[g]
        Sy_in = Sy - self.G[g][:, yi]
        Ry = Sy_in[h][keep_idx] - Ek.T @ Sy_in[a]
        y_bar = Sy_in[a][-1] / n_in
        Zy = (Ry - n_in * mu * y_bar) / sig_k
        Wk = (V @ ((V.T @ Zy)[:, None] / (s[:, None] + grid[None, :]))) / sig_k[:, None]
        return Wk, y_bar - mu @ Wk

    def _loo_primal(self, train, E, keep_idx, mu_k, sig_k, V, q, filt, y_bar, n_T) -> np.ndarray:
        r"""Exact leave-one-out mean squared error per penalty, one training fold's rows at a time.

        :math:`U = Z V` is formed as :math:`H_0 (V/\sigma) - A (E V/\sigma) - (\mu/\sigma) V`
        without building the standardised rows.
        """
        W = V / sig_k[:, None]
        EW = E[:, keep_idx] @ W
        shift = (mu_k / sig_k) @ V
        all_kept = keep_idx.size == self.d
        total = np.zeros(filt.shape[1])
        for g in train:
            rows = self.span[g]
            Hg = self.H0[rows] if all_kept else self.H0[rows][:, keep_idx]
            U = Hg @ W - self._A(rows) @ EW - shift
            fitted = U @ (q[:, None] * filt)
            lev = (U * U) @ filt + 1.0 / n_T
            total += np.sum(((self.y0[rows] - y_bar)[:, None] - fitted) ** 2 / (1.0 - lev) ** 2, axis=0)
        return total / n_T

    def _standardized(self, idx, E, keep_idx, mu_k, sig_k) -> np.ndarray:
        """Standardised residual rows ``idx`` (kept columns)."""
        return (self.H0[idx][:, keep_idx] - self._A(idx) @ E[:, keep_idx] - mu_k) / sig_k


__all__ = ["FoldFit", "RidgeFolds", "SELECT", "as_alpha_grid"]
