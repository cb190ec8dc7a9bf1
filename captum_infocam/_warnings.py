"""Warnings that point at the caller's line, and what they check."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import captum
from torch import nn

__all__ = ["caller_stacklevel", "training_leaves"]

_PACKAGE = Path(__file__).resolve().parent
#: Frames in these folders are skipped: this package and Captum (its ``log_usage`` wrapper).
_INTERNAL = (str(_PACKAGE) + os.sep, str(Path(captum.__file__).resolve().parent) + os.sep)
#: Except the benchmark, which calls the package as a user does.
_CALLERS = (str(_PACKAGE / "benchmark") + os.sep,)


def _internal(filename: str) -> bool:
    path = os.path.realpath(filename)
    return path.startswith(_INTERNAL) and not path.startswith(_CALLERS)


def caller_stacklevel() -> int:
    """The ``stacklevel`` for a ``warnings.warn`` in the function that calls this one,
    so that the warning names the first line outside this package and Captum: the
    caller's, however many wrappers (``log_usage``, ``NoiseTunnel``) sit between."""
    frame = sys._getframe(1)
    level = 1
    while frame.f_back is not None and _internal(frame.f_code.co_filename):
        frame = frame.f_back
        level += 1
    return level


def training_leaves(model: nn.Module | None) -> list[str]:
    """Names of ``model``'s modules without children that are in training mode.

    Leaves are what behave differently in training mode (dropout, batch
    normalisation); a wrapper module's own flag does not matter.
    """
    if model is None:
        return []
    return [
        name or type(model).__name__
        for name, module in model.named_modules()
        if module.training and next(module.children(), None) is None
    ]
