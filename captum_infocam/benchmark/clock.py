"""Wall-clock timing that waits for the device: synchronise, then read ``time.perf_counter``.

CUDA kernels run asynchronously, so a clock read right after a call measures only
the launch. Every timing of the benchmark and of the scripts in ``timing/``
synchronises the device before each read.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable, TypeVar

import torch

__all__ = ["clock", "synchronize", "timed"]

Result = TypeVar("Result")


def synchronize(device: torch.device) -> None:
    """Waits for the work queued on ``device`` (CUDA); a no-op on a CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function: Callable[[], Result], device: torch.device) -> tuple[Result, float]:
    """Runs ``function`` once; returns its result and its wall time in seconds.

    Examples::

        >>> maps, seconds = timed(lambda: cam.attribute(x, target=y), x.device)
    """
    synchronize(device)
    start = time.perf_counter()
    result = function()
    synchronize(device)
    return result, time.perf_counter() - start


def clock(function: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median wall time of ``function`` over ``repeats`` runs after one warm-up run."""
    function()
    return statistics.median(timed(function, device)[1] for _ in range(repeats))
