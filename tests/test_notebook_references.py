"""Every notebook has an executed reference in tests/notebooks/ that holds its current code.

``make test`` re-runs the references with nbval and compares their outputs. That only tests
the book if each reference was executed from the notebook as it is now, so an edited
notebook whose reference was not refreshed fails here.
"""

import difflib
from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "notebooks").glob("*.py"))
REFERENCES = ROOT / "tests" / "notebooks"
FIX = "run `make refresh-references` and commit tests/notebooks/"


def code_cells(notebook):
    """Sources of the code cells, leaving out the cell papermill adds for NB_PARAMS."""
    return [
        cell.source
        for cell in notebook.cells
        if cell.cell_type == "code" and "injected-parameters" not in cell.metadata.get("tags", [])
    ]


@pytest.mark.parametrize("source", SOURCES, ids=[path.stem for path in SOURCES])
def test_reference_has_the_notebooks_code(source):
    reference = REFERENCES / f"{source.stem}.ipynb"
    assert reference.exists(), f"{reference.relative_to(ROOT)} is missing: {FIX}"
    expected = code_cells(jupytext.read(source))
    stored = code_cells(nbformat.read(reference, as_version=4))
    if stored != expected:
        diff = "\n".join(
            difflib.unified_diff(
                "\n\n# %%\n".join(stored).splitlines(),
                "\n\n# %%\n".join(expected).splitlines(),
                fromfile=str(reference.relative_to(ROOT)),
                tofile=str(source.relative_to(ROOT)),
                lineterm="",
            )
        )
        pytest.fail(f"{source.name} changed since its reference was executed: {FIX}\n{diff}")


def test_every_reference_has_a_notebook():
    orphans = sorted(
        path.name for path in REFERENCES.glob("*.ipynb") if not (ROOT / "notebooks" / f"{path.stem}.py").exists()
    )
    assert not orphans, f"references without a notebooks/*.py: {orphans}: {FIX}"
