r"""Exact removal of the composition span by rank-revealing QR.

Given pooled features :math:`H \in \mathbb{R}^{n \times d}` and a composition
matrix :math:`C \in \mathbb{R}^{n \times k}`, the geometric residual is

.. math::

    H_\perp = (I - Q_r Q_r^\top) H, \qquad C P = Q R \ \text{(pivoted thin QR)},

where :math:`Q_r` holds the first :math:`r = \operatorname{rank}(C)` columns of
:math:`Q`. :math:`H_\perp` is the least-squares residual of every column of
:math:`H` regressed on :math:`C`, so :math:`C^\top H_\perp = 0` and no linear
function of composition can be read from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.linalg

from cpd_core.errors import InputError


def _as_2d(name: str, a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise InputError(f"{name} must be 2-D (rows = structures), got shape {a.shape}")
    if a.shape[0] == 0:
        raise InputError(f"{name} has no rows: the selection is empty")
    if not np.isfinite(a).all():
        bad = np.flatnonzero(~np.isfinite(a).all(axis=1))
        raise InputError(f"{name} contains NaN or inf in rows {bad[:10].tolist()}")
    return a


#: A QR of at least this many columns and below :data:`SMALL_QR` entries runs on one BLAS thread (see
#: :func:`_pivoted_qr`); narrower ones (molecules: a handful of elements) do not pay the switch (~35 µs).
MANY_COLUMNS = 16
SMALL_QR = 4_000_000
_BLAS = None


def _one_blas_thread():
    global _BLAS
    if _BLAS is None:
        from threadpoolctl import ThreadpoolController

        _BLAS = ThreadpoolController()
    return _BLAS.limit(limits=1, user_api="blas")


def _pivoted_qr(C: np.ndarray, rtol: float | None):
    # LAPACK's pivoted QR (dgeqp3) makes one level-2 BLAS call per column: on a small matrix with many
    # columns (crystals: ~80 elements) every call synchronises BLAS threads, and while other processes
    # hold the cores (the probes' fold workers) a 240 x 70 QR took 0.1 s instead of 0.4 ms. One thread
    # is as fast when nothing else runs.
    if C.shape[1] >= MANY_COLUMNS and C.size < SMALL_QR:
        with _one_blas_thread():
            Q, R, piv = scipy.linalg.qr(C, mode="economic", pivoting=True)
    else:
        Q, R, piv = scipy.linalg.qr(C, mode="economic", pivoting=True)
    diag = np.abs(np.diag(R))
    if rtol is None:
        rtol = max(C.shape) * np.finfo(np.float64).eps
    rank = int(np.sum(diag > rtol * diag[0])) if diag.size and diag[0] > 0 else 0
    return Q, R, piv, rank


#: A column whose residual norm is below this fraction of its norm lies in span(C).
INSIDE_RTOL = 1e-9


def _inside_span(H: np.ndarray, H_res: np.ndarray) -> np.ndarray:
    """Columns of H that lie in span(C) up to round-off.

    Their residual is round-off, yet a deterministic function of composition:
    a standardising probe would blow it up to unit variance and read
    composition back out of it. They are set to exactly zero.
    """
    return _column_norms(H_res) <= INSIDE_RTOL * _column_norms(H)


def _column_norms(X: np.ndarray) -> np.ndarray:
    """Euclidean norm of each column, in one pass without a temporary (``np.linalg.norm(X, axis=0)``
    is ~50x slower on tall matrices). Squares overflow only for entries beyond 1e154."""
    return np.sqrt(np.einsum("ij,ij->j", X, X))


def residual_in_place(C: np.ndarray, X: np.ndarray, rtol: float | None = None) -> tuple[np.ndarray, int]:
    """Overwrite ``X`` (n, d) with its residual after the least-squares fit on ``C`` (n, k); return the
    coefficients (k, d) and the rank of ``C``.

    Pivoted QR of ``C``, then one step of iterative refinement, which keeps ``C.T @ X`` at round-off
    level; no n x d temporary (on tall matrices allocation, not arithmetic, is the cost).
    """
    Q, R, piv, rank = _pivoted_qr(C, rtol)
    coef = np.zeros((C.shape[1], X.shape[1]))
    if rank:
        Qr, Rr, Cr = Q[:, :rank], R[:rank, :rank], C[:, piv[:rank]]
        coef_r = scipy.linalg.solve_triangular(Rr, Qr.T @ X)
        X -= Cr @ coef_r
        step = scipy.linalg.solve_triangular(Rr, Qr.T @ X)
        X -= Cr @ step
        coef[piv[:rank]] = coef_r + step
    return coef, rank


def composition_rank(C, rtol: float | None = None) -> int:
    """Numerical rank of a composition matrix (pivoted QR, relative tolerance ``rtol``).

    Examples
    --------
    >>> import numpy as np
    >>> fractions_with_intercept = np.array([[0.5, 0.5, 1], [0.25, 0.75, 1], [1.0, 0.0, 1]])
    >>> composition_rank(fractions_with_intercept)  # fractions sum to the intercept
    2
    """
    return _pivoted_qr(_as_2d("C", C), rtol)[3]


@dataclass
class CompositionProjector:
    r"""Removes the linear-in-composition part of features, fit on one set of rows.

    ``fit(C, H)`` finds the least-squares coefficients :math:`B` of
    :math:`H \approx C B` through a pivoted QR of :math:`C` (rank-deficient
    :math:`C` allowed; redundant columns get zero coefficients), and
    ``transform(C, H)`` returns :math:`H - C B`. On the rows it was fit on this
    is exactly :func:`project_out`; on new rows (a held-out fold) it applies the
    training-fold projection, so the test fold never informs the residual.

    Attributes
    ----------
    coef_ : numpy.ndarray, shape (k, d)
    rank_ : int
        Numerical rank of the training composition matrix.

    Examples
    --------
    >>> import numpy as np
    >>> C = np.array([[1., 1], [2, 1], [3, 1], [4, 1]])
    >>> H = 2 * C[:, :1] + 1 + np.array([[0.1], [-0.1], [-0.1], [0.1]])
    >>> p = CompositionProjector().fit(C, H)
    >>> p.rank_, np.round(p.coef_.ravel(), 6)
    (2, array([2., 1.]))
    >>> np.round(p.transform(C, H).ravel(), 6)
    array([ 0.1, -0.1, -0.1,  0.1])
    """

    rtol: float | None = None
    coef_: np.ndarray = field(init=False, repr=False)
    rank_: int = field(init=False)
    inside_: np.ndarray = field(init=False, repr=False)

    def fit(self, C, H) -> "CompositionProjector":
        C, H = _as_2d("C", C), _as_2d("H", H)
        if C.shape[0] != H.shape[0]:
            raise InputError(f"C has {C.shape[0]} rows but H has {H.shape[0]}")
        resid = H.copy()
        coef, rank = residual_in_place(C, resid, self.rtol)
        self.coef_, self.rank_ = coef, rank
        self.inside_ = _inside_span(H, resid)
        return self

    def transform(self, C, H) -> np.ndarray:
        C, H = _as_2d("C", C), _as_2d("H", H)
        if C.shape[0] != H.shape[0]:
            raise InputError(f"C has {C.shape[0]} rows but H has {H.shape[0]}")
        if C.shape[1] != self.coef_.shape[0] or H.shape[1] != self.coef_.shape[1]:
            raise InputError(
                f"fit on C with {self.coef_.shape[0]} and H with {self.coef_.shape[1]} columns, "
                f"got {C.shape[1]} and {H.shape[1]}"
            )
        H_res = H - C @ self.coef_
        H_res[:, self.inside_] = 0.0
        return H_res

    def fit_transform(self, C, H) -> np.ndarray:
        return self.fit(C, H).transform(C, H)


def project_out(H, C, return_rank: bool = False, rtol: float | None = None):
    r"""Remove span(C) from every column of H, exactly.

    .. math::

        H_\perp = H - Q_r Q_r^\top H

    with :math:`Q_r` an orthonormal basis of the column space of :math:`C`
    from a pivoted (rank-revealing) thin QR. The projection is applied twice
    ("twice is enough", Kahan/Parlett), so :math:`C^\top H_\perp` is at
    round-off level even when :math:`H` is nearly inside span(C). Columns of
    :math:`H` that lie inside span(C) (residual norm below ``INSIDE_RTOL`` of
    their norm) are set to exactly zero: their round-off residual is a function
    of composition that a standardising probe would otherwise amplify.

    Parameters
    ----------
    H : array_like, shape (n, d)
        Pooled features, one row per structure.
    C : array_like, shape (n, k)
        Composition matrix (see :func:`cpd_core.composition_matrix`). May be
        rank deficient, e.g. fractions plus an intercept.
    return_rank : bool
        Also return the numerical rank of ``C``.
    rtol : float, optional
        Relative tolerance on the QR diagonal that decides the rank. Default
        ``max(n, k) * eps``.

    Returns
    -------
    H_res : numpy.ndarray, shape (n, d)
    rank : int
        Only when ``return_rank`` is true.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> C = np.hstack([rng.integers(0, 5, (50, 3)), np.ones((50, 1))])
    >>> H = C @ rng.normal(size=(4, 6)) + rng.normal(size=(50, 6))
    >>> H_res, rank = project_out(H, C, return_rank=True)
    >>> rank, bool(np.abs(C.T @ H_res).max() < 1e-10 * np.abs(C.T @ H).max())
    (4, True)
    """
    H, C = _as_2d("H", H), _as_2d("C", C)
    if C.shape[0] != H.shape[0]:
        raise InputError(f"C has {C.shape[0]} rows but H has {H.shape[0]}")
    Q, _, _, rank = _pivoted_qr(C, rtol)
    Qr = Q[:, :rank]
    H_res = H - Qr @ (Qr.T @ H)
    H_res -= Qr @ (Qr.T @ H_res)
    H_res[:, _inside_span(H, H_res)] = 0.0
    return (H_res, rank) if return_rank else H_res
