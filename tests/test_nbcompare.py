"""Known answers for the round-off tolerance of the nbval run (cpd_core.nbcompare)."""

import nbformat

from cpd_core.nbcompare import snap_outputs, within_round_off

# Two rows of the models chapter's table as CI printed them, and as the reference stores them
# (the reference came from another CPU: the MLP's interval moved, its mean did not).
ROW = """<tr>
  <td class="data row40 col0" >so3lr-random</td>
  <td class="data row40 col5" >{probe}</td>
  <td class="data row40 col6" >0.201</td>
  <td class="data row40 col7" >0.125 [{lo},&nbsp;{hi}]</td>
</tr>
"""


def table(table_id, *rows):
    return f'<style>#{table_id} th {{padding: 0}}</style><table id="{table_id}">' + "".join(rows) + "</table>"


def test_the_ci_failure_is_round_off_of_an_mlp_row():
    ref = table("T_24e8077b65", ROW.format(probe="ridge", lo="0.100", hi="0.150"),
                ROW.format(probe="mlp", lo="-0.053", hi="0.239"))
    new = table("T_2d64632c57", ROW.format(probe="ridge", lo="0.100", hi="0.150"),
                ROW.format(probe="mlp", lo="-0.052", hi="0.241"))
    assert within_round_off(ref, new)


def test_a_ridge_row_allows_one_unit_of_its_last_digit_only():
    ref = table("T_24e8077b65", ROW.format(probe="ridge", lo="0.100", hi="0.150"))
    assert within_round_off(ref, table("T_0000000000", ROW.format(probe="ridge", lo="0.101", hi="0.149")))
    assert not within_round_off(ref, table("T_0000000000", ROW.format(probe="ridge", lo="0.102", hi="0.150")))


def test_an_mlp_row_fails_beyond_its_tolerance():
    ref = table("T_24e8077b65", ROW.format(probe="mlp", lo="-0.053", hi="0.239"))
    assert within_round_off(ref, table("T_24e8077b65", ROW.format(probe="mlp", lo="-0.003", hi="0.239")))
    assert not within_round_off(ref, table("T_24e8077b65", ROW.format(probe="mlp", lo="0.010", hi="0.239")))


def test_the_tolerance_is_per_row_not_per_table():
    """An MLP row in the same table does not loosen a ridge row."""
    ref = table("T_1", ROW.format(probe="ridge", lo="0.100", hi="0.150"), ROW.format(probe="mlp", lo="0.0", hi="0.2"))
    new = table("T_1", ROW.format(probe="ridge", lo="0.120", hi="0.150"), ROW.format(probe="mlp", lo="0.0", hi="0.2"))
    assert not within_round_off(ref, new)


def test_words_integers_and_row_counts_must_match():
    assert not within_round_off("dipole mlp 0.131 yes", "dipole mlp 0.131 no")
    assert not within_round_off("500 molecules, mlp 0.5", "499 molecules, mlp 0.5")
    assert not within_round_off("a 0.1\nb 0.2", "a 0.1")
    assert not within_round_off("gap ridge 0.220", "gap mlp 0.220")


def test_signs_exponents_and_the_unicode_minus():
    assert within_round_off("MLP \u2212 ridge: [+0.119, +0.310]", "MLP \u2212 ridge: [+0.121, +0.309]")
    assert within_round_off("ridge -0.001", "ridge +0.000")
    assert within_round_off("alpha 1.234e-05", "alpha 1.235e-05")
    assert not within_round_off("alpha 1.234e-05", "alpha 1.236e-05")


def test_a_glued_values_name_is_its_context():
    assert within_round_off("'0.182'", "'0.201'", context="mlp_gap_std")
    assert within_round_off("'0.10'", "'0.13'", context="gbt_min")
    assert not within_round_off("'0.182'", "'0.201'", context="ridge_gap")


def test_snap_outputs_replaces_matching_texts_with_the_references():
    glued = {"output_type": "display_data", "metadata": {"scrapbook": {"name": "ani2x_mlp"}},
             "data": {"application/papermill.record/text/plain": "'0.543'"}}
    ref = [nbformat.from_dict({"output_type": "stream", "name": "stdout", "text": "mlp 0.51\n"}),
           nbformat.from_dict(glued)]
    new = [nbformat.from_dict({"output_type": "stream", "name": "stdout", "text": "mlp 0.53\n"}),
           nbformat.from_dict({**glued, "data": {"application/papermill.record/text/plain": "'0.561'"}})]
    snapped = snap_outputs(new, ref)
    assert snapped == ref
    assert new[0]["text"] == "mlp 0.53\n", "the test's outputs are not modified in place"


def test_snap_outputs_leaves_what_differs_for_the_strict_comparison():
    ref = [{"output_type": "stream", "name": "stdout", "text": "ridge 0.51\n"}]
    assert snap_outputs([{"output_type": "stream", "name": "stdout", "text": "ridge 0.55\n"}], ref)[0]["text"] \
        == "ridge 0.55\n"
    # unpaired outputs (another count, another type or stream) are not touched
    assert snap_outputs([], ref) == []
    other = [{"output_type": "stream", "name": "stderr", "text": "ridge 0.51\n"}]
    assert snap_outputs(other, ref) == other


def test_snap_outputs_sanitizes_both_sides_first():
    ref = [{"output_type": "stream", "name": "stdout", "text": "took 3.2 s, ridge 0.51\n"}]
    new = [{"output_type": "stream", "name": "stdout", "text": "took 9.9 s, ridge 0.51\n"}]

    def sanitize(s):
        return s.replace("3.2 s", "DURATION").replace("9.9 s", "DURATION")

    assert snap_outputs(new, ref, sanitize)[0]["text"] == ref[0]["text"]
