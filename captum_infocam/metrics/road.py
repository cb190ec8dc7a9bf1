r"""ROAD: RemOve And Debias (Rong et al., "A Consistent and Efficient Evaluation
Strategy for Attribution Methods", ICML 2022).

Insertion and deletion replace pixels with a substrate (zeros, a blur) whose
sharp edges are themselves evidence: the model reacts to the shape of what was
removed, out of its training distribution. ROAD instead fills the removed pixels
by noisy linear imputation: each removed pixel takes the weighted mean of its 8
neighbours (weight 1/6 for the 4 direct ones, 1/12 for the diagonal ones; only
neighbours inside the image count), known or themselves imputed, plus Gaussian
noise of standard deviation ``noise`` (0.01, as in ROAD). The removed pixels'
values solve one sparse, symmetric, positive-definite linear system per image
and channel (a discrete Laplace equation with the kept pixels as boundary).

ROAD's reference code solves it exactly with SciPy on the host. Here it is
solved on the inputs' device, for a whole batch at once, by Jacobi-preconditioned
conjugate gradients, coarse to fine: the problem is first solved on an image
pyramid (2 x 2 average pooling, a coarse pixel known when any of its children
is), and each level starts from the bilinear upsampling of the coarser solution.
No value is read back to the host. Conjugate gradients on this Laplace equation
need about as many iterations as the widest hole is wide, so each level runs
twice its longer side by default (128 at the benchmark's 64 pixels, 448 at 224):
with 10% to 90% of the pixels removed in scattered patches, the imputed values
were within 1e-6 of SciPy's exact solution on average and 6e-6 at worst, at 64
and at 224 pixels (images in [0, 1]; ROAD's own noise is 1e-2;
``docs/metrics.md``), at about 0.2 s per 224-pixel image on one CPU core. A fixed
32 iterations, the default before 2026-12-04, left errors of 1e-2 on average and
8e-2 at worst, enough to move a LeRF score by 0.27.

* :func:`road_most_relevant_first` (MoRF): remove a fraction of the most
  relevant pixels; the target's score should fall; lower is better.
* :func:`road_least_relevant_first` (LeRF): remove the least relevant; the
  score should stay; higher is better.

Each returns the mean target score over the removal fractions (by default 10%,
20%, ..., 90%, as pytorch-grad-cam's ``ROAD*Average``); pytorch-grad-cam reports
the same mean minus :math:`Y`.
"""

from __future__ import annotations

from numbers import Real
from typing import Any, Callable, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from captum._utils.typing import TargetType
from torch import Tensor

from captum_infocam._validation import check_int, check_real
from captum_infocam.metrics._common import (
    ScoreFunction,
    TargetScorer,
    higher_is_better,
    image_input,
    metric_maps,
    removal_ranks,
)

__all__ = [
    "DEFAULT_FRACTIONS",
    "ITERATIONS_PER_PIXEL",
    "noisy_linear_imputation",
    "road_least_relevant_first",
    "road_most_relevant_first",
]

#: Fractions of the image removed, as in pytorch-grad-cam's ROAD averages.
DEFAULT_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
#: Conjugate-gradient iterations per pyramid level, per pixel of the level's longer side
#: (the default ``iterations=None``).
ITERATIONS_PER_PIXEL = 2


def _neighbour_sum(values: Tensor) -> Tensor:
    """ROAD's weighted sum of the 8 neighbours of every pixel, 0 outside the image."""
    height, width = values.shape[-2:]
    padded = F.pad(values, (1, 1, 1, 1))

    def shifted(row: int, col: int) -> Tensor:
        return padded[..., row : row + height, col : col + width]

    direct = shifted(0, 1) + shifted(2, 1) + shifted(1, 0) + shifted(1, 2)
    diagonal = shifted(0, 0) + shifted(0, 2) + shifted(2, 0) + shifted(2, 2)
    return direct / 6 + diagonal / 12


def _conjugate_gradient(values: Tensor, removed: Tensor, start: Tensor, iterations: int) -> Tensor:
    """Solves for the removed pixels from ``start``; returns the whole image ``(M, C, h, w)``.

    On removed pixel ``i``: ``w_i u_i - sum_j w_ij m_j u_j = sum_j w_ij (1 - m_j) x_j``
    with ``w_i`` the total weight of its neighbours inside the image. The iterates
    are 0 on kept pixels, so ``m_j u_j = u_j``.
    """
    kept = 1 - removed
    tiny = torch.finfo(values.dtype).tiny
    total = _neighbour_sum(torch.ones_like(removed[:1])).clamp_min(tiny)  # 0 only in 1 x 1 images
    inverse = removed / total  # the Jacobi preconditioner, 0 on kept pixels

    def system(u: Tensor) -> Tensor:
        return removed * (total * u - _neighbour_sum(u))

    solution = removed * start
    residual = removed * _neighbour_sum(kept * values) - system(solution)
    preconditioned = residual * inverse
    direction = preconditioned
    product = (residual * preconditioned).sum((-2, -1), keepdim=True)
    for _ in range(iterations):
        image = system(direction)
        step = product / (direction * image).sum((-2, -1), keepdim=True).clamp_min(tiny)
        solution = solution.addcmul(step, direction)
        residual = residual.addcmul(step, image, value=-1)
        preconditioned = residual * inverse
        new_product = (residual * preconditioned).sum((-2, -1), keepdim=True)
        direction = preconditioned.addcmul(new_product / product.clamp_min(tiny), direction)
        product = new_product
    return kept * values + solution


