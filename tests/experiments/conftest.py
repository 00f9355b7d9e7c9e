"""Fixtures of the experiment tests: an empty feature cache per test, and QM9's arrays read once per session."""

import pytest

from cpd_core.datasets import qm9 as qm9_module


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    """An empty cache (features, memos, scans) for one test: nothing leaks in from earlier runs or out to later ones."""
    monkeypatch.setenv("CPD_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def qm9_arrays():
    """All of QM9's arrays, parsed once for the session (skips without the qm9pack package)."""
    if qm9_module.importlib.util.find_spec("qm9pack") is None:
        pytest.skip("QM9 needs the PyPI package qm9pack")
    return qm9_module._all_arrays()


@pytest.fixture
def qm9_loaded(qm9_arrays, monkeypatch):
    """QM9 served from the session's parsed arrays (the per-test empty cache would parse it again)."""
    monkeypatch.setattr(qm9_module, "_all_arrays", lambda: qm9_arrays)
