r"""Confidence metrics: what happens to the target's score when only the map's pixels remain.

Notation: :math:`Y` is the target's score (by default its softmax probability) on
the image :math:`x`; :math:`O` the score on :math:`\hat L \odot x`, the image
multiplied by the saliency map :math:`\hat L` (upsampled to the image and min-max
normalised to :math:`[0, 1]` per example); :math:`Y_0` the score on the fully
removed image :math:`0 \odot x`.

Classic forms (Chattopadhyay et al., Grad-CAM++, 2018), averaged over a data set
by the caller:

* Average Drop :math:`\max(0, Y - O) / Y \in [0, 1]`: :math:`O \ge 0` bounds
  the numerator by :math:`Y`.
* Average Increase :math:`\mathbb{1}[O > Y] \in \{0, 1\}`.
* Average Gain :math:`\max(0, O - Y) / (1 - Y) \in [0, 1]`: :math:`O \le 1`
  bounds the numerator by :math:`1 - Y`.

Improved forms (the InfoCAM paper claims explicit bounds and less sensitivity to
fluctuations of the output scores; these formulas are this package's choice):

* Improved Average Drop
  :math:`\operatorname{clip}\big((Y - O) / (Y - Y_0), 0, 1\big)`: the drop
  relative to what removing the whole image costs, so a model that is already
  unsure without the image does not inflate it. Clipping gives the bounds
  :math:`[0, 1]`. Where :math:`Y - Y_0 \le 10^{-6}`, removing everything costs
  nothing and the drop is 0.
* Improved Average Increase :math:`\mathbb{1}[O > Y + \tau] \in \{0, 1\}`: an
  increase counts only beyond a tolerance :math:`\tau` (default 0.01), so score
  jitter of a confident model does not count as an increase.

Every denominator is guarded; scores are probabilities unless ``score_fn`` says
otherwise (the bounds of the gain and of the classic drop need scores in
:math:`[0, 1]`).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Union

import torch
from captum._utils.typing import TargetType
from torch import Tensor

from captum_infocam.metrics._common import (
    ScoreFunction,
    TargetScorer,
    higher_is_better,
    image_input,
    saliency_maps,
)

__all__ = [
    "ConfidenceScores",
    "average_drop",
    "average_gain",
    "average_increase",
    "confidence_metrics",
    "confidence_scores",
    "improved_average_drop",
    "improved_average_increase",
]

_MIN_RANGE = 1e-6
DEFAULT_TOLERANCE = 0.01


class ConfidenceScores(NamedTuple):
    """Target scores, each ``(N,)``: on the image, on the masked image, and on the
    removed image (``None`` where it was not asked for)."""

    original: Tensor
    masked: Tensor
    removed: Optional[Tensor]


def confidence_scores(
    forward_func: Callable[..., Tensor],
    inputs: Union[Tensor, tuple[Tensor, ...]],
    attributions: Tensor,
    target: TargetType = None,
    additional_forward_args: Any = None,
    score_fn: Union[str, ScoreFunction] = "softmax",
    max_examples_per_batch: Optional[int] = None,
    with_removed: bool = True,
) -> ConfidenceScores:
    r"""Computes :math:`Y`, :math:`O` and :math:`Y_0` (a forward pass over the batch each).

    Args:
        forward_func (Callable): the model.
        inputs (Tensor): images ``(N, C, H, W)``.
        attributions (Tensor): maps ``(N, 1, h, w)``, ``(N, C, h, w)`` or
            ``(N, h, w)``; summed over channels, upsampled and min-max normalised.
        target (int, tuple, Tensor, or list, optional): Captum target.
        additional_forward_args (Any, optional): further arguments of the model.
        score_fn (str or Callable, optional): ``"softmax"``, ``"sigmoid"``,
            ``"identity"`` or a callable applied to the output. Default: ``"softmax"``
        max_examples_per_batch (int, optional): most images per forward pass.
        with_removed (bool, optional): also score the removed image, :math:`Y_0`
            (only the improved drop needs it). Default: True

    Returns:
        :class:`ConfidenceScores` on the inputs' device.
    """
    x = image_input(inputs)
    maps = saliency_maps(attributions, x.shape[-2:], len(x))
    scorer = TargetScorer(
        forward_func, x, target, additional_forward_args, score_fn, max_examples_per_batch
    )
    removed = (
        scorer.score(len(x), lambda jobs: (torch.zeros_like(x[jobs]), jobs))
        if with_removed
        else None
    )
    return ConfidenceScores(
        original=scorer.original(),
        masked=scorer.score(len(x), lambda jobs: (maps[jobs, None] * x[jobs], jobs)),
        removed=removed,
    )


def _drop(scores: ConfidenceScores) -> Tensor:
    y, o = scores.original, scores.masked
    return (y - o).clamp_min(0) / y.clamp_min(torch.finfo(y.dtype).tiny)


def _increase(scores: ConfidenceScores) -> Tensor:
    return (scores.masked > scores.original).to(scores.original.dtype)


def _gain(scores: ConfidenceScores) -> Tensor:
    y, o = scores.original, scores.masked
    return (o - y).clamp_min(0) / (1 - y).clamp_min(torch.finfo(y.dtype).tiny)


def _improved_drop(scores: ConfidenceScores) -> Tensor:
    y, o, y0 = scores
    assert y0 is not None, "confidence_scores(..., with_removed=True) gives Y0"
    cost = y - y0
    relative = ((y - o) / cost.clamp_min(_MIN_RANGE)).clamp(0, 1)
    return torch.where(cost > _MIN_RANGE, relative, torch.zeros_like(relative))


def _improved_increase(scores: ConfidenceScores, tolerance: float) -> Tensor:
    return (scores.masked > scores.original + tolerance).to(scores.original.dtype)


_SIGNATURE_DOC = """
    Args:
        forward_func (Callable): the model.
        inputs (Tensor): images ``(N, C, H, W)``.
        attributions (Tensor): maps ``(N, 1, h, w)``, ``(N, C, h, w)`` or ``(N, h, w)``.
        target (int, tuple, Tensor, or list, optional): Captum target.
        additional_forward_args (Any, optional): further arguments of the model.
        score_fn (str or Callable, optional): see :func:`confidence_scores`.
        max_examples_per_batch (int, optional): most images per forward pass.

    Returns:
        Tensor ``(N,)`` on the inputs' device.
