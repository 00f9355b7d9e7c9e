"""Training the QM9 networks of :mod:`cpd_core.models.trained` under one protocol (issue 4).

:mod:`~cpd_core.training.data` holds the seeded split and the target normalisation,
:mod:`~cpd_core.training.trainer` the protocol itself (``cpd train``).
"""

from cpd_core.training.data import Normalisation, QM9Tensors, assert_held_out, probe_rows, split_indices
from cpd_core.training.trainer import LEARNING_RATES, TrainConfig, train

__all__ = ["LEARNING_RATES", "Normalisation", "QM9Tensors", "TrainConfig", "assert_held_out", "probe_rows",
           "split_indices", "train"]
