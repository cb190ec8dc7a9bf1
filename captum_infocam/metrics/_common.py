"""Shared plumbing of the metrics: saliency maps, target scores, chunked forwards.

Everything stays on the inputs' device: indices are built with ``torch.arange``,
chunks are sliced by Python integers that never come from a tensor, and no value
is read back to the host.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Optional, Union

import torch
import torch.nn.functional as F
from captum._utils.common import _format_additional_forward_args
from captum._utils.typing import TargetType
from torch import Tensor

from captum_infocam._targets import check_target, select, target_index
from captum_infocam._validation import check_choice, check_int, format_inputs
from captum_infocam._warnings import caller_stacklevel
from captum_infocam.outputs import output_scores

__all__ = [
    "SCORE_FUNCTIONS",
    "ScoreFunction",
    "TargetScorer",
    "check_probabilities",
    "higher_is_better",
    "image_input",
    "metric_maps",
    "removal_ranks",
    "saliency_maps",
    "upsampled_maps",
]

ScoreFunction = Callable[[Tensor], Tensor]

#: How model outputs become the scores a metric compares: probabilities by default.
SCORE_FUNCTIONS: dict[str, ScoreFunction] = {
    "softmax": lambda output: output.softmax(1),
    "sigmoid": torch.sigmoid,
    "identity": lambda output: output,
}


def higher_is_better(value: bool) -> Callable[[Callable[..., Tensor]], Callable[..., Tensor]]:
    """Marks a metric function with ``higher_is_better = value``."""

    def mark(function: Callable[..., Tensor]) -> Callable[..., Tensor]:
        function.higher_is_better = value  # type: ignore[attr-defined]
        return function

    return mark


def image_input(inputs: Union[Tensor, tuple[Tensor, ...]]) -> Tensor:
    """Checks and returns the single image batch ``(N, C, H, W)`` of ``inputs``."""
    formatted, _ = format_inputs(inputs)
    if len(formatted) != 1 or formatted[0].dim() != 4:
        shapes = [tuple(x.shape) for x in formatted]
        raise ValueError(f"inputs must be one (N, C, H, W) image batch, got shapes {shapes}")
    return formatted[0]


def _channel_sums(attributions: Tensor, num_examples: int) -> Tensor:
    """Checks ``attributions`` and returns them summed over channels, ``(N, 1, h, w)``, with
    NaN and infinite values set to 0 (before any resizing, so that a bad cell does not
    spread to its neighbours)."""
    if not isinstance(attributions, Tensor):
        raise TypeError(f"attributions must be a tensor, got {type(attributions).__name__}")
    if attributions.dim() == 3:
        attributions = attributions[:, None]
    if attributions.dim() != 4 or len(attributions) != num_examples:
        raise ValueError(
            f"attributions must be (N, C, h, w) or (N, h, w) with N = {num_examples}, "
            f"got shape {tuple(attributions.shape)}"
        )
    if not attributions.is_floating_point():
        attributions = attributions.float()
    return attributions.nan_to_num(nan=0.0, posinf=0.0, neginf=0.0).sum(1, keepdim=True)


def _resized(maps: Tensor, size: tuple[int, int]) -> Tensor:
    if tuple(maps.shape[-2:]) != tuple(size):
        maps = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
    return maps[:, 0]


def upsampled_maps(attributions: Tensor, size: tuple[int, int], num_examples: int) -> Tensor:
    """Turns attributions into maps ``(N, H, W)`` of the input size, not normalised.

    ``(N, C, h, w)`` attributions are stripped of NaN and infinite values (set to
    0, before upsampling, so that a bad cell does not spread to its neighbours),
    summed over channels (``(N, h, w)`` taken as is) and upsampled bilinearly to
    ``size`` if needed: :func:`saliency_maps` without its normalisation.
    """
    return _resized(_channel_sums(attributions, num_examples), size)


def saliency_maps(attributions: Tensor, size: tuple[int, int], num_examples: int) -> Tensor:
    r"""The maps as every metric of :mod:`captum_infocam.metrics` sees them.

    Attributions ``(N, C, h, w)`` are summed over channels (``(N, h, w)`` are
    taken as one channel), stripped of NaN and infinite values (set to 0), upsampled
    bilinearly to ``size`` if they have another size (``align_corners=False``) and
    min-max normalised per example to :math:`[0, 1]`. A constant map becomes all
    zeros, at any resolution (it is set to 0 before upsampling, where it is exactly
    constant). A map and the same map upsampled score alike. Any
    method's maps work: layer-sized CAMs and input-sized saliency alike. The
    metrics themselves refuse non-finite attributions (:func:`metric_maps`).

    Args:
        attributions (Tensor): maps ``(N, C, h, w)`` or ``(N, h, w)``, e.g. the
            output of :meth:`InfoCAM.attribute <captum_infocam.InfoCAM.attribute>`;
            integer tensors are converted to float32.
        size (tuple[int, int]): ``(H, W)`` of the result, usually the inputs'
            ``x.shape[-2:]``.
        num_examples (int): ``N``, checked against the attributions' batch.

    Returns:
        Tensor ``(N, H, W)`` with values in :math:`[0, 1]`, on the attributions'
        device, in their floating-point dtype.

    Raises:
        TypeError: if ``attributions`` is not a tensor.
        ValueError: if it is not ``(N, C, h, w)`` or ``(N, h, w)`` with
            ``N = num_examples``.

    Examples::

        >>> from captum_infocam.metrics import saliency_maps
        >>> attr = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]]]])  # (1, 1, 2, 2)
        >>> saliency_maps(attr, (2, 2), 1)
        tensor([[[0.0000, 0.2500],
                 [0.5000, 1.0000]]])
        >>> cam = InfoCAM(model, model.layer4)
        >>> maps = saliency_maps(cam.attribute(x, target=y), x.shape[-2:], len(x))
    """
    maps = _channel_sums(attributions, num_examples)
    # A map that is constant at its own resolution is set to 0 there: bilinear upsampling
    # of a constant leaves a float ripple that min-max would stretch to the full range.
    constant = maps.amax((2, 3), keepdim=True) == maps.amin((2, 3), keepdim=True)
    maps = _resized(torch.where(constant, 0.0, maps), size)
    low = maps.amin((1, 2), keepdim=True)
    span = maps.amax((1, 2), keepdim=True) - low
    tiny = torch.finfo(maps.dtype).tiny
    return torch.where(span > 0, (maps - low) / span.clamp_min(tiny), 0.0)


def metric_maps(
    attributions: Tensor,
    size: tuple[int, int],
    num_examples: int,
    device: Optional[torch.device],
    normalize: bool = True,
) -> Tensor:
    """The maps a metric scores: :func:`saliency_maps` (or, without ``normalize``,
    :func:`upsampled_maps`) of ``attributions`` moved to ``device`` (``None``: where they
    are), after refusing
    attributions with NaN or infinite values (one host synchronisation).

    Raises:
        ValueError: naming the examples whose attributions are not finite.
    """
    if isinstance(attributions, Tensor):
        if device is not None:
            attributions = attributions.to(device)
        if attributions.is_floating_point():
            bad = ~torch.isfinite(attributions).flatten(1).all(1)
            if bool(bad.any()):
                examples = bad.nonzero().flatten().tolist()
                raise ValueError(
                    f"attributions hold NaN or infinite values for example(s) {examples[:10]}"
                    f"{' ...' if len(examples) > 10 else ''}: a metric cannot rank or weigh "
                    "them; fix the method, or replace them on purpose (e.g. "
                    "attributions.nan_to_num(0.0))"
                )
    return (saliency_maps if normalize else upsampled_maps)(attributions, size, num_examples)


def removal_ranks(maps: Tensor, most_relevant_first: bool, seed: int) -> Tensor:
    """The step at which each pixel of ``maps`` ``(N, P)`` is removed or inserted: its rank
    ``(N, P)``, 0 first, most (or least) relevant first.

    Ties are broken in a random order of the positions, drawn from ``seed`` and the same
    for every image (so that a batch scores as its images one by one): a constant map or
    the zeros of a ReLU'd CAM are removed in no spatial order, and no position (the top of
    the image, say) is favoured, as the reading order of a stable sort would.
    """
    positions = maps.shape[1]
    generator = torch.Generator(device=maps.device).manual_seed(seed)
    shuffle = torch.randperm(positions, generator=generator, device=maps.device)
    shuffled = maps[:, shuffle]
    order = shuffle[shuffled.argsort(dim=1, descending=most_relevant_first, stable=True)]
    steps = torch.arange(positions, device=maps.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, steps)


def check_probabilities(scores: Tensor, metric: str) -> None:
    """Raises unless every score lies in ``[0, 1]`` (one host synchronisation).

    The bounds of ``metric`` are proved for probabilities; other scores (logits
    through ``score_fn="identity"``) would make them meaningless.
    """
    inside = (scores >= 0) & (scores <= 1)
    if not bool(inside.all()):
        finite = scores[torch.isfinite(scores)]
        seen = f"[{finite.min():.4g}, {finite.max():.4g}]" if len(finite) else "no finite value"
        nan = " and NaN" if len(finite) < scores.numel() else ""
        raise ValueError(
            f"score_fn must give probabilities in [0, 1] for {metric}, got scores in {seen}{nan}; "
            "use score_fn='softmax', 'sigmoid' or a callable that returns probabilities"
        )


def _resolve_score_fn(score_fn: Union[str, ScoreFunction]) -> ScoreFunction:
    if callable(score_fn):
        return score_fn
    check_choice("score_fn", score_fn, SCORE_FUNCTIONS, alternatives="a callable")
    return SCORE_FUNCTIONS[score_fn]


def _warn_if_probabilities(output: Tensor) -> None:
    """Warns when a model's outputs already look like softmax probabilities (one host
    synchronisation, on the first batch of a metric's call): ``score_fn="softmax"`` would
    apply a second softmax and squash every score towards ``1 / classes``."""
    if output.dim() != 2 or output.shape[1] < 2 or not output.is_floating_point():
        return
    rows = output.detach()
    inside = (rows >= 0).all() & (rows <= 1).all()
    summing_to_one = (rows.sum(1) - 1).abs().amax() < 1e-3
    if bool(inside & summing_to_one):
        warnings.warn(
            "forward_func's outputs already look like probabilities (each row in [0, 1], "
            "summing to 1): score_fn='softmax' would apply a second softmax; pass "
            "score_fn='identity' to score them as they are",
            UserWarning,
            stacklevel=caller_stacklevel(),
        )


class TargetScorer:
    """Scores batches of perturbed inputs at each example's target, in chunks.

    Args:
        forward_func (Callable): the model.
        inputs (Tensor): the unperturbed images ``(N, C, H, W)``.
        target (TargetType): Captum target, one output element per example.
        additional_forward_args (Any): as in Captum; tensors with ``N`` rows are
            indexed along with the examples they belong to.
        score_fn (str or Callable): see :data:`SCORE_FUNCTIONS`.
        max_examples_per_batch (int, optional): most inputs per forward pass.
            Default: ``N``.
    """

    def __init__(
        self,
        forward_func: Callable[..., Tensor],
        inputs: Tensor,
        target: TargetType,
        additional_forward_args: Any,
        score_fn: Union[str, ScoreFunction],
        max_examples_per_batch: Optional[int],
    ) -> None:
        if not callable(forward_func):
            raise TypeError("forward_func must be callable")
        num_examples = len(inputs)
        check_target(target, num_examples)
        if max_examples_per_batch is not None:
            check_int("max_examples_per_batch", max_examples_per_batch, 1)
        self.forward_func = forward_func
        self.inputs = inputs
        self.num_examples = num_examples
        self.chunk = max_examples_per_batch or num_examples
        self.score_fn = _resolve_score_fn(score_fn)
        self._check_softmax = score_fn == "softmax"
        self.additional_forward_args = _format_additional_forward_args(additional_forward_args)
        self._target = target
        self._index: Optional[Tensor] = None

    def _forward(self, batch: Tensor, examples: Tensor) -> Tensor:
        extra = tuple(
            arg[examples]
            if isinstance(arg, Tensor) and arg.dim() and len(arg) == self.num_examples
            else arg
            for arg in self.additional_forward_args or ()
        )
        output = output_scores(self.forward_func(batch, *extra))
        if self._check_softmax:
            self._check_softmax = False
            _warn_if_probabilities(output)
        scores = self.score_fn(output)
        if self._index is None:
            self._index = target_index(self._target, self.num_examples, scores.shape, scores.device)
        return select(scores, self._index[examples])

    def score(self, total: int, make_batch: Callable[[Tensor], tuple[Tensor, Tensor]]) -> Tensor:
        """Scores ``total`` perturbed inputs, ``make_batch(jobs) -> (batch, examples)``.

        ``jobs`` is a chunk of ``torch.arange(total)``; ``examples`` says which
        example each row of ``batch`` perturbs. Returns scores of shape ``(total,)``.
        """
        jobs = torch.arange(total, device=self.inputs.device)
        with torch.no_grad():
            return torch.cat(
                [self._forward(*make_batch(chunk)) for chunk in jobs.split(self.chunk)]
            )

    def original(self) -> Tensor:
        """The target scores of the unperturbed inputs, shape ``(N,)``."""
        return self.score(self.num_examples, lambda jobs: (self.inputs[jobs], jobs))
