"""Errors raised on bad input: one type, so callers can catch it and nothing is written."""


class InputError(ValueError):
    """Input that cannot give a meaningful result (shape mismatch, NaN, unknown name, ...)."""
