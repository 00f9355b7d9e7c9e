"""Helpers for notebooks that become book pages."""

from __future__ import annotations

import hashlib
import html
import math
import numbers
import re
from collections.abc import Mapping

import numpy as np
import pandas as pd


def glue(name: str, value) -> None:
    """Record ``value`` for the book's prose (``{glue:text}`name```); a no-op outside Jupyter Book.

    Numbers in a chapter's text then come from the run that built it, never from typing.
    """
    try:
        from myst_nb import glue as _glue
    except ImportError:
        return
    _glue(name, value, display=False)


def sign_word(x: float) -> str:
    """``"positive"`` or ``"negative"``, for prose that must follow the numbers.

    >>> sign_word(-0.2), sign_word(0.3)
    ('negative', 'positive')
    """
    return "positive" if x >= 0 else "negative"


def with_intervals(table, columns=None, digits: int = 3):
    """``table`` with each value and its interval in one column, ``"0.310 [0.270, 0.350]"``.

    Every column ``c`` that has ``c_lo`` and ``c_hi`` beside it (or those named in ``columns``) is
    formatted so; its ``_lo`` and ``_hi`` columns are dropped. Other columns are left as they are.

    >>> import pandas as pd
    >>> t = pd.DataFrame({"probe": ["ridge"], "r2_geom": [0.31], "r2_geom_lo": [0.27], "r2_geom_hi": [0.351]})
    >>> with_intervals(t).to_dict("records")
    [{'probe': 'ridge', 'r2_geom': '0.310 [0.270, 0.351]'}]
    """
    out = table.copy()
    if columns is None:
        columns = [c for c in out.columns if f"{c}_lo" in out.columns and f"{c}_hi" in out.columns]
    for c in columns:
        out[c] = [format_interval(v, lo, hi, digits) for v, lo, hi in zip(out[c], out[f"{c}_lo"], out[f"{c}_hi"])]
        out = out.drop(columns=[f"{c}_lo", f"{c}_hi"])
    return out


def format_interval(value: float, lo: float, hi: float, digits: int = 3) -> str:
    """``"value [lo, hi]"`` with ``digits`` decimals; three significant digits once a number reaches ±10.

    >>> format_interval(0.3104, 0.2712, 0.35), format_interval(-47.93, -241.2, 0.3)
    ('0.310 [0.271, 0.350]', '-47.9 [-241, 0.3]')
    """
    if max(abs(value), abs(lo), abs(hi)) >= 10:
        return f"{value:.3g} [{lo:.3g}, {hi:.3g}]"
    return f"{value:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


DIGITS = 3
"""Decimals of a float in :func:`table` unless told otherwise."""
MISSING = "—"
"""What a table shows where a value is missing (NaN, None, or an empty string)."""

_LO = re.compile(r"(_| )lo(?= |$)")
_LONG = 16
_LONG_WORD = re.compile(r"[^\s/–-]{%d,}" % _LONG)
_LETTER_DIGIT = re.compile(r"(?<=[^\W\d_])(?=\d)|(?<=\d)(?=[^\W\d_])")
_R2 = re.compile(r"(?<![A-Za-z0-9])(?:r2|R²)_(geom|comp|full)(?![A-Za-z0-9])")


class Table:
    """A table as a book page shows it: every value already a string, no index column.

    Made by :func:`table`. In a notebook it displays as an HTML table (``_repr_html_``) and as
    aligned text (``repr``); ``data`` holds the strings, ``numeric`` says which columns hold numbers
    (right-aligned, never broken inside a value) and which hold text (left-aligned, wrapped).
    """

    def __init__(self, data: pd.DataFrame, numeric: list[bool], caption: str | None = None):
        self.data = data
        self.numeric = list(numeric)
        self.caption = caption

    @property
    def uuid(self) -> str:
        """An id derived from the table's content: the same table gives the same HTML in every run."""
        text = self.data.to_csv(index=False) + repr(self.caption) + repr(self.numeric)
        return hashlib.sha1(text.encode()).hexdigest()[:10]

    def styler(self):
        """The table as a pandas ``Styler``: index hidden, numbers right-aligned, text left-aligned."""
        cells = self.data.copy()
        for j, is_number in enumerate(self.numeric):
            cells.isetitem(j, [_html_cell(v, is_number) for v in cells.iloc[:, j]])
        styles = [
            {"selector": "", "props": "font-size: 0.75em; width: auto; margin: 0.5em 0;"},
            {"selector": "th, td", "props": "padding: 0.2em 0.25em; vertical-align: top;"},
            {"selector": "th", "props": "white-space: normal; vertical-align: bottom; text-align: right;"},
            {"selector": "td", "props": "text-align: right;"},
            {"selector": "th[colspan]", "props": "text-align: center;"},
        ]
        styles += [{"selector": f"td.col{j}, th.col{j}", "props": "text-align: left;"}
                   for j, is_number in enumerate(self.numeric) if not is_number]
        styler = (cells.style.hide(axis="index").format_index(escape="html", axis=1).set_uuid(self.uuid)
                  .set_table_styles(styles).set_table_attributes('class="dataframe cpd-table"'))
        styler.cell_ids = False
        if self.caption:
            styler = styler.set_caption(html.escape(self.caption, quote=False))
        return styler

    def to_html(self) -> str:
        """The HTML of :meth:`styler` (deterministic: no random ids)."""
        return self.styler().to_html()

    def _repr_html_(self) -> str:
        return self.to_html()

    def __repr__(self) -> str:
        text = self.data.to_string(index=False)
        return f"{self.caption}\n{text}" if self.caption else text


