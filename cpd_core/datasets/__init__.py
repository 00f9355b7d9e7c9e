"""Datasets: structures plus targets (:class:`Dataset`), loaded reproducibly (``n``, ``seed``)."""

from cpd_core.datasets.base import Dataset
from cpd_core.datasets.crystals import MP_TARGETS, PEROV5_TARGETS, load_mp, load_perov5
from cpd_core.datasets.qm9 import QM9_ELEMENTS, load_qm9
from cpd_core.datasets.qm9 import TARGETS as QM9_TARGETS

__all__ = ["Dataset", "MP_TARGETS", "PEROV5_TARGETS", "QM9_ELEMENTS", "QM9_TARGETS", "load_mp", "load_perov5",
           "load_qm9"]
