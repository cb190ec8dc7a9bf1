"""Context managers that leave the caller's state as they found it."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

__all__ = ["preserved_buffers", "seeded"]


@contextmanager
def preserved_buffers(module: nn.Module | None) -> Iterator[None]:
    """Restores every buffer of ``module`` (BatchNorm running statistics, say) on exit.

    A model left in training mode updates its running statistics at every
    forward pass; an explanation must not.
    """
    saved = [] if module is None else [(b, b.detach().clone()) for b in module.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, copy in saved:
                buffer.copy_(copy)


@contextmanager
def seeded(seed: int | None, device: torch.device) -> Iterator[torch.Generator | None]:
    """Yields a generator on ``device`` seeded with ``seed`` (``None``: no generator).

    Inside, the global generators of the CPU and of ``device`` are seeded too, so
    randomness inside the model (dropout left in training mode) is reproducible;
    their states are restored on exit.
    """
    if seed is None:
        yield None
        return
    devices = (
        [device.index if device.index is not None else torch.cuda.current_device()]
        if (device.type == "cuda")
        else []
    )
    with torch.random.fork_rng(devices=devices):
        torch.random.default_generator.manual_seed(seed)
        for index in devices:
            torch.cuda.default_generators[index].manual_seed(seed)
        yield torch.Generator(device).manual_seed(seed)