def table(frame: pd.DataFrame, *, digits=DIGITS, units=None, labels=None, formats=None, intervals=True,
          caption: str | None = None) -> Table:
    """``frame`` formatted as a paper's table: rounded, intervals in one cell, units in the headers.

    Parameters
    ----------
    frame : pandas.DataFrame
        The table to show. A named index (``set_index``, ``pivot_table``) becomes leading columns;
        an unnamed one (``0 … n-1``, or what is left of it after filtering) is dropped.
    digits : int or dict, default 3
        Decimals of floats, for all columns or per column (``{"ratio": 1}``; columns not named get
        3). From 10 on, three significant digits, as :func:`format_interval` writes them
        (``291.79 -> "292"``, ``5623.4 -> "5.62e+03"``); with 0 decimals, the whole number
        (``"5,623"``). Integers are written with thousands separators (``"50,000"``), and so are
        whole numbers in a float column with a missing value (integers pandas turned into floats).
    units : dict, optional
        ``{column: unit}``: the unit goes into that column's header, ``"MAE (meV)"``, never into a
        cell.
    labels : dict, optional
        ``{column: header}``. Columns not named get an automatic header: ``r2_geom`` becomes
        ``R²_geom`` (likewise ``r2_comp``, ``r2_full``) and other underscores become spaces
        (``r2_geom_worst_fold -> "R²_geom worst fold"``).
    formats : dict, optional
        ``{column: format}``, a format string (``"{:.2e}"``) or a function of the value, for columns
        the rules above do not suit. Missing values still show as :data:`MISSING`.
    intervals : bool or list of str, default True
        Merge each value column with its interval into one cell, ``"0.329 [0.298, 0.354]"``:
        ``True`` finds every column ``c`` with a lower and an upper bound beside it, named
        ``c_lo``/``c_hi`` or ``c lo``/``c hi``, or with the suffix after the score's name
        (``"r2_geom_lo gap"`` for ``"r2_geom gap"``); a list names the value columns; ``False``
        merges none. The bound columns are dropped. A value without bounds is shown alone.
    caption : str, optional
        A caption above the table.

    Returns
    -------
    Table
        Displays as an HTML table without an index column (``Table.to_html``), and as text.
        Missing values (NaN, None, empty strings) show as ``—``; booleans as ``yes``/``no``. Text
        columns wrap and numbers do not, so a table narrows to the page instead of scrolling.

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"model": ["painn", "visnet"], "mae": [187.49, 265.5], "published": [45.7, None],
    ...                   "r2_geom": [0.3104, 0.2], "r2_geom_lo": [0.2712, 0.1], "r2_geom_hi": [0.35, 0.3],
    ...                   "resolved": [True, False]})
    >>> table(t, units={"mae": "meV", "published": "meV"}, labels={"mae": "test MAE"})
     model test MAE (meV) published (meV)              R²_geom resolved
     painn            187            45.7 0.310 [0.271, 0.350]      yes
    visnet            266               — 0.200 [0.100, 0.300]       no
    """
    frame = _reset_index(frame)
    units, labels, formats = units or {}, labels or {}, formats or {}
    merged = _find_intervals(frame.columns, intervals)
    bounds = {b for lo_hi in merged.values() for b in lo_hi}
    headers, cells, numeric = [], [], []
    for c in frame.columns:
        if c in bounds:
            continue
        values = frame[c]
        d = digits.get(c, DIGITS) if isinstance(digits, Mapping) else digits
        if c in formats:
            fmt = formats[c].format if isinstance(formats[c], str) else formats[c]
            column = [MISSING if _missing(v) else str(fmt(v)) for v in values]
        elif c in merged:
            lo, hi = merged[c]
            column = [_interval(v, a, b, d) for v, a, b in zip(values, frame[lo], frame[hi])]
        else:
            whole = _is_whole(values)
            column = [_cell(v, d, whole) for v in values]
        headers.append(_header(c, labels, units))
        cells.append(column)
        numeric.append(c in merged or _is_numeric(values))
    data = pd.DataFrame(dict(enumerate(cells)), index=range(len(frame)), dtype=object)
    data.columns = _columns_index(headers)
    return Table(data, numeric, caption)


