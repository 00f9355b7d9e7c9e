"""The scorecard: verdicts computed from numbers, measurements that travel inside executed notebooks to the
scorecard page and the front page (cpd_core.front)."""

import math

import nbformat
import pytest

from cpd_core.errors import InputError
from cpd_core.front import front_page
from cpd_core.scorecard import (
    CLAIMS,
    VERDICTS,
    Claim,
    Measurement,
    collect,
    direction,
    display_table,
    scorecard,
    verdict,
    verdict_counts,
)


def test_value_claims_reproduced_in_direction_or_not():
    c = Claim("x", "v1", "an R²", -0.792)
    assert verdict(c, Measurement("x", -0.70, -0.90, -0.50))[0] == "reproduced"
    assert verdict(c, Measurement("x", -0.20, -0.30, -0.10))[0] == "reproduced in direction only"
    assert verdict(c, Measurement("x", 0.20, 0.10, 0.30))[0] == "not reproduced"
    v, why = verdict(c, Measurement("x", 0.00, -0.10, 0.10))
    assert v == "not reproduced" and "not resolved" in why


def test_range_null_and_sign_claims():
    r = Claim("r", "v1", "trees", (0.68, 0.95), kind="range")
    assert verdict(r, Measurement("r", 0.50, 0.50, 0.70))[0] == "reproduced"          # overlaps at 0.68–0.70
    assert verdict(r, Measurement("r", 0.10, 0.10, 0.40))[0] == "reproduced in direction only"
    assert verdict(r, Measurement("r", -0.3, -0.3, -0.1))[0] == "not reproduced"
    n = Claim("n", "v2", "chance", 0.5, kind="null", ref=0.5)
    assert verdict(n, Measurement("n", 0.5, 0.45, 0.55))[0] == "reproduced"
    assert verdict(n, Measurement("n", 0.6, 0.55, 0.65))[0] == "not reproduced"
    a = Claim("a", "v1", "no routing", 0.0, kind="not above")
    assert verdict(a, Measurement("a", -0.15, -0.2, -0.05))[0] == "reproduced"      # below: no routing either
    assert verdict(a, Measurement("a", 0.01, -0.05, 0.07))[0] == "reproduced"
    assert verdict(a, Measurement("a", 0.08, 0.02, 0.2)) == ("not reproduced", "our interval lies above 0")
    s = Claim("s", "v1", "more efficient", "+", kind="sign")
    assert verdict(s, Measurement("s", 0.4, 0.1, 0.7))[0] == "reproduced"
    assert verdict(s, Measurement("s", -0.4, -0.7, -0.1))[0] == "not reproduced"
    assert direction(s, Measurement("s", 0.1, -0.2, 0.4)) == "not resolved"


def test_missing_or_stand_in_measurements_are_not_comparable_with_their_reason():
    assert verdict(CLAIMS["mace_mp0_gap"], None) == ("not comparable", CLAIMS["mace_mp0_gap"].extra["unavailable"])
    assert verdict(CLAIMS["crystal_gradient"], None)[1] == "not measured in this build"
    m = Measurement("mace_gap_ridge", 0.78, 0.75, 0.80, comparable=False, reason="stand-in")
    assert verdict(CLAIMS["mace_gap_ridge"], m) == ("not comparable", "stand-in")
    # the direction is still computed for a stand-in: it is shown beside the verdict
    assert direction(CLAIMS["mace_gap_ridge"], m) == "agrees"


def test_every_claim_has_one_row_at_least_and_the_counts_add_up():
    found = {"ani2x_aev": ("book", [Measurement("ani_gap_ridge", 0.3, 0.2, 0.4, n=2000, what="AEV"),
                                    Measurement("ani_gap_ridge", -0.8, -1.0, -0.6, n=500, what="other protocol")])}
    card = scorecard(found)
    assert set(card["claim"]) == set(CLAIMS)
    rows = card[card["claim"] == "ani_gap_ridge"]
    assert list(rows["verdict"]) == ["not reproduced", "reproduced"]
    counts = verdict_counts(card)
    assert sum(counts.values()) == len(CLAIMS) and set(counts) == set(VERDICTS)
    assert counts["reproduced"] == 1                  # the best measurement of ani_gap_ridge counts, once
    shown = display_table(card)
    assert shown.loc[rows.index[0], "ours"] == "+0.300 [+0.200, +0.400]" and shown.loc[rows.index[0], "n"] == "2,000"


