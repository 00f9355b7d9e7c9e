"""Editions: a run's executed chapters with a manifest that must match them; the front page's provenance."""

import json

import nbformat
import pytest

from cpd_core.editions import check_edition, main, make_edition, provenance_markdown, read_manifest
from cpd_core.errors import InputError
from cpd_core.experiments.scales import SCALES, at_scale


def _chapter(folder, name="toy_chapter"):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# A toy chapter"),
                nbformat.v4.new_code_cell('scale = "book"\nn_molecules = None', metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("print(scale, n_molecules)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def edition(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("editions")
    source = _chapter(tmp)
    manifest = make_edition("small", [source], scale="full", params={"n_molecules": 7}, root=tmp / "editions",
                            log=lambda line: None)
    return tmp / "editions", manifest


def test_an_edition_records_its_run(edition):
    root, manifest = edition
    assert read_manifest("small", root) == manifest
    entry = manifest["chapters"]["toy_chapter"]
    assert manifest["scale"] == "full" and entry["parameters"] == {"scale": "full", "n_molecules": 7}
    assert entry["wall_s"] > 0 and manifest["machine"]["cores"] >= 1 and manifest["machine"]["device"]
    nb = nbformat.read(root / "small" / "toy_chapter.ipynb", as_version=4)
    assert "full 7" in "".join(o.get("text", "") for o in nb.cells[-1].outputs)  # the parameters took effect
    assert check_edition("small", root) == []
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "hide-input" in injected[0].metadata["tags"]  # collapsed like the parameters


def test_a_changed_notebook_or_manifest_is_caught(edition, tmp_path):
    import shutil

    root, _ = edition
    copy = tmp_path / "editions"
    shutil.copytree(root, copy)
    nb_path = copy / "small" / "toy_chapter.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    nb.cells[-1].outputs[0]["text"] = "edited by hand\n"
    nbformat.write(nb, nb_path)
    assert any("sha256" in p for p in check_edition("small", copy))
    manifest = json.loads((copy / "small" / "manifest.json").read_text())
    manifest["chapters"]["ghost"] = {"file": "ghost.ipynb"}
    (copy / "small" / "manifest.json").write_text(json.dumps(manifest))
    assert "ghost: listed in the manifest but missing" in check_edition("small", copy)


def test_an_edition_grows_chapter_by_chapter(tmp_path):
    """Chapters run separately (another scale, another day) join one edition; a re-run replaces its chapter."""
    root = tmp_path / "editions"
    first, second = _chapter(tmp_path, "chapter_a"), _chapter(tmp_path, "chapter_b")
    make_edition("grown", [first], scale="book", params={"n_molecules": 3}, root=root, log=lambda line: None)
    manifest = make_edition("grown", [second], scale="full", root=root, log=lambda line: None)
    assert set(manifest["chapters"]) == {"chapter_a", "chapter_b"}
    a, b = manifest["chapters"]["chapter_a"], manifest["chapters"]["chapter_b"]
    assert a["parameters"] == {"scale": "book", "n_molecules": 3} and b["parameters"] == {"scale": "full"}
    assert a["scale"] == "book" and b["scale"] == "full" and a["commit"] and b["machine"]["cores"] >= 1
    assert check_edition("grown", root) == []
    again = make_edition("grown", [first], scale="full", params={"n_molecules": 5}, root=root, log=lambda line: None)
    assert again["chapters"]["chapter_a"]["parameters"] == {"scale": "full", "n_molecules": 5}
    assert again["chapters"]["chapter_b"] == b and check_edition("grown", root) == []
    table = provenance_markdown([root / "grown" / "chapter_a.ipynb", root / "grown" / "chapter_b.ipynb"],
                                edition="grown", root=root)
    assert table.count("edition `grown`") == 2 and "`n_molecules=5`" in table


def test_unknown_edition_names_the_known_ones(edition):
    root, _ = edition
    with pytest.raises(InputError, match=r"no edition 'big'.*\['small'\]"):
        read_manifest("big", root)


def test_provenance_says_what_each_chapter_shows(edition, tmp_path):
    root, _ = edition
    table = provenance_markdown([root / "small" / "toy_chapter.ipynb"], edition="small", root=root)
    assert "edition `small`" in table and "| full |" in table and "`n_molecules=7`" in table
    built = _chapter(tmp_path)  # never executed by papermill: the notebook's defaults
    line = provenance_markdown([built]).splitlines()[-1]
    assert "this build | book | — |" in line and "cores | — |" in line  # defaults; no papermill wall time


def test_cli_check_exit_codes(edition, monkeypatch, capsys):
    root, _ = edition
    monkeypatch.chdir(root.parent)
    assert main(["check", "small"]) == 0
    assert main(["check", "nothing"]) == 2 and "no edition" in capsys.readouterr().err


# --- the scale ladder ------------------------------------------------------------------------------------


def test_every_chapter_has_both_scales_with_the_same_parameters():
    for chapter, scales in SCALES.items():
        assert set(scales) == {"book", "full"}, chapter
        assert set(scales["book"]) == set(scales["full"]), chapter


def test_explicit_values_win_and_bad_names_raise():
    assert at_scale("ani2x_aev", "full", n_molecules=None) is None  # all of QM9
    assert at_scale("ani2x_aev", "full", n_molecules=123) == 123
    with pytest.raises(InputError, match="unknown scale 'huge'"):
        at_scale("ani2x_aev", "huge", n_molecules=None)
    with pytest.raises(InputError, match="unknown chapter"):
        at_scale("nope", "book", n_molecules=None)
    with pytest.raises(InputError, match="no scale-dependent parameter"):
        at_scale("ani2x_aev", "book", seed=None)


# --- the editions committed to the repository --------------------------------------------------------------

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1] / "editions"
COMMITTED = sorted(p.parent.name for p in ROOT.glob("*/manifest.json"))


@pytest.mark.parametrize("name", COMMITTED)
def test_a_committed_edition_matches_its_manifest_and_renders(name):
    from nbconvert import HTMLExporter

    assert check_edition(name, ROOT) == []
    for chapter in read_manifest(name, ROOT)["chapters"]:
        html, _ = HTMLExporter().from_notebook_node(nbformat.read(ROOT / name / f"{chapter}.ipynb", as_version=4))
        assert "<h1" in html and "Traceback" not in html


@pytest.mark.parametrize("chapter", sorted(SCALES))
def test_every_chapter_notebook_takes_the_scale(chapter):
    """Its parameters cell has ``scale = "book"`` and leaves each scale-dependent parameter to the scale (None)."""
    import ast

    source = (ROOT.parent / "notebooks" / f"{chapter}.py").read_text()
    cell = source.split('tags=["parameters"', 1)[1].split("\n# %%", 1)[0].split("\n", 1)[1]
    values = {node.targets[0].id: ast.literal_eval(node.value) for node in ast.parse(cell).body}
    assert values["scale"] == "book"
    assert all(values[k] is None for k in SCALES[chapter]["book"]), values
