"""Argument checks that raise ``ValueError``/``TypeError`` naming the argument."""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any, Collection

import torch
from torch import Tensor

__all__ = [
    "check_bool",
    "check_choice",
    "check_finite_tensor",
    "check_int",
    "check_real",
    "format_inputs",
]


def check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")


def check_int(name: str, value: Any, minimum: int) -> None:
    if not isinstance(value, Integral) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def check_real(name: str, value: Any, minimum: float, strict: bool = False) -> None:
    if not isinstance(value, Real) or isinstance(value, bool):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if not math.isfinite(value) or value < minimum or (strict and value == minimum):
        bound = ">" if strict else ">="
        raise ValueError(f"{name} must be finite and {bound} {minimum}, got {value}")


def check_choice(
    name: str, value: Any, choices: Collection[str], alternatives: str | None = None
) -> None:
    """Raises unless ``value`` is one of the names ``choices``.

    ``alternatives`` names what else the argument takes (checked by the caller),
    e.g. ``"a callable"``, for the message.
    """
    if not isinstance(value, str) or value not in choices:
        also = f", or {alternatives}" if alternatives else ""
        raise ValueError(f"{name} must be one of {sorted(choices)}{also}, got {value!r}")


def check_finite_tensor(name: str, value: Tensor) -> None:
    """Raises if a floating-point ``value`` holds NaN or infinity (one host sync)."""
    if value.is_floating_point() and not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} contains NaN or infinite values")


def format_inputs(inputs: Any) -> tuple[tuple[Tensor, ...], int]:
    """Checks ``inputs`` and returns them as a tuple of tensors, with the batch size."""
    if isinstance(inputs, Tensor):
        inputs = (inputs,)
    if not isinstance(inputs, tuple) or not inputs:
        raise TypeError("inputs must be a tensor or a non-empty tuple of tensors")
    for position, value in enumerate(inputs):
        if not isinstance(value, Tensor):
            raise TypeError(
                f"inputs must be tensors, got {type(value).__name__} at position {position}"
            )
        if value.dim() == 0 or len(value) == 0:
            raise ValueError(
                f"inputs must have a non-empty batch dimension, got shape {tuple(value.shape)}"
            )
    sizes = {len(value) for value in inputs}
    if len(sizes) != 1:
        raise ValueError(f"inputs must share their batch size, got {sorted(sizes)}")
    for value in inputs:
        check_finite_tensor("inputs", value)
    return inputs, sizes.pop()
