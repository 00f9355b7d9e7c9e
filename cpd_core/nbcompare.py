"""Compare a re-executed notebook's outputs with its reference, to within round-off.

``make test`` re-runs every reference notebook in ``tests/notebooks`` (nbval) and compares
its text outputs with the stored ones after the sanitizer (``tests/nbval_sanitize.cfg``) has
cut floats to three decimals. On another CPU the same code gives slightly different floats:
BLAS kernels and XLA's code for the host's vector units sum in another order, so features
differ in the 7th digit. Two kinds of number react differently to that:

- closed-form results (ridge CPD, R²_comp, intervals of them) move in the 7th digit, which
  shows only when a value sits on a truncation boundary (0.2199999 → ``0.219``, 0.2200001 →
  ``0.220``): **one unit of the last printed decimal** is allowed;
- the nonlinear probes (MLP with early stopping, gradient-boosted trees) amplify it: a
  different stopping epoch or histogram bin moves an MLP R²_geom by up to 0.023 (measured
  here between two float32 batchings of the same features, which differ by ≤ 3.6e-7), so
  numbers on a table row or line that names ``mlp``, ``gbt`` or ``nonlinear``, or in a glued
  value whose name does, may move by **0.05** (or 5 %).

Everything else must match exactly: the words, the integers (n, counts), the chosen blocks,
the verdicts, the number of rows. A number further off than its tolerance fails the test,
and so does a verdict that flips.

:func:`snap_outputs` is what the nbval run uses (``tests/conftest.py``): it returns the new
outputs with every text that matches its reference within tolerance replaced by the
reference's text, so that nbval's own strict comparison passes for them and shows its usual
diff for the rest.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Sequence

__all__ = ["NONLINEAR_ABS", "NONLINEAR_REL", "within_round_off", "snap_outputs"]

#: Tolerance of a number on a nonlinear probe's row: absolute, and relative to the reference.
NONLINEAR_ABS = 0.05
NONLINEAR_REL = 0.05

_FLOAT = re.compile(r"[-+\u2212]?\d+\.(\d+)(?:[eE]([-+]?\d+))?")
_TABLE_ID = re.compile(r"\bT_[0-9a-f]{10}\b")  # report.Table's id: a hash of the table's content
_NONLINEAR = re.compile(r"(?i)(?<![a-z])(?:mlp|gbt|nonlinear)(?![a-z])")


def _units(text: str) -> list[str]:
    """Rows of an HTML table (split before each ``<tr``), else lines."""
    return re.split(r"(?=<tr[\s>])", text) if "<tr" in text else text.split("\n")


def _numbers(unit: str) -> tuple[str, list[tuple[float, float]]]:
    """The unit with every float replaced by ``#``, and each float with one unit of its last digit."""
    found = []
    for m in _FLOAT.finditer(unit):
        value = float(m.group(0).replace("\u2212", "-"))
        last = 10.0 ** (int(m.group(2) or 0) - len(m.group(1)))
        found.append((value, last))
    return _FLOAT.sub("#", unit), found


def within_round_off(reference: str, test: str, context: str = "") -> bool:
    """Whether ``test`` equals ``reference`` up to round-off in its floats.

    Parameters
    ----------
    reference, test : str
        The two outputs, already sanitized the same way.
    context : str, optional
        Words that apply to the whole output, e.g. the name of a glued value
        (``"mlp_gap"``); a nonlinear probe named there loosens every number in it.

    Returns
    -------
    bool
        True when both have the same rows (HTML) or lines, each with the same text around its
        floats, and every float :math:`b` of ``test`` is within the tolerance of its
        counterpart :math:`a`: :math:`|a - b| \\le 1.01\\,u` with :math:`u` the unit of the last
        printed digit, or on a nonlinear probe's row
        :math:`|a - b| \\le \\max(1.01\\,u,\\ 0.05,\\ 0.05\\,|a|)`.

    Examples
    --------
    >>> within_round_off("gap ridge 0.220", "gap ridge 0.219")
    True
    >>> within_round_off("gap ridge 0.220", "gap ridge 0.222")
    False
    >>> within_round_off("gap mlp 0.125 [-0.053, 0.239]", "gap mlp 0.125 [-0.052, 0.241]")
    True
    >>> within_round_off("'0.552'", "'0.571'", context="mlp_gap")
    True
    >>> within_round_off("dipole mlp 0.131 yes", "dipole mlp 0.129 no")
    False
    """
    reference, test = _TABLE_ID.sub("T_ID", reference), _TABLE_ID.sub("T_ID", test)
    if reference == test:
        return True
    ref_units, test_units = _units(reference), _units(test)
    if len(ref_units) != len(test_units):
        return False
    loose_context = bool(_NONLINEAR.search(context))
    for ref_unit, test_unit in zip(ref_units, test_units):
        (ref_shape, ref_nums), (test_shape, test_nums) = _numbers(ref_unit), _numbers(test_unit)
        if ref_shape != test_shape:
            return False
        loose = loose_context or bool(_NONLINEAR.search(ref_unit))
        for (a, unit_a), (b, unit_b) in zip(ref_nums, test_nums):
            tol = 1.01 * max(unit_a, unit_b)
            if loose:
                tol = max(tol, NONLINEAR_ABS, NONLINEAR_REL * abs(a))
            if abs(a - b) > tol:
                return False
    return True


def _context(output) -> str:
    scrap = output.get("metadata", {}).get("scrapbook", {})
    return str(scrap.get("name", ""))


def snap_outputs(test: Sequence, reference: Sequence, sanitize: Callable[[str], str] = lambda s: s) -> list:
    """``test`` with each text output that matches ``reference`` within round-off replaced by the reference's.

    Outputs are paired in order (same count, same ``output_type``; stream outputs also by
    ``name``); for each pair, every text (a stream's ``text``, each string under ``data``) is
    compared after ``sanitize`` with :func:`within_round_off`, using the glued value's name
    (``metadata.scrapbook.name``) as context. Texts that differ by more, and outputs that do
    not pair, are left as they are, for the strict comparison to report. Nothing is modified
    in place.

    Examples
    --------
    >>> ref = [{"output_type": "stream", "name": "stdout", "text": "mlp 0.51\\n"}]
    >>> snap_outputs([{"output_type": "stream", "name": "stdout", "text": "mlp 0.53\\n"}], ref)[0]["text"]
    'mlp 0.51\\n'
    >>> ref = [{"output_type": "stream", "name": "stdout", "text": "ridge 0.51\\n"}]
    >>> snap_outputs([{"output_type": "stream", "name": "stdout", "text": "ridge 0.53\\n"}], ref)[0]["text"]
    'ridge 0.53\\n'
    """
    out = [copy.deepcopy(t) for t in test]
    if len(out) != len(reference):
        return out
    for new, ref in zip(out, reference):
        if new.get("output_type") != ref.get("output_type") or new.get("name") != ref.get("name"):
            continue
        context = _context(ref)
        if isinstance(new.get("text"), str) and isinstance(ref.get("text"), str):
            if within_round_off(sanitize(ref["text"]), sanitize(new["text"]), context):
                new["text"] = ref["text"]
        data, ref_data = new.get("data"), ref.get("data")
        if isinstance(data, dict) and isinstance(ref_data, dict):
            for key, value in data.items():
                ref_value = ref_data.get(key)
                if isinstance(value, str) and isinstance(ref_value, str) \
                        and within_round_off(sanitize(ref_value), sanitize(value), context):
                    data[key] = ref_value
    return out
