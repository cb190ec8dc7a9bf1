"""Argument checks that raise ``ValueError``/``TypeError`` naming the argument."""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any, Collection, Optional

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "check_bool",
    "check_choice",
    "check_finite_tensor",
    "check_input_dtypes",
    "check_int",
    "check_output_rows",
    "check_real",
    "format_inputs",
    "input_form_hint",
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
    if isinstance(inputs, (Tensor, np.ndarray)):
        inputs = (inputs,)
    if not isinstance(inputs, tuple) or not inputs:
        raise TypeError("inputs must be a tensor or a non-empty tuple of tensors")
    for position, value in enumerate(inputs):
        if isinstance(value, np.ndarray):
            raise TypeError(
                f"{_named(position, len(inputs))} is a numpy array; InfoCAM takes torch "
                "tensors: convert it with torch.from_numpy(x), then x.permute(0, 3, 1, 2) "
                "for (N, H, W, C) images and x.float() / 255 for 8-bit ones"
            )
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


def _named(position: int, count: int) -> str:
    return "inputs" if count == 1 else f"inputs[{position}]"


def check_input_dtypes(inputs: tuple[Tensor, ...], model: Optional[nn.Module]) -> None:
    """Raises ``TypeError`` for 8-bit or boolean images, and for floating-point
    inputs of another dtype than ``model``'s parameters (outside autocast)."""
    for position, value in enumerate(inputs):
        if value.dtype in (torch.uint8, torch.bool):
            raise TypeError(
                f"{_named(position, len(inputs))} is a {value.dtype} tensor; models take "
                "floating-point images: convert with x.float() / 255 (and normalise them "
                "as the model expects)"
            )
    dtypes = set() if model is None else {p.dtype for p in model.parameters()}
    if len(dtypes) != 1 or not next(iter(dtypes)).is_floating_point:
        return
    (dtype,) = dtypes
    for position, value in enumerate(inputs):
        autocast = torch.is_autocast_enabled(value.device.type)
        if value.is_floating_point() and value.dtype != dtype and not autocast:
            raise TypeError(
                f"{_named(position, len(inputs))} is {value.dtype} but the model's parameters "
                f"are {dtype}: convert the inputs with x.to({dtype}) (or the model with "
                f"model.to({value.dtype}))"
            )


def input_form_hint(inputs: tuple[Tensor, ...]) -> Optional[str]:
    """What to change where ``inputs`` look like one image without its batch
    dimension, channels-last images, or integer images; ``None`` if they look like none."""
    for position, value in enumerate(inputs):
        name = _named(position, len(inputs))
        if value.dim() == 3:
            return (
                f"{name} has shape {tuple(value.shape)}; if it is one image, add a batch "
                "dimension: x.unsqueeze(0), shape (1, C, H, W)"
            )
        if value.dim() == 4 and value.shape[-1] in (1, 3, 4) and value.shape[1] not in (1, 3, 4):
            return (
                f"{name} has shape {tuple(value.shape)}; if it holds channels-last images "
                "(N, H, W, C), move the channels first: x.permute(0, 3, 1, 2)"
            )
        if not value.is_floating_point():
            return (
                f"{name} is a {value.dtype} tensor; if it holds images, convert them with "
                "x.float() (and / 255 for 8-bit values)"
            )
    return None


def check_output_rows(output: Tensor, num_examples: int, inputs: tuple[Tensor, ...]) -> None:
    """Raises ``ValueError`` unless ``output`` has one row per example."""
    if output.dim() == 0 or len(output) != num_examples:
        hint = input_form_hint(inputs)
        raise ValueError(
            f"forward_func must return one row of scores per example: {num_examples} "
            f"example(s) gave an output of shape {tuple(output.shape)}"
            + (f"; {hint}" if hint else "")
        )
