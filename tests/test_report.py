"""The book's table formatter (cpd_core.report.table) on tables with known answers."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from cpd_core.report import MISSING, Table, table


@pytest.fixture
def results():
    return pd.DataFrame({
        "model": ["painn", "visnet", "mace"],
        "mae": [187.494, 265.556, 9.87654],
        "published": [45.7, np.nan, None],
        "r2_geom": [0.31049, -0.0004, np.nan],
        "r2_geom_lo": [0.27123, -0.012, np.nan],
        "r2_geom_hi": [0.35, 0.0031, np.nan],
        "resolved": [True, False, True],
        "n_train": [50000, 2000, 110000],
    }, index=[7, 3, 11])


def test_missing_values_show_as_a_dash(results):
    t = table(results)
    assert MISSING == "—"
    assert t.data.iloc[1, 2] == "—" and t.data.iloc[2, 2] == "—"  # NaN and None
    assert t.data.iloc[2, 3] == "—"  # a missing interval
    assert table(pd.DataFrame({"source": ["schutt2021painn", ""]})).data.iloc[1, 0] == "—"
    assert "nan" not in t.to_html().lower() and "None" not in t.to_html()


def test_the_index_is_not_shown(results):
    html = table(results).to_html()
    assert "row_heading" not in html and "index_name" not in html and "blank" not in html
    assert ">7<" not in html and ">11<" not in html
    assert list(table(results).data.columns)[0] == "model"


def test_a_named_index_becomes_a_column():
    frame = pd.DataFrame({"score": [0.5, 0.25]}, index=pd.Index(["ridge", "mlp"], name="probe"))
    t = table(frame)
    assert list(t.data.columns) == ["probe", "score"]
    assert t.data["probe"].tolist() == ["ridge", "mlp"]


def test_rounding(results):
    t = table(results)
    assert t.data["R²_geom"].tolist() == ["0.310 [0.271, 0.350]", "-0.000 [-0.012, 0.003]", "—"]
    assert t.data["mae"].tolist() == ["187", "266", "9.877"]  # three significant digits from 10 on
    assert table(results, digits=1).data["mae"].tolist() == ["187", "266", "9.9"]
    assert table(results, digits={"mae": 2}).data["mae"].tolist() == ["187", "266", "9.88"]
    assert t.data["n train"].tolist() == ["50,000", "2,000", "110,000"]
    assert table(pd.DataFrame({"n": [2000.0, np.nan]})).data["n"].tolist() == ["2,000", "—"]  # counts as floats
    assert table(pd.DataFrame({"r2": [0.0, 1.0]})).data["r2"].tolist() == ["0.000", "1.000"]
    assert table(results, digits={"mae": 0}).data["mae"].tolist() == ["187", "266", "10"]
    assert table(pd.DataFrame({"alpha": [5623.413]}), digits=0).data["alpha"].tolist() == ["5,623"]
    assert table(results, formats={"mae": "{:.1e}"}).data["mae"].tolist() == ["1.9e+02", "2.7e+02", "9.9e+00"]
    assert t.data["resolved"].tolist() == ["yes", "no", "yes"]


def test_units_in_headers_only(results):
    t = table(results, units={"mae": "meV", "published": "meV"}, labels={"mae": "test MAE"})
    assert list(t.data.columns)[1:3] == ["test MAE (meV)", "published (meV)"]
    assert not t.data.apply(lambda col: col.str.contains("meV")).to_numpy().any()
    assert "<th class=\"col_heading level0 col1\" >test MAE (meV)</th>" in t.to_html()


def test_automatic_headers():
    frame = pd.DataFrame({"r2_geom_worst_fold": [0.1], "naive_r2_geom": [0.2], "r2_comp": [0.3], "geom_share": [0.4],
                          "paper R²_geom": [0.5]})
    assert list(table(frame).data.columns) == ["R²_geom worst fold", "naive R²_geom", "R²_comp", "geom share",
                                               "paper R²_geom"]


def test_intervals_are_found_under_each_naming():
    frame = pd.DataFrame({
        "learned": [0.1], "learned_lo": [0.05], "learned_hi": [0.15],
        "gap − U0": [0.2], "gap − U0 lo": [0.1], "gap − U0 hi": [0.3],
        "r2_geom mass": [-0.009], "r2_geom_lo mass": [-0.058], "r2_geom_hi mass": [-0.004],
        "ours_lo": [0.0],
    })
    t = table(frame)
    assert list(t.data.columns) == ["learned", "gap − U0", "R²_geom mass", "ours lo"]
    assert t.data.iloc[0].tolist() == ["0.100 [0.050, 0.150]", "0.200 [0.100, 0.300]",
                                       "-0.009 [-0.058, -0.004]", "0.000"]
    assert list(table(frame, intervals=["learned"]).data.columns)[:2] == ["learned", "gap − U0"]
    assert "gap − U0 lo" in table(frame, intervals=["learned"]).data.columns
    assert "learned lo" in table(frame, intervals=False).data.columns
    with pytest.raises(KeyError):
        table(frame, intervals=["ours"])


def test_large_values_follow_format_interval():
    frame = pd.DataFrame({"r2": [-2644.4], "r2_lo": [-4840.0], "r2_hi": [-1090.0], "alpha": [5623.413]})
    assert table(frame).data.iloc[0].tolist() == ["-2.64e+03 [-4.84e+03, -1.09e+03]", "5.62e+03"]


def test_numbers_break_only_before_their_interval_and_text_is_left_aligned(results):
    html = table(results).to_html()
    assert "0.310 [0.271,&nbsp;0.350]" in html
    assert "td.col0" in html and "text-align: left" in html  # the model names
    assert 'class="dataframe cpd-table"' in html


def test_long_text_can_wrap():
    frame = pd.DataFrame({"source": ["gasteiger2020dimenetpp"], "path": ["checkpoints/qm9/painn-gap"],
                          "spread": ["0.227–0.252 (3 seeds)"], "model": ["so3net-ani1x"]})
    html = table(frame).to_html()
    assert "gasteiger<wbr>2020<wbr>dimenetpp" in html  # a long word, between letters and digits
    assert "checkpoints/<wbr>qm9/<wbr>painn-gap" in html and "0.227–<wbr>0.252" in html
    assert ">so3net-ani1x<" in html  # short words are left alone
    assert table(pd.DataFrame({"a": ["x<y & z"]})).to_html().count("x&lt;y &amp; z") == 1


def test_multiindex_columns():
    frame = pd.concat({"ridge": pd.DataFrame({"gap": [0.5]}), "mlp": pd.DataFrame({"gap": [0.7]})}, axis=1)
    frame.index = pd.MultiIndex.from_tuples([("painn", "gap")], names=["arch", "target"])
    t = table(frame)
    assert t.data.columns.tolist() == [("arch", ""), ("target", ""), ("ridge", "gap"), ("mlp", "gap")]
    assert t.data.iloc[0].tolist() == ["painn", "gap", "0.500", "0.700"]
    assert 'colspan="1"' not in t.to_html()


def test_html_is_the_same_in_every_run(results):
    """nbval compares the HTML: the Styler's table id must not be random."""
    code = ("import pandas as pd; from cpd_core.report import table; "
            "print(table(pd.DataFrame({'a': [0.5, None], 'b': ['x', 'y']})).to_html())")
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
            for _ in range(2)]
    assert runs[0] == runs[1] and 'id="T_' in runs[0]
    assert table(results).to_html() == table(results).to_html()
    other = results.assign(mae=results["mae"] + 1)
    assert table(results).uuid != table(other).uuid  # two tables on a page do not share styles


def test_text_repr_and_caption(results):
    t = table(results[["model", "mae"]], caption="Test MAE")
    assert isinstance(t, Table)
    assert repr(t).splitlines() == ["Test MAE", " model   mae", " painn   187", "visnet   266", "  mace 9.877"]
    assert "<caption>Test MAE</caption>" in t.to_html()


def test_empty_table():
    t = table(pd.DataFrame({"a": pd.Series([], dtype=float)}))
    assert t.data.shape == (0, 1) and "<table" in t.to_html()
