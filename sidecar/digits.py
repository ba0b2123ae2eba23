"""Decimal numbers in text from outside (headers, ids, tokens, config). `str.isdigit` is true of every
Unicode digit (superscripts, Arabic-Indic, fullwidth), which `int()` then refuses (a ValueError where none was
expected) or reads as another number: a check before `int()` asks for ASCII digits."""

from __future__ import annotations


def is_decimal(text: str) -> bool:
    """One or more of 0-9 and nothing else."""
    return text.isascii() and text.isdigit()
