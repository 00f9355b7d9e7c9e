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