"""


def _confidence_metric(
    name: str,
    formula: Callable[[ConfidenceScores], Tensor],
    doc: str,
    better_high: bool,
    with_removed: bool = False,
) -> Callable[..., Tensor]:
    """Builds the public metric ``name`` that applies ``formula`` to :func:`confidence_scores`.

    Only a formula that reads :math:`Y_0` (``with_removed``) pays its forward pass.
    """

    def metric(
        forward_func: Callable[..., Tensor],
        inputs: Union[Tensor, tuple[Tensor, ...]],
        attributions: Tensor,
        target: TargetType = None,
        additional_forward_args: Any = None,
        score_fn: Union[str, ScoreFunction] = "softmax",
        max_examples_per_batch: Optional[int] = None,
    ) -> Tensor:
        return formula(
            confidence_scores(
                forward_func,
                inputs,
                attributions,
                target,
                additional_forward_args,
                score_fn,
                max_examples_per_batch,
                with_removed,
            )
        )

    metric.__doc__ = doc + _SIGNATURE_DOC
    metric.__name__ = metric.__qualname__ = name
    return higher_is_better(better_high)(metric)


average_drop = _confidence_metric(
    "average_drop",
    _drop,
    r"""Average Drop :math:`\max(0, Y - O) / Y`, in :math:`[0, 1]`; lower is better.""",
    False,
)
average_increase = _confidence_metric(
    "average_increase",
    _increase,
    r"""Average Increase :math:`\mathbb{1}[O > Y]`; higher is better.""",
    True,
)
average_gain = _confidence_metric(
    "average_gain",
    _gain,
    r"""Average Gain :math:`\max(0, O - Y) / (1 - Y)`, in :math:`[0, 1]`; higher is better.""",
    True,
)
improved_average_drop = _confidence_metric(
    "improved_average_drop",
    _improved_drop,
    r"""Improved Average Drop :math:`\mathrm{clip}((Y - O)/(Y - Y_0), 0, 1)`; lower is better.""",
    False,
    with_removed=True,
)


@higher_is_better(True)
def improved_average_increase(
    forward_func: Callable[..., Tensor],
    inputs: Union[Tensor, tuple[Tensor, ...]],
    attributions: Tensor,
    target: TargetType = None,
    additional_forward_args: Any = None,
    score_fn: Union[str, ScoreFunction] = "softmax",
    max_examples_per_batch: Optional[int] = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> Tensor:
    r"""Improved Average Increase :math:`\mathbb{1}[O > Y + \tau]`; higher is better.

    Args:
        tolerance (float, optional): :math:`\tau`, in score units. Default: 0.01

    See :func:`average_drop` for the other arguments.
    """
    scores = confidence_scores(
        forward_func,
        inputs,
        attributions,
        target,
        additional_forward_args,
        score_fn,
        max_examples_per_batch,
        with_removed=False,
    )
    return _improved_increase(scores, tolerance)


def confidence_metrics(
    forward_func: Callable[..., Tensor],
    inputs: Union[Tensor, tuple[Tensor, ...]],
    attributions: Tensor,
    target: TargetType = None,
    additional_forward_args: Any = None,
    score_fn: Union[str, ScoreFunction] = "softmax",
    max_examples_per_batch: Optional[int] = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> dict[str, Tensor]:
    """All five confidence metrics from one set of forward passes.

    Returns:
        dict from the metric function's name to its ``(N,)`` tensor.
    """
    scores = confidence_scores(
        forward_func,
        inputs,
        attributions,
        target,
        additional_forward_args,
        score_fn,
        max_examples_per_batch,
    )
    return {
        "average_drop": _drop(scores),
        "average_increase": _increase(scores),
        "average_gain": _gain(scores),
        "improved_average_drop": _improved_drop(scores),
        "improved_average_increase": _improved_increase(scores, tolerance),
    }
