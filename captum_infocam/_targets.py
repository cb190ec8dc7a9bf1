"""Captum targets (``TargetType``) as one index tensor, checked before any work.

Captum's ``_select_targets`` rebuilds a tensor from a list at every call and
reports mistakes with ``assert``. InfoCAM evaluates the target thousands of
times per fit, so the target becomes one ``(N, D)`` index tensor on the device,
once, and every mistake raises a ``ValueError``/``TypeError`` naming ``target``.
"""

from __future__ import annotations

from numbers import Integral
from typing import Any, Sequence, Union

import torch
from captum._utils.typing import TargetType
from torch import Tensor

__all__ = ["check_target", "flatten_targets", "select", "target_index"]


def _is_index(value: object) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _is_index_tuple(value: object) -> bool:
    return isinstance(value, tuple) and len(value) > 0 and all(map(_is_index, value))


def check_target(target: TargetType, num_examples: int) -> None:
    """Checks the form of ``target`` for ``num_examples`` examples.

    Raises:
        TypeError: if ``target`` is not of Captum's ``TargetType``.
        ValueError: if it holds a number of targets other than 1 or
            ``num_examples``, or mixes integers and tuples.
    """
    if target is None or _is_index(target) or _is_index_tuple(target):
        return
    if isinstance(target, Tensor):
        if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
            raise TypeError(f"target must hold integers, got a tensor of {target.dtype}")
        if target.numel() != 1 and (target.dim() != 1 or len(target) != num_examples):
            raise ValueError(
                f"target tensor must hold 1 or {num_examples} (the number of "
                f"examples) indices, got shape {tuple(target.shape)}"
            )
        return
    if isinstance(target, list):
        if len(target) != num_examples:
            raise ValueError(
                f"target list must have one entry per example: {num_examples} "
                f"examples but {len(target)} targets"
            )
        if all(map(_is_index, target)):
            return
        if all(map(_is_index_tuple, target)) and len({len(t) for t in target}) == 1:
            return
        raise ValueError(
            "target list must hold only integers or only tuples of integers of one length"
        )
    raise TypeError(
        "target must be None, an int, a tuple of ints, a list of ints or tuples, "
        f"or an integer tensor; got {type(target).__name__}"
    )


def flatten_targets(
    targets: Any, num_examples: int
) -> tuple[list[Union[int, tuple[int, ...]]], list[int]]:
    """``targets`` of :meth:`~captum_infocam.InfoCAM.attribute_each` (one list per
    example) as one Captum target list and the number of targets per example; every
    mistake raises before any work."""
    if isinstance(targets, (Tensor, str)) or not isinstance(targets, Sequence):
        raise TypeError(
            "targets must be a list with one list of targets per example, e.g. "
            f"[[3, 7], [5]]; got {type(targets).__name__}"
        )
    if len(targets) != num_examples:
        raise ValueError(
            f"targets must have one entry per example: {num_examples} examples but "
            f"{len(targets)} entries"
        )
    flat: list[Union[int, tuple[int, ...]]] = []
    counts = []
    for position, entry in enumerate(targets):
        if isinstance(entry, Tensor):
            if entry.dim() != 1 or entry.is_floating_point() or entry.dtype == torch.bool:
                raise TypeError(
                    f"targets[{position}] must be a 1-D integer tensor or a list, got a "
                    f"tensor of shape {tuple(entry.shape)} and {entry.dtype}"
                )
            entry = entry.tolist()
        if not isinstance(entry, list):
            raise TypeError(
                f"targets[{position}] must be a list of that example's targets, got "
                f"{type(entry).__name__}"
            )
        if not entry:
            raise ValueError(f"targets[{position}] is empty: give each example at least one target")
        flat += entry
        counts.append(len(entry))
    try:
        check_target(flat, len(flat))
    except (TypeError, ValueError) as error:
        raise type(error)(f"targets: {error}") from None
    return flat, counts


def _as_rows(target: TargetType, num_examples: int, device: torch.device) -> Tensor:
    if target is None:
        return torch.zeros(num_examples, 0, dtype=torch.long, device=device)
    if isinstance(target, Tensor):
        column = target.to(device=device, dtype=torch.long).reshape(-1, 1)
        return column.expand(num_examples, 1)
    if isinstance(target, list):
        rows: Sequence[tuple[int, ...]] = [
            (t,) if _is_index(t) else t
            for t in target  # type: ignore[misc]
        ]
        return torch.tensor(rows, dtype=torch.long, device=device)
    row = (target,) if _is_index(target) else target
    return torch.tensor([row], dtype=torch.long, device=device).expand(num_examples, -1)


def target_index(
    target: TargetType, num_examples: int, output_shape: torch.Size, device: torch.device
) -> Tensor:
    """Returns ``target`` as an index tensor ``(N, D)`` of non-negative indices into the
    per-example output; negative indices count from the end, as in Captum.

    ``D`` is the number of output dimensions after the batch dimension, so each
    row names exactly one output element. ``target=None`` is accepted for outputs
    with one element per example. The form of ``target`` must have passed
    :func:`check_target`, which callers run before any work; this checks it
    against the output.

    Raises:
        ValueError: if a target does not name one element of an output of shape
            ``output_shape``, or an index is out of range.
    """
    per_example = tuple(output_shape[1:])
    if target is None and per_example == (1,):
        target = 0
    if target is None and per_example != ():
        raise ValueError(
            f"target=None works for outputs with one score per example; this output has "
            f"shape {per_example} per example: pass the index to explain, e.g. the predicted "
            "class, target=model(x).argmax(1)"
        )
    index = _as_rows(target, num_examples, device)
    if index.shape[1] != len(per_example):
        raise ValueError(
            f"target must name one element of each example's output of shape "
            f"{per_example}: give {len(per_example)} index(es) per example, got "
            f"{index.shape[1]}"
        )
    if index.numel():
        upper = torch.tensor(per_example, device=device)
        if bool(((index < -upper) | (index >= upper)).any()):
            raise ValueError(
                f"target index out of range for an output of shape {per_example} "
                f"per example: each index must lie in [-size, size) of its dimension"
            )
        # Negative indices count from the end, as in Python and Captum (-1: the last class).
        index = torch.where(index < 0, index + upper, index)
    return index


def select(values: Tensor, index: Tensor) -> Tensor:
    """Picks ``values[i, *index[i]]`` for each row ``i``; shape ``(N,)``."""
    rows = torch.arange(len(values), device=values.device)
    return values[(rows, *index.unbind(1))]