def _reset_index(frame: pd.DataFrame) -> pd.DataFrame:
    if all(name is None for name in frame.index.names):
        frame = frame.reset_index(drop=True)
    else:
        frame = frame.reset_index()
    if not isinstance(frame.columns, pd.MultiIndex):
        frame.columns.name = None
    return frame


def _find_intervals(columns, intervals) -> dict:
    """``{value column: (lo column, hi column)}``."""
    if intervals is False:
        return {}
    names = [c for c in columns if isinstance(c, str)]
    found = {}
    for lo in names:
        for m in _LO.finditer(lo):
            value = lo[:m.start()] + lo[m.end():]
            hi = lo[:m.start()] + m.group(1) + "hi" + lo[m.end():]
            if value in names and hi in names:
                found[value] = (lo, hi)
    if intervals is not True:
        missing = [c for c in intervals if c not in found]
        if missing:
            raise KeyError(f"no lower and upper bound columns beside {missing}")
        found = {c: found[c] for c in intervals}
    return found


def _header(column, labels, units):
    if isinstance(column, tuple):
        return tuple(_header(c, labels, units) if c != "" else "" for c in column)
    label = labels[column] if column in labels else _auto_label(column)
    return f"{label} ({units[column]})" if column in units else label


def _auto_label(column) -> str:
    """``r2_geom_worst_fold -> "R²_geom worst fold"``; an ``R²_geom`` already there stays."""
    text = _R2.sub(lambda m: f"R²\0{m.group(1)}", str(column))
    return text.replace("_", " ").replace("\0", "_")


def _columns_index(names):
    if names and all(isinstance(n, tuple) for n in names):
        return pd.MultiIndex.from_tuples(names)
    return pd.Index(names, dtype=object)


def _missing(value) -> bool:
    if value is None or (isinstance(value, str) and not value.strip()):
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _is_numeric(values: pd.Series) -> bool:
    present = [v for v in values if not _missing(v)]
    return bool(present) and all(isinstance(v, (numbers.Number, np.bool_)) for v in present)


def _is_whole(values: pd.Series) -> bool:
    """Whole numbers beside a missing value: integers that pandas stored as floats because of a NaN."""
    present = [v for v in values if not _missing(v)]
    return (0 < len(present) < len(values) and all(isinstance(v, (float, np.floating)) for v in present)
            and all(float(v).is_integer() for v in present))


def _cell(value, digits: int, whole: bool = False) -> str:
    if _missing(value):
        return MISSING
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral) or (whole and isinstance(value, numbers.Real)):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        return _number(float(value), digits)
    return str(value)


def _number(x: float, digits: int) -> str:
    """``digits`` decimals; three significant digits from 10 on, as in :func:`format_interval`;
    ``digits=0``: the whole number with thousands separators."""
    if not math.isfinite(x):
        return str(x)
    if digits == 0:
        return f"{x:,.0f}"
    return f"{x:.3g}" if abs(x) >= 10 else f"{x:.{digits}f}"


def _interval(value, lo, hi, digits: int) -> str:
    if _missing(value):
        return MISSING
    if _missing(lo) or _missing(hi):
        return _number(float(value), digits)
    return format_interval(float(value), float(lo), float(hi), digits)


def _html_cell(value: str, number: bool) -> str:
    """Escaped; a number or an interval breaks only before its bracket (``0.31 [0.27,&nbsp;0.35]``).

    Text also breaks after a slash or an en dash (``checkpoints/<wbr>qm9/<wbr>painn-gap``,
    ``0.23–<wbr>0.25``), and a word longer than :data:`_LONG` characters between letters and digits
    (``gasteiger<wbr>2020<wbr>dimenetpp``).
    """
    text = html.escape(str(value), quote=False)
    if number:
        return text.replace(" ", "&nbsp;").replace("&nbsp;[", " [")
    text = _LONG_WORD.sub(lambda m: _LETTER_DIGIT.sub("<wbr>", m.group()), text)
    return text.replace("/", "/<wbr>").replace("–", "–<wbr>")
