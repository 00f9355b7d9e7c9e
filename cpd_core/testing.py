"""Helpers for testing a featurizer's invariances (used by the test suite; handy for your own model).

A model's pooled features must not change when a structure is rotated, translated or its
atoms reordered; its L ≥ 1 blocks themselves must rotate. These two helpers are what such a
test needs besides the model.
"""

from __future__ import annotations

import numpy as np
import torch

from cpd_core.pooling import invariant_pool


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random proper rotation matrix (det = +1), from the QR decomposition of a Gaussian matrix.

    Examples
    --------
    >>> R = random_rotation(np.random.default_rng(0))
    >>> bool(np.allclose(R @ R.T, np.eye(3))), round(float(np.linalg.det(R)), 6)
    (True, 1.0)
    """
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def pooled_invariants(blocks: dict[str, torch.Tensor], batch) -> dict[str, torch.Tensor]:
    """Per-structure float64 invariants of per-atom ``blocks`` of ``batch`` (an AtomsBatch), as the engine pools them.

    Mean of L0 blocks; for L ≥ 1 blocks, the mean per-atom channel norm (``@atom-norm``) and
    the norm of the mean vector (``@pooled-norm``); see :func:`cpd_core.pooling.invariant_pool`.
    """
    blocks = {k: v.double() for k, v in blocks.items()}
    return invariant_pool(blocks, batch.batch, batch.n_structures, "mean")
