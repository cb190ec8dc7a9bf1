"""Argument types shared by the benchmark's commands: counts that argparse checks, so that
a bad value is a one-line error before any work."""

from __future__ import annotations

import argparse

__all__ = ["count", "positive"]


def _integer(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
    return value


def count(text: str) -> int:
    """An argparse type: an integer >= 0 (a number of items; 0 leaves them out)."""
    return _integer(text, 0)


def positive(text: str) -> int:
    """An argparse type: an integer >= 1 (a batch size, a number of steps or epochs)."""
    return _integer(text, 1)
