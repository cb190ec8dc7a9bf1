r"""Confidence metrics: the target's score when only part of the image is kept.

Notation (``docs/metrics.md`` has the derivations): :math:`Y` is the target's
score (by default its softmax probability) on the image :math:`x`; :math:`O` the
score on :math:`\hat L \odot x`, the image multiplied by the saliency map
:math:`\hat L` (upsampled and min-max normalised to :math:`[0, 1]`); :math:`O_b`
the score on :math:`R_b \odot x`, where :math:`R_b` keeps the map's top pixels
up to a retention budget :math:`b` (a fraction of the image; tied pixels share
what is left of the budget, so every map keeps exactly :math:`bHW` pixels'
worth); :math:`\sigma` the target score's jitter: the root-mean-square change of
:math:`Y` over ``noise_copies`` copies of :math:`x` under imperceptible Gaussian
noise, scored in the same batched forward pass.

Classic forms (Chattopadhyay et al., Grad-CAM++, 2018), exactly as published:

* Average Drop :math:`\max(0, Y - O) / Y \in [0, 1]`, lower is better.
* Average Increase :math:`\mathbb{1}[O > Y] \in \{0, 1\}`, higher is better.
* Average Gain :math:`\max(0, O - Y) / (1 - Y) \in [0, 1]`, higher is better.

Improved forms (this package's; the InfoCAM paper claims explicit bounds and
less sensitivity to output-score fluctuations but gives no formula):

* Improved Average Drop, the mean over budgets of the drop :math:`Y - O_b`
  shrunk towards 0 by the dead zone :math:`2\sqrt{2}\sigma`; in
  :math:`[-(1 - Y), Y] \subseteq [-1, 1]`, 1-Lipschitz in the kept images'
  scores (the classic drop is :math:`1/Y`-Lipschitz in :math:`O`), lower is
  better, negative where the kept pixels raise the score.
* Improved Average Increase, the mean over budgets of
  :math:`\Phi\big((O_b - Y) / (\sqrt{2}\sigma)\big) \in [0, 1]`: a count of
  increases softened by the jitter, free of the score's scale, higher is better.

The classic drop and gain and the improved drop need probabilities and raise a
``ValueError`` naming ``score_fn`` for scores outside :math:`[0, 1]`.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

import torch
from captum._utils.typing import TargetType
from torch import Tensor

from captum_infocam._validation import check_int, check_real
from captum_infocam.metrics._common import (
    ScoreFunction,
    TargetScorer,
    check_probabilities,
    higher_is_better,
    image_input,
    metric_maps,
)

__all__ = [
    "DEFAULT_BUDGETS",
    "DEFAULT_NOISE_COPIES",
    "DEFAULT_NOISE_SCALE",
    "RELATIVE_JITTER_FLOOR",
    "ConfidenceScores",
    "average_drop",
    "average_gain",
    "average_increase",
    "confidence_metrics",
    "confidence_scores",
    "improved_average_drop",
    "improved_average_increase",
]

#: Retention budgets of the improved metrics: each doubles the kept area.
DEFAULT_BUDGETS = (1 / 16, 1 / 8, 1 / 4, 1 / 2)
#: Noisy copies of each image that estimate the score's jitter.
DEFAULT_NOISE_COPIES = 4
#: Their noise: Gaussian, this many times each image's own standard deviation
#: (about 2/255 on a [0, 1] image of standard deviation 0.25).
DEFAULT_NOISE_SCALE = 0.03
#: The dead zone of the improved drop, in units of the jitter: two standard
#: deviations of the difference of two scores that each jitter by sigma.
DEAD_ZONE = 2 * math.sqrt(2)
#: The improved increase's floor under the jitter of a change, relative to the larger of
#: the two scores: a change of less than a thousandth of the score is never significant,
#: whatever the scale of the scores.
RELATIVE_JITTER_FLOOR = 1e-3


class ConfidenceScores(NamedTuple):
    """Target scores on the inputs' device; ``None`` where they were not asked for.

    ``original`` ``(N,)`` is :math:`Y`, on the images; ``masked`` ``(N,)`` is
    :math:`O`, on the images times the map; ``retained`` ``(B, N)`` holds
    :math:`O_b`, on the images reduced to the map's top pixels at each of the
    ``B`` budgets; ``noisy`` ``(J, N)`` the scores of ``J`` copies of the images
    under imperceptible noise; ``retained_noisy`` ``(B, J, N)`` those of the same
    ``J`` noisy copies of each reduced image.
    """

    original: Tensor
    masked: Optional[Tensor] = None
    retained: Optional[Tensor] = None
    noisy: Optional[Tensor] = None
    retained_noisy: Optional[Tensor] = None


def _check_budgets(budgets: Sequence[float]) -> tuple[float, ...]:
    if not isinstance(budgets, (tuple, list)) or not all(
        isinstance(b, Real) and not isinstance(b, bool) and 0 < b <= 1 for b in budgets
    ):
        raise ValueError(f"budgets must be a sequence of fractions in (0, 1], got {budgets!r}")
    return tuple(float(b) for b in budgets)


def _tie_counts(maps: Tensor) -> tuple[Tensor, Tensor]:
    """For each pixel of ``maps (N, P)``: how many pixels are greater, and how many equal."""
    flat = maps.to(torch.promote_types(maps.dtype, torch.float32))
    ascending = flat.sort(1).values
    at_most = torch.searchsorted(ascending, flat, right=True)
    below = torch.searchsorted(ascending, flat, right=False)
    return (flat.shape[1] - at_most).to(flat.dtype), (at_most - below).to(flat.dtype)


def confidence_scores(
    forward_func: Callable[..., Tensor],
    inputs: Union[Tensor, tuple[Tensor, ...]],
    attributions: Tensor,
    target: TargetType = None,
    additional_forward_args: Any = None,
    score_fn: Union[str, ScoreFunction] = "softmax",
    max_examples_per_batch: Optional[int] = None,
    *,
    masked: bool = True,
    budgets: Sequence[float] = DEFAULT_BUDGETS,
    noise_copies: int = DEFAULT_NOISE_COPIES,
    noise_scale: float = DEFAULT_NOISE_SCALE,
    seed: int = 0,
    retained_jitter: bool = False,
) -> ConfidenceScores:
    r"""Scores :math:`Y`, :math:`O`, :math:`O_b` and the noisy copies in one batched pass.

    Every image is one row of the same chunked forward pass: ``N`` originals,
    ``N`` masked images (``masked``), ``N`` per budget, ``N`` per noisy copy, and
    with ``retained_jitter`` ``N`` per budget and noisy copy.
    At budget :math:`b` pixel :math:`p` is kept with weight
    :math:`\mathrm{clip}((bHW - G_p) / E_p, 0, 1)`, :math:`G_p` the number of
    pixels of the map above it and :math:`E_p` the number equal to it, and the
    rest is set to 0 (as the classic :math:`\hat L \odot x` does). The noise is
    drawn once per call from a generator seeded by ``seed`` (the global random
    state is untouched), shared by all images and scaled by each image's
    standard deviation, so a batch of ``N`` scores as ``N`` batches of 1.

    Args:
        forward_func (Callable): the model.
        inputs (Tensor): images ``(N, C, H, W)``.
        attributions (Tensor): maps ``(N, 1, h, w)``, ``(N, C, h, w)`` or
            ``(N, h, w)``; see :func:`~captum_infocam.metrics.saliency_maps`.
        target (int, tuple, Tensor, or list, optional): Captum target.
        additional_forward_args (Any, optional): further arguments of the model.
        score_fn (str or Callable, optional): ``"softmax"``, ``"sigmoid"``,
            ``"identity"`` or a callable applied to the output. Default: ``"softmax"``
        max_examples_per_batch (int, optional): most images per forward pass.
            Default: all images of the call in one pass.
        masked (bool, optional): score :math:`O`. Default: True
        budgets (sequence of float, optional): retention budgets in (0, 1];
            empty to skip :math:`O_b`. Default: :data:`DEFAULT_BUDGETS`
        noise_copies (int, optional): noisy copies per image; 0 to skip.
            Default: :data:`DEFAULT_NOISE_COPIES`
        noise_scale (float, optional): the noise's standard deviation in units of
            each image's standard deviation. Default: :data:`DEFAULT_NOISE_SCALE`
        seed (int, optional): seed of the noise. Default: 0
        retained_jitter (bool, optional): also score the ``J`` noisy copies of each
            reduced image (``retained_noisy``; the improved increase's jitter of
            :math:`O_b`), ``|B| * J`` more images per example. Default: False

    Returns:
        :class:`ConfidenceScores`.

    Examples::

        >>> scores = confidence_scores(model, x, cam.attribute(x, target=y), target=y)
        >>> scores.retained.shape  # (budgets, N)
        torch.Size([4, 8])
    """
    x = image_input(inputs)
    budgets = _check_budgets(budgets)
    check_int("noise_copies", noise_copies, 0)
    check_real("noise_scale", noise_scale, 0.0)
    check_int("seed", seed, 0)
    num_examples, channels, height, width = x.shape
    maps = metric_maps(attributions, (height, width), num_examples, x.device)
    scorer = TargetScorer(
        forward_func, x, target, additional_forward_args, score_fn, max_examples_per_batch
    )
    first_budget = 1 + masked
    first_copy = first_budget + len(budgets)
    first_retained_copy = first_copy + noise_copies
    retained_copies = len(budgets) * noise_copies if retained_jitter else 0
    slots = first_retained_copy + retained_copies
    if budgets:
        greater, equal = _tie_counts(maps.flatten(1))
        kept_pixels = torch.tensor(budgets, dtype=greater.dtype, device=x.device) * height * width
    if noise_copies:
        dtype = x.dtype if x.is_floating_point() else torch.float32
        generator = torch.Generator(device=x.device).manual_seed(seed)
        shape = (noise_copies, channels, height, width)
        patterns = torch.randn(shape, generator=generator, device=x.device, dtype=dtype)
        scale = noise_scale * x.flatten(1).to(dtype).std(1)

    def make_batch(jobs: Tensor) -> tuple[Tensor, Tensor]:
        slot, example = jobs // num_examples, jobs % num_examples
        # A noisy copy of a reduced image: its budget, then its copy, budget-major.
        retained_copy = slot >= first_retained_copy
        offset = (slot - first_retained_copy).clamp_min(0)
        weight = torch.ones_like(maps[example])
        if masked:
            weight = torch.where((slot == 1)[:, None, None], maps[example], weight)
        if budgets:
            budget = torch.where(
                retained_copy, offset // max(noise_copies, 1), slot - first_budget
            ).clamp(0, len(budgets) - 1)
            kept = (kept_pixels[budget, None] - greater[example]) / equal[example]
            in_budget = ((slot >= first_budget) & (slot < first_copy)) | retained_copy
            weight = torch.where(
                in_budget[:, None, None], kept.clamp(0, 1).view_as(weight).to(weight), weight
            )
        # In the images' dtype: a float64 map must not turn a float32 model's input into float64.
        batch = weight[:, None].to(x.dtype if x.is_floating_point() else weight.dtype) * x[example]
        if noise_copies:
            copy = torch.where(retained_copy, offset % noise_copies, slot - first_copy).clamp(
                0, noise_copies - 1
            )
            noisy = (slot >= first_copy).to(scale) * scale[example]
            batch = batch + patterns[copy] * noisy[:, None, None, None]
        return batch, example

    scores = scorer.score(slots * num_examples, make_batch).view(slots, num_examples)
    return ConfidenceScores(
        original=scores[0],
        masked=scores[1] if masked else None,
        retained=scores[first_budget:first_copy] if budgets else None,
        noisy=scores[first_copy:first_retained_copy] if noise_copies else None,
        retained_noisy=(
            scores[first_retained_copy:].view(len(budgets), noise_copies, num_examples)
            if retained_copies
            else None
        ),
    )


# --- formulas ----------------------------------------------------------------------------


def _tiny(value: Tensor) -> float:
    return torch.finfo(value.dtype).tiny


def _average_drop(scores: ConfidenceScores) -> Tensor:
    y, o = scores.original, scores.masked
    assert o is not None, "confidence_scores(masked=True) gives O"
    return (y - o).clamp_min(0) / y.clamp_min(_tiny(y))


def _average_increase(scores: ConfidenceScores) -> Tensor:
    y, o = scores.original, scores.masked
    assert o is not None, "confidence_scores(masked=True) gives O"
    return (o > y).to(y.dtype)


def _average_gain(scores: ConfidenceScores) -> Tensor:
    y, o = scores.original, scores.masked
    assert o is not None, "confidence_scores(masked=True) gives O"
    return (o - y).clamp_min(0) / (1 - y).clamp_min(_tiny(y))


def _rms_change(copies: Optional[Tensor], clean: Tensor) -> Tensor:
    """The root-mean-square change of ``clean`` over the noisy ``copies`` (their first
    dimension; 0 without copies)."""
    if copies is None:
        return torch.zeros_like(clean)
    return (copies - clean).square().mean(0).sqrt()


def _jitter(scores: ConfidenceScores) -> Tensor:
    """sigma: the root-mean-square change of Y over the noisy copies (0 without copies)."""
    return _rms_change(scores.noisy, scores.original)


def _improved_drop(scores: ConfidenceScores) -> Tensor:
    assert scores.retained is not None, "confidence_scores(budgets=...) gives O_b"
    change = scores.original - scores.retained
    beyond = (change.abs() - DEAD_ZONE * _jitter(scores)).clamp_min(0)
    return (change.sign() * beyond).mean(0)


def _improved_increase(scores: ConfidenceScores) -> Tensor:
    assert scores.retained is not None, "confidence_scores(budgets=...) gives O_b"
    y, kept = scores.original, scores.retained
    # The jitter of the change O_b - Y: Y's and O_b's own, each over the same noisy copies.
    copies = None if scores.retained_noisy is None else scores.retained_noisy.transpose(0, 1)
    kept_jitter = _rms_change(copies, kept)
    spread = (_jitter(scores).square() + kept_jitter.square()).sqrt()
    floor = RELATIVE_JITTER_FLOOR * torch.maximum(y.abs(), kept.abs())
    spread = torch.maximum(spread, floor).clamp_min(_tiny(spread))
    significance = 2 * torch.special.ndtr((kept - y) / spread) - 1
    return significance.clamp_min(0).mean(0)


def _probabilities(scores: ConfidenceScores, metric: str) -> ConfidenceScores:
    check_probabilities(torch.cat([s.flatten() for s in scores if s is not None]), metric)
    return scores


def _improved_budgets(budgets: Sequence[float]) -> Sequence[float]:
    if isinstance(budgets, (tuple, list)) and not budgets:
        raise ValueError("budgets must hold at least one budget for the improved metrics")
    return budgets


def _improved_scores(
    forward_func: Callable[..., Tensor],
    inputs: Union[Tensor, tuple[Tensor, ...]],
    attributions: Tensor,
    target: TargetType,
    additional_forward_args: Any,
    score_fn: Union[str, ScoreFunction],
    max_examples_per_batch: Optional[int],
    budgets: Sequence[float],
    noise_copies: int,
    noise_scale: float,
    seed: int,
    retained_jitter: bool = False,
) -> ConfidenceScores:
    return confidence_scores(
        forward_func,
        inputs,
        attributions,
        target,
        additional_forward_args,
        score_fn,
        max_examples_per_batch,
        masked=False,
        budgets=_improved_budgets(budgets),
        noise_copies=noise_copies,
        noise_scale=noise_scale,
        seed=seed,
        retained_jitter=retained_jitter,
    )


# --- the metrics -------------------------------------------------------------------------


@higher_is_better(False)
def average_drop(
    forward_func: Callable[..., Tensor],
    inputs: Union[Tensor, tuple[Tensor, ...]],
    attributions: Tensor,
    target: TargetType = None,
    additional_forward_args: Any = None,
    score_fn: Union[str, ScoreFunction] = "softmax",
    max_examples_per_batch: Optional[int] = None,
) -> Tensor:
    r"""Average Drop (Grad-CAM++) :math:`\max(0, Y - O) / Y`, in :math:`[0, 1]`; lower is better.

    Two forward passes over the batch (:math:`Y` and :math:`O`).

    Args:
        forward_func (Callable): the model.
        inputs (Tensor): images ``(N, C, H, W)``.
        attributions (Tensor): maps ``(N, 1, h, w)``, ``(N, C, h, w)`` or
            ``(N, h, w)``; see :func:`~captum_infocam.metrics.saliency_maps`.
        target (int, tuple, Tensor, or list, optional): Captum target.
        additional_forward_args (Any, optional): further arguments of the model.
        score_fn (str or Callable, optional): ``"softmax"``, ``"sigmoid"`` or a
            callable returning probabilities. Default: ``"softmax"``
        max_examples_per_batch (int, optional): most images per forward pass.

    Returns:
        Tensor ``(N,)`` on the inputs' device.

    Raises:
        ValueError: if ``score_fn`` gives scores outside :math:`[0, 1]`.

    Examples::

        >>> average_drop(model, x, cam.attribute(x, target=y), target=y).mean()
    """
    scores = confidence_scores(
        forward_func,
        inputs,
        attributions,
        target,
        additional_forward_args,
        score_fn,
        max_examples_per_batch,
        budgets=(),
        noise_copies=0,
    )
    return _average_drop(_probabilities(scores, "average_drop"))


@higher_is_better(True)
def average_increase(
    forward_func: Callable[..., Tensor],
    inputs: Union[Tensor, tuple[Tensor, ...]],
    attributions: Tensor,
    target: TargetType = None,
    additional_forward_args: Any = None,
    score_fn: Union[str, ScoreFunction] = "softmax",
    max_examples_per_batch: Optional[int] = None,
) -> Tensor:
    r"""Average Increase (Grad-CAM++) :math:`\mathbb{1}[O > Y] \in \{0, 1\}`; higher is better.

    Two forward passes over the batch; any score (no bound depends on it).
    The arguments are those of :func:`average_drop`.

    Examples::

        >>> average_increase(model, x, cam.attribute(x, target=y), target=y).mean()
    """
    scores = confidence_scores(
        forward_func,
        inputs,
        attributions,
        target,
        additional_forward_args,
        score_fn,
        max_examples_per_batch,
        budgets=(),
        noise_copies=0,
    )
    return _average_increase(scores)


@higher_is_better(True)
def average_gain(
    forward_func: Callable[..., Tensor],
    inputs: Union[Tensor, tuple[Tensor, ...]],
    attributions: Tensor,
    target: TargetType = None,
    additional_forward_args: Any = None,
    score_fn: Union[str, ScoreFunction] = "softmax",
    max_examples_per_batch: Optional[int] = None,
) -> Tensor:
    r"""Average Gain :math:`\max(0, O - Y) / (1 - Y)`, in :math:`[0, 1]`; higher is better.

    The magnitude form of the increase (Zhang et al., Opti-CAM, 2024). Two
    forward passes over the batch. The arguments are those of
    :func:`average_drop`; scores outside :math:`[0, 1]` raise a ``ValueError``.

    Examples::

        >>> average_gain(model, x, cam.attribute(x, target=y), target=y).mean()
    """
    scores = confidence_scores(
        forward_func,
        inputs,
        attributions,
        target,
        additional_forward_args,
        score_fn,
        max_examples_per_batch,
        budgets=(),
        noise_copies=0,
    )
    return _average_gain(_probabilities(scores, "average_gain"))


@higher_is_better(False)
def improved_average_drop(
    forward_func: Callable[..., Tensor],
    inputs: Union[Tensor, tuple[Tensor, ...]],
    attributions: Tensor,
    target: TargetType = None,
    additional_forward_args: Any = None,
    score_fn: Union[str, ScoreFunction] = "softmax",
    max_examples_per_batch: Optional[int] = None,
    budgets: Sequence[float] = DEFAULT_BUDGETS,
    noise_copies: int = DEFAULT_NOISE_COPIES,
    noise_scale: float = DEFAULT_NOISE_SCALE,
    seed: int = 0,
) -> Tensor:
    r"""Improved Average Drop: the drop in score at fixed retention budgets, beyond the jitter.

    .. math::
        \frac{1}{|B|} \sum_{b \in B} \operatorname{sign}(Y - O_b)
        \max\big(0, |Y - O_b| - 2\sqrt{2}\,\sigma\big)
        \in [-(1 - Y), Y] \subseteq [-1, 1]

    Lower is better; negative where the map's top pixels raise the score. Every
    map keeps the same area at each budget, so a map that keeps (almost) the
    whole image has no advantage; changes smaller than the dead zone are the
    model's own jitter and count as 0; no score is divided, so a change of
    :math:`\epsilon` in the :math:`O_b` moves the result by at most
    :math:`\epsilon` (the classic drop moves by up to :math:`\epsilon / Y`; in
    :math:`Y` the bound is :math:`(1 + 2\sqrt{2})\epsilon`, see
    ``docs/metrics.md``). ``1 + |B| + J`` forward passes over the batch (9 by
    default).

    Args:
        forward_func (Callable): the model.
        inputs (Tensor): images ``(N, C, H, W)``.
        attributions (Tensor): maps ``(N, 1, h, w)``, ``(N, C, h, w)`` or
            ``(N, h, w)``; see :func:`~captum_infocam.metrics.saliency_maps`.
        target (int, tuple, Tensor, or list, optional): Captum target.
        additional_forward_args (Any, optional): further arguments of the model.
        score_fn (str or Callable, optional): ``"softmax"``, ``"sigmoid"`` or a
            callable returning probabilities. Default: ``"softmax"``
        max_examples_per_batch (int, optional): most images per forward pass.
        budgets (sequence of float, optional): retention budgets, fractions of
            the image in (0, 1]. Default: ``(1/16, 1/8, 1/4, 1/2)``
        noise_copies (int, optional): noisy copies per image that estimate
            :math:`\sigma`; 0 turns the dead zone off. Default: 4
        noise_scale (float, optional): their Gaussian noise, in units of each
            image's standard deviation. Default: 0.03
        seed (int, optional): seed of the noise. Default: 0

    Returns:
        Tensor ``(N,)`` on the inputs' device.

    Raises:
        ValueError: if ``score_fn`` gives scores outside :math:`[0, 1]`.

    Examples::

        >>> improved_average_drop(model, x, cam.attribute(x, target=y), target=y).mean()
    """
    scores = _improved_scores(
        forward_func,
        inputs,
        attributions,
        target,
        additional_forward_args,
        score_fn,
        max_examples_per_batch,
        budgets,
        noise_copies,
        noise_scale,
        seed,
    )
    return _improved_drop(_probabilities(scores, "improved_average_drop"))


@higher_is_better(True)
def improved_average_increase(
    forward_func: Callable[..., Tensor],
    inputs: Union[Tensor, tuple[Tensor, ...]],
    attributions: Tensor,
    target: TargetType = None,
    additional_forward_args: Any = None,
    score_fn: Union[str, ScoreFunction] = "softmax",
    max_examples_per_batch: Optional[int] = None,
    budgets: Sequence[float] = DEFAULT_BUDGETS,
    noise_copies: int = DEFAULT_NOISE_COPIES,
    noise_scale: float = DEFAULT_NOISE_SCALE,
    seed: int = 0,
) -> Tensor:
    r"""Improved Average Increase: a count of increases beyond the score's jitter.

    .. math::
        \frac{1}{|B|} \sum_{b \in B}
        \max\Big(0,\ 2\,\Phi\Big(\frac{O_b - Y}{s_b}\Big) - 1\Big) \in [0, 1),
        \qquad s_b = \max\big(\sqrt{\sigma_Y^2 + \sigma_b^2},\
                               10^{-3} \max(|Y|, |O_b|)\big)

    :math:`\Phi` is the standard normal distribution function and :math:`\sigma_Y`,
    :math:`\sigma_b` the root-mean-square change of :math:`Y` and of :math:`O_b`
    over the same ``J`` noisy copies of the image and of the reduced image: each
    term is how confidently the score rose by more than the jitter of the change,
    0 for no change or a fall (the classic increase's 0), near 1 for a rise of
    several jitters. A change of a score by one :math:`s_b` moves each term by at
    most :math:`\sqrt{2/\pi} \approx 0.8` (the classic increase jumps by 1 for
    any change). Higher is better. Scaling the scores by :math:`a > 0` scales the
    change, the jitters and the floor alike, so any scores work (logits too).
    Forward passes: those of :func:`improved_average_drop` plus ``|B| * J``.

    Args:
        forward_func (Callable): the model.
        inputs (Tensor): images ``(N, C, H, W)``.
        attributions (Tensor): maps ``(N, 1, h, w)``, ``(N, C, h, w)`` or
            ``(N, h, w)``; see :func:`~captum_infocam.metrics.saliency_maps`.
        target (int, tuple, Tensor, or list, optional): Captum target.
        additional_forward_args (Any, optional): further arguments of the model.
        score_fn (str or Callable, optional): ``"softmax"``, ``"sigmoid"``,
            ``"identity"`` or a callable applied to the output: any scores.
            Default: ``"softmax"``
        max_examples_per_batch (int, optional): most images per forward pass.
        budgets (sequence of float, optional): retention budgets, fractions of
            the image in (0, 1]. Default: ``(1/16, 1/8, 1/4, 1/2)``
        noise_copies (int, optional): noisy copies per image (and per reduced
            image) that estimate the jitters; 0 leaves only the floor, and the
            count is then a hard count of rises above a thousandth of the score.
            Default: 4
        noise_scale (float, optional): their Gaussian noise, in units of each
            image's standard deviation. Default: 0.03
        seed (int, optional): seed of the noise. Default: 0

    Returns:
        Tensor ``(N,)`` on the inputs' device.

    Examples::

        >>> improved_average_increase(model, x, cam.attribute(x, target=y), target=y).mean()
    """
    scores = _improved_scores(
        forward_func,
        inputs,
        attributions,
        target,
        additional_forward_args,
        score_fn,
        max_examples_per_batch,
        budgets,
        noise_copies,
        noise_scale,
        seed,
        retained_jitter=True,
    )
    return _improved_increase(scores)


def confidence_metrics(
    forward_func: Callable[..., Tensor],
    inputs: Union[Tensor, tuple[Tensor, ...]],
    attributions: Tensor,
    target: TargetType = None,
    additional_forward_args: Any = None,
    score_fn: Union[str, ScoreFunction] = "softmax",
    max_examples_per_batch: Optional[int] = None,
    budgets: Sequence[float] = DEFAULT_BUDGETS,
    noise_copies: int = DEFAULT_NOISE_COPIES,
    noise_scale: float = DEFAULT_NOISE_SCALE,
    seed: int = 0,
) -> dict[str, Tensor]:
    """All five confidence metrics from one batched pass (``2 + |B| + J + |B| J`` images
    per example).

    The arguments are those of :func:`improved_average_drop`; the values equal
    the five functions' own.

    Returns:
        dict from each metric function's name to its ``(N,)`` tensor.

    Examples::

        >>> values = confidence_metrics(model, x, cam.attribute(x, target=y), target=y)
        >>> values["improved_average_drop"].mean()
    """
    scores = confidence_scores(
        forward_func,
        inputs,
        attributions,
        target,
        additional_forward_args,
        score_fn,
        max_examples_per_batch,
        budgets=_improved_budgets(budgets),
        noise_copies=noise_copies,
        noise_scale=noise_scale,
        seed=seed,
        retained_jitter=True,
    )
    _probabilities(scores, "average_drop, average_gain and improved_average_drop")
    return {
        "average_drop": _average_drop(scores),
        "average_increase": _average_increase(scores),
        "average_gain": _average_gain(scores),
        "improved_average_drop": _improved_drop(scores),
        "improved_average_increase": _improved_increase(scores),
    }
