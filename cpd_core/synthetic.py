r"""Synthetic "molecules" with planted compositional and geometric signal: known answers for CPD.

Each synthetic molecule has a random composition (H, C, N, O, F counts) and
:math:`m` latent geometric variables :math:`g` that are exactly orthogonal to
the composition span (``project_out``). Its pooled features mimic a real
mean-pooled model:

.. math::

    H = \Big[\ \underbrace{F,\ \tanh(N / s)_{s = 1, 2, 4, 8}}_{\text{nonlinear in composition}}\ \Big|\
          \underbrace{0.3\, N V}_{\text{linear in counts}} + \underbrace{G W}_{\text{geometry}} + \sigma E\ \Big],

with :math:`F` the element fractions, :math:`N` the counts (the saturating
block acts element by element, like a descriptor's per-species terms) and random
Gaussian :math:`V, W, E`. A target with planted shares is

.. math::

    y = a\, z_c + b\, z_g + \sqrt{1 - a^2 - b^2}\, \varepsilon,

with :math:`z_c` a standardised linear function of the counts, :math:`z_g` the
first standardised geometric latent and :math:`\varepsilon` standard noise. The
best linear predictor of :math:`y` from the residual :math:`H_\perp` is
:math:`b\,z_g`, so the true :math:`R^2_\text{geom}` is :math:`\operatorname{var}(b z_g)/\operatorname{var}(y)`
(computed on the sample, not assumed). A *purely compositional* target
(:math:`b = 0`, no noise) has true linear :math:`R^2_\text{geom} = 0`, yet the
nonlinear block leaves nonlinear traces of composition in :math:`H_\perp` that a
tree probe can decode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cpd_core.composition import composition_matrix
from cpd_core.datasets.qm9 import QM9_ELEMENTS
from cpd_core.errors import InputError
from cpd_core.projection import project_out

ELEMENTS = QM9_ELEMENTS  #: the planted molecules use QM9's elements


@dataclass
class PlantedData:
    """A synthetic data set with known answers.

    Attributes
    ----------
    numbers : list of numpy.ndarray
        Atomic numbers per molecule (so :func:`~cpd_core.composition_matrix` applies).
    C : numpy.ndarray
        Counts composition matrix with intercept.
    H : numpy.ndarray
        Pooled features.
    y : numpy.ndarray
        Target with planted shares.
    r2_geom_true, r2_comp_true : float
        Variance shares of the geometric and compositional parts of ``y`` on this sample.
    """

    numbers: list
    C: np.ndarray
    H: np.ndarray
    y: np.ndarray
    r2_geom_true: float
    r2_comp_true: float


def _standardise(v: np.ndarray) -> np.ndarray:
    return (v - v.mean()) / v.std()


def planted(n: int = 2000, comp_share: float = 0.4, geom_share: float = 0.4, n_features: int = 64,
            n_geometric: int = 4, feature_noise: float = 0.1, seed: int = 0) -> PlantedData:
    """Draw a synthetic data set (see the module docstring for the model).

    Parameters
    ----------
    n : int
        Molecules.
    comp_share, geom_share : float
        :math:`a^2` and :math:`b^2`, the planted variance shares of ``y``; their sum ≤ 1,
        the rest is noise.
    n_features : int
        Columns of the mixed block of ``H`` (25 compositional columns come first).
    n_geometric : int
        Geometric latents (only the first enters ``y``).
    feature_noise : float
        :math:`\\sigma`.
    seed : int

    Examples
    --------
    >>> d = planted(n=500, comp_share=0.3, geom_share=0.5, seed=1)
    >>> d.H.shape, round(d.r2_geom_true, 1), round(d.r2_comp_true, 1)
    ((500, 89), 0.5, 0.3)
    """
    if comp_share < 0 or geom_share < 0 or comp_share + geom_share > 1 + 1e-12:
        raise InputError("shares must be non-negative and sum to at most 1")
    rng = np.random.default_rng(seed)
    slots = rng.multinomial(1, [0.65, 0.15, 0.17, 0.03], size=(n, 9))  # element of each heavy-atom slot
    used = np.arange(9)[None, :] < rng.integers(1, 10, size=(n, 1))      # 1..9 heavy atoms (C N O F)
    heavy = (slots * used[:, :, None]).sum(axis=1)
    n_h = rng.integers(0, 2 * heavy.sum(axis=1) + 3)
    counts = np.column_stack([n_h, heavy])
    numbers = [np.repeat(ELEMENTS, c) for c in counts]
    C = composition_matrix(numbers, elements=ELEMENTS)
    fractions = counts / counts.sum(axis=1, keepdims=True)

    G = project_out(rng.normal(size=(n, n_geometric)), C)
    G = (G - G.mean(axis=0)) / G.std(axis=0)
    saturating = np.tanh(counts[:, :, None] / np.array([1.0, 2.0, 4.0, 8.0])).reshape(n, -1)
    mixed = (counts @ rng.normal(size=(5, n_features)) * 0.3
             + G @ rng.normal(size=(n_geometric, n_features))
             + feature_noise * rng.normal(size=(n, n_features)))
    H = np.hstack([fractions, saturating, mixed])

    z_c = _standardise(counts @ rng.normal(size=5))
    z_g = G[:, 0]
    a, b = np.sqrt(comp_share), np.sqrt(geom_share)
    noise_share = max(0.0, 1.0 - comp_share - geom_share)
    y = a * z_c + b * z_g + np.sqrt(noise_share) * rng.normal(size=n)
    return PlantedData(numbers, C, H, y,
                       r2_geom_true=float(np.var(b * z_g) / np.var(y)),
                       r2_comp_true=float(np.var(a * z_c) / np.var(y)))
