r"""ANI-2x's atomic environment vector (AEV): a handcrafted, weight-free descriptor.

The ANI AEV of atom :math:`i` (Smith, Isayev & Roitberg 2017; Devereux et al.
2020 for ANI-2x) concatenates radial terms per neighbour species :math:`Z`

.. math::

    G^R_{i,k,Z} = \sum_{j \ne i,\ Z_j = Z} e^{-\eta_R (r_{ij} - R_k)^2} f_c(r_{ij}),
    \qquad r_c = 5.1\ \text{Å},

and angular terms per species pair :math:`(Z, Z')`

.. math::

    G^A_{i,k,l,ZZ'} = 2^{1-\zeta}\sum_{j<k'} \left(1 + \cos(\theta_{ijk'} - \theta_l)\right)^{\zeta}
        e^{-\eta_A\left(\frac{r_{ij} + r_{ik'}}{2} - R_k\right)^2} f_c(r_{ij}) f_c(r_{ik'}),
    \qquad r_c = 3.5\ \text{Å},

7 species give 16 × 7 = 112 radial and 32 × 28 = 896 angular features, 1,008
in all. Every term is a sum over neighbours of functions of distances and
angles, so the AEV is invariant to rotation, translation and the order of atoms.
This module uses torchani's own :meth:`torchani.aev.AEVComputer.like_2x`; no
weights are needed.
"""

from __future__ import annotations

import warnings

import torch

#: ANI-2x species in the order of its networks (H C N O S F Cl).
ANI2X_ELEMENTS = (1, 6, 7, 8, 16, 9, 17)


class ANI2xAEV:
    """Featurizer (see :mod:`cpd_core.extract`) returning ANI-2x AEV blocks per atom.

    Blocks: ``"radial"`` (112), ``"angular"`` (896) and ``"aev"`` (both, 1,008).

    Examples
    --------
    >>> import torch
    >>> f = ANI2xAEV()
    >>> z = torch.tensor([[6, 1, 1, 1, 1]]); r = torch.randn(1, 5, 3)
    >>> {k: tuple(v.shape) for k, v in f(z, r, z > 0).items()}
    {'aev': (1, 5, 1008), 'radial': (1, 5, 112), 'angular': (1, 5, 896)}
    """

    name = "ani2x-aev"
    elements = ANI2X_ELEMENTS

    def __init__(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torchani.aev import AEVComputer

        self.computer = AEVComputer.like_2x()
        lookup = torch.full((max(ANI2X_ELEMENTS) + 1,), -1, dtype=torch.int64)
        lookup[list(ANI2X_ELEMENTS)] = torch.arange(len(ANI2X_ELEMENTS))
        self._lookup = lookup

    def spec(self) -> dict:
        """Everything that determines the output: the AEV hyper-parameters and torchani's version."""
        import torchani

        c = self.computer
        return {"torchani": torchani.__version__,
                "buffers": {k: v.tolist() for k, v in c.state_dict().items()},
                "cutoffs": {"radial": float(c.radial.cutoff), "angular": float(c.angular.cutoff),
                            "function": type(c.radial.cutoff_fn).__name__},
                "elements": ANI2X_ELEMENTS}

    def __call__(self, numbers: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor) -> dict:
        computer = self.computer.to(device=positions.device, dtype=positions.dtype)
        species = self._lookup.to(numbers.device)[numbers]
        species = torch.where(mask, species, torch.full_like(species, -1))
        aev = computer(species, positions)
        n_rad = computer.radial_len
        return {"aev": aev, "radial": aev[..., :n_rad], "angular": aev[..., n_rad:]}
