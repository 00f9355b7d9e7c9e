"""pytest settings shared by the unit tests and the nbval run of the reference notebooks.

``pytest --nbval tests/notebooks`` (the second half of ``make test``) re-executes each
reference notebook and compares its outputs with the stored ones. The hooks below make that
run match how ``make book`` executed them with papermill:

- the kernel is the Python running pytest (the venv's), and starts in the repository root
  (nbval would start it in ``tests/notebooks``);
- matplotlib draws inline, as in a papermill kernel (with ``MPLBACKEND=Agg`` a kernel drops
  every figure from the outputs);
- outputs go through ``tests/nbval_sanitize.cfg`` (timings, paths, dates, float noise);
- floats then match to within round-off (:mod:`cpd_core.nbcompare`): one unit of the last
  printed digit, or 0.05 on a row or glued value of a nonlinear probe (MLP, GBT), whose early
  stopping and histogram bins turn another CPU's round-off into visible changes;
- stderr (warnings, progress bars, logging) and figure data (PNG, JPEG, SVG, PDF) are not
  compared; stdout, ``text/plain``, ``text/html`` and the other text outputs are.
"""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SANITIZER = ROOT / "tests" / "nbval_sanitize.cfg"
NOT_COMPARED = ("stderr", "image/svg+xml", "application/pdf")


def _nbval_on(config):
    return bool(getattr(config.option, "nbval", False) or getattr(config.option, "nbval_lax", False))


def pytest_configure(config):
    if not _nbval_on(config):
        return
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    if not config.option.nbval_kernel_name:
        config.option.nbval_current_env = True
    if config.option.nbval_sanitize_with is None:
        config.option.nbval_sanitize_with = str(SANITIZER)
    _compare_within_round_off()


def _compare_within_round_off():
    """Make nbval's cell comparison accept floats that differ by round-off only (once per process)."""
    from nbval.plugin import IPyNbCell

    from cpd_core.nbcompare import snap_outputs

    strict = IPyNbCell.compare_outputs
    if getattr(strict, "_cpd_round_off", False):
        return

    def compare_outputs(self, test, ref, skip_compare=None):
        return strict(self, snap_outputs(test, ref, self.sanitize), ref, skip_compare)

    compare_outputs._cpd_round_off = True
    IPyNbCell.compare_outputs = compare_outputs


def toc_order() -> list[str]:
    """Chapter notebooks in the book's order (``_toc.yml``), as ``make book`` executes them."""
    import re

    return re.findall(r"build/notebooks/(\w+)", (ROOT / "_toc.yml").read_text())


def pytest_collection_modifyitems(config, items):
    """nbval runs the reference notebooks in the book's order, as ``make book`` does: the later chapters
    read the features and block scans the models and task-alignment chapters put in the cache."""
    if not _nbval_on(config):
        return
    order = {name: i for i, name in enumerate(toc_order())}

    def rank(item):
        path = Path(str(item.fspath))
        return (order.get(path.stem, len(order)), path.stem) if path.suffix == ".ipynb" else (-1, "")

    items[:] = [item for _, item in sorted(enumerate(items), key=lambda p: (rank(p[1]), p[0]))]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    result = yield
    notebook = item.parent
    kernel = getattr(notebook, "kernel", None)
    if kernel is not None and not getattr(notebook, "_cpd_ready", False):
        # Once per notebook, after nbval started its kernel and before the first cell runs.
        notebook.skip_compare = tuple(notebook.skip_compare) + NOT_COMPARED
        msg_id = kernel.kc.execute(f"import os; os.chdir({str(ROOT)!r})", silent=True)
        kernel.await_idle(msg_id, 60)
        notebook._cpd_ready = True
    return result


@pytest.fixture(autouse=True, scope="session")
def _one_blas_thread():
    """Unit tests fit small models: one BLAS/OpenMP thread is as fast, and immune to
    oversubscription when another process (a notebook build) shares the cores, where
    multi-threaded GBT and ridge slow down 10-100x."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield
