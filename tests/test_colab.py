"""Colab: the setup script's decisions (torch kept or replaced, pip commands, stale modules), the generated
Colab notebooks (current with their chapters, at full scale, setup first) and the book's Colab box.

The setup's real run (installing the pinned stack in a fresh Python 3.12 environment and executing a
chapter's Colab notebook there) is not a unit test: it downloads several GB. README "Colab" says where
and how it was verified.
"""

from __future__ import annotations

import importlib.metadata as metadata
import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from cpd_core import InputError
from cpd_core.colab import chapters, colab_link, colab_notebook, repository, stale, write_colab

ROOT = Path(__file__).resolve().parents[1]


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


setup_script = _load(ROOT / "scripts" / "colab_setup.py", "colab_setup")
colab_links = _load(ROOT / "book" / "_ext" / "colab_links.py", "colab_links")


def test_torch_range_is_what_the_pinned_stacks_accept():
    """TORCH_RANGE against the torch requirements of every installed package of requirements.txt."""
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    pins = [line.split("==")[0].split("[")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
            if "==" in line and not line.lstrip().startswith("#")]
    specs = {}
    for dist in pins:
        for req in metadata.requires(dist) or []:
            r = Requirement(req)
            if r.name == "torch" and (r.marker is None or r.marker.evaluate({"extra": ""})):
                specs[dist] = r.specifier
    assert {"torchani", "so3krates-torch"} <= set(specs)  # the two that bound the range
    allowed = SpecifierSet(setup_script.TORCH_RANGE)
    for v in ("2.6.0", "2.9.1", "2.13.0"):
        assert Version(v) in allowed and all(Version(v) in s for s in specs.values()), v
    for v in ("2.5.1", "2.13.1", "2.14.0"):  # just outside: refused by the range and by some package
        assert Version(v) not in allowed and not all(Version(v) in s for s in specs.values()), v
    assert setup_script.TORCH_PIN == "torch==2.13.0" == "torch==" + metadata.version("torch").split("+")[0]


@pytest.mark.parametrize("found, action, spec", [
    ("2.9.0+cu126", "keep", "torch==2.9.0+cu126"),
    ("2.13.0", "keep", "torch==2.13.0"),
    ("2.5.1+cu124", "install", "torch==2.13.0"),
    ("2.14.1+cu128", "install", "torch==2.13.0"),
    (None, "install", "torch==2.13.0"),
])
def test_torch_plan(found, action, spec):
    assert setup_script.torch_plan(found) == (action, spec)


def test_pip_commands_hold_torch(tmp_path):
    keep = setup_script.commands("torch==2.9.0+cu126", "keep", tmp_path / "c.txt")
    assert not any(c[-1].startswith("torch==") for c in keep)  # Colab's own torch is not reinstalled
    assert ["-r", str(ROOT / "requirements.txt"), "-c", str(tmp_path / "c.txt")] == keep[0][-4:]
    assert keep[-1][-3:] == ["--no-deps", "-e", str(ROOT)]
    install = setup_script.commands("torch==2.13.0", "install", tmp_path / "c.txt")
    assert install[0][-1] == "torch==2.13.0" and len(install) == 3


def test_stale_modules_named():
    import numpy

    modules = {"numpy": numpy, "numpy.linalg": numpy.linalg, "not_a_distribution": SimpleNamespace()}
    now = setup_script.imported_versions(modules)
    assert now == {"numpy": metadata.version("numpy")}
    assert setup_script.stale_modules(now, modules) == []  # nothing installed in between: nothing stale
    assert setup_script.stale_modules({"numpy": "1.0.0"}, modules) == [f"numpy 1.0.0 -> {metadata.version('numpy')}"]


def test_dry_run_plans_without_installing(capsys):
    report = setup_script.setup(dry_run=True)
    out = capsys.readouterr().out
    assert report["action"] == "keep" and report["torch"].startswith("torch==2.13.0")
    assert f"Python {sys.version.split()[0]}" in out and "-r" in out and "install" in out


def test_colab_notebooks_are_current():
    """colab/ holds one notebook per chapter, identical to what `make colab` writes now."""
    assert chapters() == sorted(p.stem for p in (ROOT / "colab").glob("*.ipynb"))
    assert stale() == [], "run `make colab`"


@pytest.mark.parametrize("name", chapters(ROOT / "notebooks"))
def test_colab_notebook_is_the_chapter_at_full_scale(name):
    import jupytext

    nb = colab_notebook(name, "https://github.com/someone/cpd-book", "main")
    cells = nb["cells"]
    assert "On Colab" in "".join(cells[1]["source"])
    params, setup = cells[2], cells[3]
    source = "".join(params["source"])
    assert params["metadata"]["tags"] == ["parameters", "hide-input"] or "parameters" in params["metadata"]["tags"]
    assert 'REPOSITORY = \'https://github.com/someone/cpd-book\'' in source and 'scale = "full"' in source
    assert 'scale = "book"' not in source
    assert "colab_setup.setup()" in "".join(setup["source"])
    chapter = [c for c in jupytext.read(ROOT / "notebooks" / f"{name}.py").cells
               if "parameters" not in c.metadata.get("tags", [])]
    assert chapter[0].cell_type == "markdown" and chapter[0].source.startswith("# ")  # title and abstract first
    ours = [cells[0]] + cells[4:]
    assert ["".join(c["source"]) for c in ours] == [c.source for c in chapter]  # every other cell, in order
    json.dumps(nb)  # serialisable


def test_colab_errors(tmp_path):
    (tmp_path / "x.py").write_text("# %%\nscale = 'book'\n")
    with pytest.raises(InputError, match="one cell tagged 'parameters'"):
        colab_notebook("x", notebooks=tmp_path)
    (tmp_path / "y.py").write_text('# %% tags=["parameters"]\nn = 3\n')
    with pytest.raises(InputError, match='scale = "book"'):
        colab_notebook("y", notebooks=tmp_path)
    with pytest.raises(InputError, match="no chapter notebook"):
        colab_notebook("z", notebooks=tmp_path)
    with pytest.raises(InputError, match="public GitHub"):
        colab_link("x", "git@github.com:someone/cpd-book.git")


def test_write_and_check_in_a_copy(tmp_path):
    (tmp_path / "nb").mkdir()
    (tmp_path / "nb" / "a.py").write_text('# %% [markdown]\n# # A chapter\n\n# %% tags=["parameters"]\n'
                                          'scale = "book"\n\n# %%\nprint(scale)\n')
    config = tmp_path / "_config.yml"
    config.write_text("repository:\n  url: https://github.com/someone/cpd-book\n  branch: dev\n")
    assert repository(config) == ("https://github.com/someone/cpd-book", "dev")
    out = tmp_path / "colab"
    assert write_colab(out, config, tmp_path / "nb") == [out / "a.ipynb"]
    assert stale(out, config, tmp_path / "nb") == []
    nb = json.loads((out / "a.ipynb").read_text())
    assert nb["cells"][0]["source"] == ["# A chapter"]
    assert "BRANCH = 'dev'" in "".join(nb["cells"][2]["source"])
    (tmp_path / "nb" / "a.py").write_text((tmp_path / "nb" / "a.py").read_text() + "\n# %%\nprint(2)\n")
    assert stale(out, config, tmp_path / "nb") == ["a"]  # a chapter edited without `make colab`


def test_book_box_links_or_says_where():
    linked = colab_links.colab_box("isomers", "https://github.com/someone/cpd-book", "main")
    assert "(https://colab.research.google.com/github/someone/cpd-book/blob/main/colab/isomers.ipynb)" in linked
    unlinked = colab_links.colab_box("isomers", "", "main")
    assert "colab/isomers.ipynb" in unlinked and "no link" in unlinked and "https://" not in unlinked
    app = SimpleNamespace(config=SimpleNamespace(html_theme_options={"repository_url": ""}))
    source = ["# Title\n\nText.\n"]
    colab_links._insert(app, "book/isomers", source)
    assert source[0].startswith("# Title\n\n:::{admonition} Re-execute") and source[0].endswith("Text.\n")
    other = ["# Title\n"]
    colab_links._insert(app, "book/references", other)  # not a chapter with a notebook
    assert other == ["# Title\n"]


def test_config_repository_is_github_or_unset():
    """Colab opens GitHub repositories only; unset (this project states no public address) is allowed."""
    url, branch = repository(ROOT / "_config.yml")
    assert url == "" or url.startswith("https://github.com/")
