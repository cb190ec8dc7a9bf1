"""Warnings that point at the caller's line, and what they check."""

from __future__ import annotations

import functools
import inspect
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


#: Module types whose output depends on ``training``: dropout draws a mask, batch
#: normalisation uses (and updates) the batch's statistics.
TRAINING_DEPENDENT = (
    nn.modules.dropout._DropoutNd,
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.MultiheadAttention,
    nn.RNNBase,
)


def training_leaves(model: nn.Module | None) -> list[str]:
    """Names of ``model``'s modules in training mode whose output depends on it.

    Those are dropout, batch (and instance) normalisation with running
    statistics, attention and recurrent layers with dropout, and any other
    module whose own ``forward`` reads ``self.training``. A module whose
    forward is the same in both modes (a convolution, a wrapper) does not
    count, as for Captum's ``LayerGradCam``, which never warns.
    """
    if model is None:
        return []
    return [
        name or type(model).__name__
        for name, module in model.named_modules()
        if module.training and _reads_training(module)
    ]


def _reads_training(module: nn.Module) -> bool:
    if isinstance(module, nn.modules.instancenorm._InstanceNorm):
        return module.track_running_stats
    if isinstance(module, (nn.MultiheadAttention, nn.RNNBase)):
        return module.dropout > 0
    if isinstance(module, TRAINING_DEPENDENT):
        return True
    return _forward_reads_training(type(module))


@functools.cache
def _forward_reads_training(cls: type) -> bool:
    """Whether ``cls.forward`` (a user's own module) mentions ``self.training``."""
    if cls.forward is nn.Module.forward or cls.__module__.startswith("torch."):
        return False
    try:
        return "self.training" in inspect.getsource(cls.forward)
    except (OSError, TypeError):  # no source (a compiled or generated class)
        return False