def noisy_linear_imputation(
    images: Tensor,
    removed: Tensor,
    noise: float = 0.01,
    iterations: Optional[int] = None,
    noise_pattern: Optional[Tensor] = None,
) -> Tensor:
    r"""Fills the ``removed`` pixels of ``images`` by ROAD's noisy linear imputation.

    Args:
        images (Tensor): ``(M, C, H, W)``.
        removed (Tensor): ``(M, H, W)`` or ``(M, 1, H, W)``, true (or 1) where a
            pixel is removed. At least one pixel of each image must be kept.
        noise (float, optional): standard deviation of the Gaussian noise added
            to the imputed pixels (absolute, in the images' units). Default: 0.01
        iterations (int, optional): conjugate-gradient iterations per pyramid
            level. Default: twice the level's longer side (:data:`ITERATIONS_PER_PIXEL`),
            which converges to the exact solution (see above)
        noise_pattern (Tensor, optional): standard normal values broadcastable to
            ``images``, scaled by ``noise``; drawn from the global generator if
            not given.

    Returns:
        Tensor like ``images``: kept pixels unchanged, removed ones imputed.

    Examples::

        >>> removed = torch.zeros(1, 8, 8, dtype=torch.bool)
        >>> removed[:, 2:5, 2:5] = True
        >>> filled = noisy_linear_imputation(images, removed, noise=0.0)
    """
    check_real("noise", noise, 0.0)
    if iterations is not None:
        check_int("iterations", iterations, 0)
    values = images if images.is_floating_point() else images.float()
    mask = (removed if removed.dim() == 4 else removed[:, None]).to(values)
    levels = [(values * (1 - mask), 1 - mask)]
    while max(levels[-1][1].shape[-2:]) > 1:
        total, weight = levels[-1]
        levels.append(
            (F.avg_pool2d(total, 2, ceil_mode=True), F.avg_pool2d(weight, 2, ceil_mode=True))
        )
    solution = torch.zeros_like(levels[-1][0])
    for depth in range(len(levels) - 1, -1, -1):
        total, weight = levels[depth]
        if depth == 0:
            level_values, level_removed = values, mask
        else:  # a coarse pixel is known, as the mean of its known children, if any is
            tiny = torch.finfo(weight.dtype).tiny
            level_values, level_removed = total / weight.clamp_min(tiny), (weight == 0).to(weight)
        start = F.interpolate(solution, size=total.shape[-2:], mode="bilinear", align_corners=False)
        level_steps = ITERATIONS_PER_PIXEL * max(total.shape[-2:])
        steps = level_steps if iterations is None else iterations
        # Conjugate gradients are exact after as many iterations as there are unknowns.
        steps = min(steps, total.shape[-2] * total.shape[-1])
        solution = _conjugate_gradient(level_values, level_removed, start, steps)
    if noise:
        pattern = torch.randn_like(solution) if noise_pattern is None else noise_pattern
        solution = solution + mask * noise * pattern
    return solution


def _road(
    forward_func: Callable[..., Tensor],
    inputs: Union[Tensor, tuple[Tensor, ...]],
    attributions: Tensor,
    target: TargetType,
    additional_forward_args: Any,
    fractions: Sequence[float],
    noise: float,
    iterations: Optional[int],
    score_fn: Union[str, ScoreFunction],
    max_examples_per_batch: Optional[int],
    seed: int,
    most_relevant_first: bool,
) -> tuple[Tensor, Tensor]:
    """Returns ``(mean over fractions (N,), curve (N, len(fractions)))``."""
    if (
        not isinstance(fractions, (tuple, list))
        or not fractions
        or not all(isinstance(f, Real) and not isinstance(f, bool) and 0 < f < 1 for f in fractions)
    ):
        raise ValueError(f"fractions must be a non-empty sequence in (0, 1), got {fractions!r}")
    check_real("noise", noise, 0.0)
    if iterations is not None:
        check_int("iterations", iterations, 0)
    check_int("seed", seed, 0)
    x = image_input(inputs)
    num_examples, channels, height, width = x.shape
    pixels = height * width
    maps = metric_maps(attributions, (height, width), num_examples, x.device).flatten(1)
    rank = removal_ranks(maps, most_relevant_first, seed)
    # At least one pixel stays: the imputation needs a known pixel.
    counts = torch.tensor([min(round(f * pixels), pixels - 1) for f in fractions], device=x.device)
    steps = len(fractions)
    dtype = x.dtype if x.is_floating_point() else torch.float32
    generator = torch.Generator(device=x.device).manual_seed(seed)
    patterns = torch.randn(
        (steps, channels, height, width), generator=generator, device=x.device, dtype=dtype
    )
    scorer = TargetScorer(
        forward_func, x, target, additional_forward_args, score_fn, max_examples_per_batch
    )

    def imputed(jobs: Tensor) -> tuple[Tensor, Tensor]:
        examples, step = jobs // steps, jobs % steps
        removed = (rank[examples] < counts[step, None]).view(-1, height, width)
        batch = noisy_linear_imputation(x[examples], removed, noise, iterations, patterns[step])
        return batch, examples

    curve = scorer.score(num_examples * steps, imputed).view(num_examples, steps)
    return curve.mean(1), curve