def test_unknown_claims_and_folders_are_refused(tmp_path):
    from cpd_core.scorecard import record

    with pytest.raises(InputError, match="unknown scorecard claim"):
        record("x", [Measurement("no_such_claim", 0.1)])
    with pytest.raises(InputError, match="no folder"):
        collect(tmp_path / "missing")


def test_measurements_travel_inside_an_executed_notebook_to_the_front_page(tmp_path):
    """A notebook records measurements and glues a figure; the scorecard and the front page read them back."""
    pytest.importorskip("myst_nb")
    from nbclient import NotebookClient

    code = ("%matplotlib inline\n"
            "import matplotlib.pyplot as plt\n"
            "from cpd_core.scorecard import Measurement, record\n"
            "from cpd_core.report import glue\n"
            "record('isomers', [Measurement('isomer_accuracy', 0.9, 0.85, 0.95, n=300, what='toy'),\n"
            "                   Measurement('isomer_composition_chance', 0.5, 0.5, 0.5, n=300)], scale='book')\n"
            "fig, ax = plt.subplots(); ax.plot([0, 1])\n"
            "glue('summary_figure', fig)\n")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# A scorecard"),
                                         nbformat.v4.new_code_cell(code)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    folder = tmp_path / "notebooks"
    folder.mkdir()
    nbformat.write(nb, folder / "scorecard.ipynb")
    # a chapter of the table of contents (its measurements live in the scorecard notebook in this test)
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# The isomer benchmark")]),
                   folder / "isomers.ipynb")
    found = collect(folder)
    assert found["isomers"][0] == "book"
    assert [m.claim for m in found["isomers"][1]] == ["isomer_accuracy", "isomer_composition_chance"]
    assert math.isclose(found["isomers"][1][0].lo, 0.85)
    card = scorecard(found)
    assert card.set_index("claim").loc["isomer_composition_chance", "verdict"] == "reproduced"
    md = front_page(folder, tmp_path / "front")
    text = md.read_text()
    assert (tmp_path / "front" / "summary.png").read_bytes()[:4] == b"\x89PNG"
    assert "+0.900 [+0.850, +0.950]" in text and "| 300 |" in text
    # every chapter of the table of contents once in the status table, with its scale and verdicts
    assert text.count("`The isomer benchmark <../build/notebooks/isomers>`") == 1
    status = next(line for line in text.splitlines() if "notebooks/isomers>" in line)
    assert "| book |" in status and "isomer_accuracy, isomer_composition_chance" in status


def test_front_page_needs_the_scorecard_figure(tmp_path):
    with pytest.raises(InputError, match="summary figure"):
        front_page(tmp_path, tmp_path / "front")


def test_a_chapters_scale_is_read_from_its_parameters_and_injected_ones_win(tmp_path):
    from cpd_core.front import _scale

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('scale = "book"  # or "full"\nn = None')])
    nbformat.write(nb, tmp_path / "a.ipynb")                          # run at its defaults: nothing injected
    assert _scale(tmp_path / "a.ipynb") == "book"
    nb.metadata["papermill"] = {"parameters": {"scale": "full"}}      # what papermill records of `-p scale full`
    nbformat.write(nb, tmp_path / "a.ipynb")
    assert _scale(tmp_path / "a.ipynb") == "full"
    nb.metadata["papermill"] = {"parameters": {"n_molecules": 10000}}  # an edition's run: the scale's own, n given
    nbformat.write(nb, tmp_path / "a.ipynb")
    assert _scale(tmp_path / "a.ipynb") == "book (n_molecules = 10000)"


def test_a_chapter_that_recorded_nothing_is_named_as_such(tmp_path):
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Old")]),
                   tmp_path / "ani2x_aev.ipynb")
    found = collect(tmp_path)
    assert found == {"ani2x_aev": ("", [])}
    card = scorecard(found).set_index("claim")
    assert "recorded no measurement" in card.loc["ani_gap_ridge", "why"]
    assert card.loc["mace_mp0_gap", "why"] == CLAIMS["mace_mp0_gap"].extra["unavailable"]
    assert card.loc["isomer_accuracy", "why"] == "not measured in this build"
