"""Datasets: structures plus targets, loaded reproducibly (``n``, ``seed``)."""

from cpd_core.datasets.qm9 import TARGETS as QM9_TARGETS
from cpd_core.datasets.qm9 import QM9Subset, load_qm9

__all__ = ["QM9Subset", "QM9_TARGETS", "load_qm9"]