@higher_is_better(False)
def road_most_relevant_first(
    forward_func: Callable[..., Tensor],
    inputs: Union[Tensor, tuple[Tensor, ...]],
    attributions: Tensor,
    target: TargetType = None,
    additional_forward_args: Any = None,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    noise: float = 0.01,
    iterations: Optional[int] = None,
    score_fn: Union[str, ScoreFunction] = "softmax",
    max_examples_per_batch: Optional[int] = None,
    seed: int = 0,
    return_curve: bool = False,
) -> Union[Tensor, tuple[Tensor, Tensor]]:
    r"""ROAD, most relevant first (MoRF): the score after imputing the map's top pixels.

    For each fraction ``f`` the ``round(f * H * W)`` most relevant pixels of the
    map (ties broken in a seeded random order of the positions,
    :func:`~captum_infocam.metrics._common.removal_ranks`) are removed and imputed by
    :func:`noisy_linear_imputation`; the result is the target's score averaged
    over the fractions, in :math:`[0, 1]` for probabilities. Lower is better: a
    faithful map points at the pixels the score needs. One forward pass per
    fraction over the batch.

    Args:
        forward_func (Callable): the model.
        inputs (Tensor): images ``(N, C, H, W)``.
        attributions (Tensor): maps ``(N, 1, h, w)``, ``(N, C, h, w)`` or ``(N, h, w)``.
        target (int, tuple, Tensor, or list, optional): Captum target.
        additional_forward_args (Any, optional): further arguments of the model.
        fractions (sequence of float, optional): fractions of the image removed,
            each in (0, 1). Default: 0.1, 0.2, ..., 0.9
        noise (float, optional): the imputation's noise. Default: 0.01
        iterations (int, optional): the solver's iterations per pyramid level.
            Default: twice the level's longer side (converged)
        score_fn (str or Callable, optional): ``"softmax"``, ``"sigmoid"``,
            ``"identity"`` or a callable. Default: ``"softmax"``
        max_examples_per_batch (int, optional): most images per forward pass
            (and per imputation). Default: all of them
        seed (int, optional): seed of the noise (one pattern per fraction, shared
            by the images) and of the order in which tied pixels are removed; the
            global random state is untouched. Default: 0
        return_curve (bool, optional): also return the scores ``(N, F)``.
            Default: False

    Returns:
        Tensor ``(N,)`` (and the curve) on the inputs' device.

    Examples::

        >>> road_most_relevant_first(model, x, cam.attribute(x, target=y), target=y).mean()
    """
    mean, curve = _road(
        forward_func,
        inputs,
        attributions,
        target,
        additional_forward_args,
        fractions,
        noise,
        iterations,
        score_fn,
        max_examples_per_batch,
        seed,
        most_relevant_first=True,
    )
    return (mean, curve) if return_curve else mean


@higher_is_better(True)
def road_least_relevant_first(
    forward_func: Callable[..., Tensor],
    inputs: Union[Tensor, tuple[Tensor, ...]],
    attributions: Tensor,
    target: TargetType = None,
    additional_forward_args: Any = None,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    noise: float = 0.01,
    iterations: Optional[int] = None,
    score_fn: Union[str, ScoreFunction] = "softmax",
    max_examples_per_batch: Optional[int] = None,
    seed: int = 0,
    return_curve: bool = False,
) -> Union[Tensor, tuple[Tensor, Tensor]]:
    r"""ROAD, least relevant first (LeRF): the score after imputing the map's bottom pixels.

    As :func:`road_most_relevant_first`, removing the least relevant pixels
    first. Higher is better: a faithful map leaves the pixels the score needs.
    The arguments are those of :func:`road_most_relevant_first`.

    Examples::

        >>> road_least_relevant_first(model, x, cam.attribute(x, target=y), target=y).mean()
    """
    mean, curve = _road(
        forward_func,
        inputs,
        attributions,
        target,
        additional_forward_args,
        fractions,
        noise,
        iterations,
        score_fn,
        max_examples_per_batch,
        seed,
        most_relevant_first=False,
    )
    return (mean, curve) if return_curve else mean
