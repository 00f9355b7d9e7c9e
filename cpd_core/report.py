"""Helpers for notebooks that become book pages."""

from __future__ import annotations


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
