r"""Insertion and deletion (Petsiuk et al., RISE, 2018).

Pixels are ranked by the saliency map (upsampled to the image; ties broken in a
seeded random order of the positions, the same for every image, so that no part
of the image goes first where a map is flat). Deletion replaces the most salient
pixels first with a substrate (zeros by default) and records the target's score
after each of ``n_steps`` equal steps; insertion starts from the substrate (by
default RISE's blurred copy of the image, see :func:`rise_blur`) and restores the
most salient pixels first.
The metric is the area under that curve against the fraction of pixels changed,
by the trapezoid rule on :math:`[0, 1]`. With probability scores
both lie in :math:`[0, 1]`; higher insertion and lower deletion are better.

The unperturbed image is scored once and supplies the first point of the
deletion curve and the last point of the insertion curve.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

import torch
import torch.nn.functional as F
from captum._utils.typing import TargetType
from torch import Tensor

from captum_infocam._validation import check_choice, check_int
from captum_infocam.metrics._common import (
    ScoreFunction,
    TargetScorer,
    higher_is_better,
    image_input,
    metric_maps,
    removal_ranks,
)

__all__ = ["SUBSTRATES", "deletion_auc", "insertion_auc", "rise_blur", "rise_kernel"]

Substrate = Union[str, Tensor, Callable[[Tensor], Tensor]]


def rise_kernel(size: int = 11, sigma: float = 5.0) -> Tensor:
    r"""RISE's blur kernel ``(size, size)``, float64: ``gkern(11, 5)`` of its ``evaluation.py``.

    RISE makes it with ``scipy.ndimage.gaussian_filter(impulse, sigma)`` on a
    ``size x size`` array holding a unit impulse at its centre. SciPy's filter
    is a Gaussian truncated at ``4 sigma`` (41 taps for sigma 5), applied along
    each axis with ``mode="reflect"``: the tails that fall outside the array are
    folded back into it. The kernel is therefore the outer product of a 1-D
    profile that sums to 1 and is flatter than a Gaussian of ``sigma``. Computed
    here in closed form, without SciPy.
    """
    radius = int(4.0 * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    gaussian = torch.exp(-0.5 * offsets.square() / sigma**2)
    gaussian /= gaussian.sum()
    # Output position i reads the impulse wherever i + offset reflects onto the centre
    # (reflection about the array's edges: period 2 * size).
    positions = (torch.arange(size)[:, None] + offsets[None, :].long()) % (2 * size)
    reflected = torch.where(positions < size, positions, 2 * size - 1 - positions)
    profile = (gaussian * (reflected == size // 2)).sum(1)
    return profile[:, None] * profile[None, :]


def rise_blur(x: Tensor) -> Tensor:
    """RISE's insertion substrate: each channel convolved with :func:`rise_kernel`, zero-padded.

    Exactly RISE's ``conv2d(x, gkern(11, 5), padding=5)`` (its kernel blurs each
    of the three channels on its own); here any number of channels. Zero
    padding darkens the image's borders, as in RISE.

    Args:
        x (Tensor): images ``(N, C, H, W)``.

    Returns:
        Tensor of the same shape, dtype and device.
    """
    kernel = rise_kernel().to(device=x.device, dtype=x.dtype)
    channels = x.shape[1]
    weight = kernel.expand(channels, 1, *kernel.shape)
    return F.conv2d(x, weight, padding=kernel.shape[-1] // 2, groups=channels)


#: Named substrates: functions of the image batch.
SUBSTRATES: dict[str, Callable[[Tensor], Tensor]] = {"blur": rise_blur, "zero": torch.zeros_like}


def _substrate(substrate: Substrate, x: Tensor) -> Tensor:
    if isinstance(substrate, str):
        check_choice("substrate", substrate, SUBSTRATES, alternatives="a tensor or a callable")
        substrate = SUBSTRATES[substrate]
    if callable(substrate) and not isinstance(substrate, Tensor):
        substrate = substrate(x)
    if not isinstance(substrate, Tensor):
        raise TypeError("substrate must be a name, a tensor, or a callable returning a tensor")
    try:
        return torch.broadcast_to(substrate.to(x), x.shape)
    except RuntimeError as error:
        raise ValueError(
            f"substrate of shape {tuple(substrate.shape)} does not broadcast to the inputs "
            f"{tuple(x.shape)}"
        ) from error


def _curve(
    forward_func: Callable[..., Tensor],
    inputs: Union[Tensor, tuple[Tensor, ...]],
    attributions: Tensor,
    target: TargetType,
    additional_forward_args: Any,
    n_steps: int,
    substrate: Substrate,
    score_fn: Union[str, ScoreFunction],
    max_examples_per_batch: Optional[int],
    seed: int,
    insert: bool,
) -> tuple[Tensor, Tensor]:
    """Returns ``(auc (N,), curve (N, n_steps + 1))``."""
    check_int("n_steps", n_steps, 1)
    check_int("seed", seed, 0)
    x = image_input(inputs)
    num_examples, height, width = len(x), x.shape[-2], x.shape[-1]
    pixels = height * width
    maps = metric_maps(attributions, (height, width), num_examples, x.device).flatten(1)
    base = _substrate(substrate, x)
    scorer = TargetScorer(
        forward_func, x, target, additional_forward_args, score_fn, max_examples_per_batch
    )
    rank = removal_ranks(maps, True, seed)
    counts = torch.tensor(
        [round(step * pixels / n_steps) for step in range(n_steps + 1)], device=x.device
    )
    # Insertion scores steps 0..n-1 (step n is the image); deletion steps 1..n.
    first_step = 0 if insert else 1

    def perturbed(jobs: Tensor) -> tuple[Tensor, Tensor]:
        examples = jobs // n_steps
        changed = rank[examples] < counts[jobs % n_steps + first_step, None]
        changed = changed.view(-1, 1, height, width)
        image, other = x[examples], base[examples]
        batch = torch.where(changed, image, other) if insert else torch.where(changed, other, image)
        return batch, examples

    original = scorer.original()
    scores = scorer.score(num_examples * n_steps, perturbed).view(num_examples, n_steps)
    ends = original[:, None]
    curve = torch.cat((scores, ends), 1) if insert else torch.cat((ends, scores), 1)
    fractions = counts.to(curve.dtype) / pixels
    return torch.trapezoid(curve, fractions, dim=1), curve


_ARGS_DOC = """
    Args:
        forward_func (Callable): the model.
        inputs (Tensor): images ``(N, C, H, W)``.
        attributions (Tensor): maps ``(N, 1, h, w)``, ``(N, C, h, w)`` or ``(N, h, w)``.
        target (int, tuple, Tensor, or list, optional): Captum target.
        additional_forward_args (Any, optional): further arguments of the model.
        n_steps (int, optional): number of equal steps from 0 to all pixels.
            Default: 50
        substrate (str, Tensor or Callable, optional): what replaces the image:
            ``"blur"``, ``"zero"``, a tensor broadcastable to the inputs, or a
            function of the inputs.
        score_fn (str or Callable, optional): ``"softmax"``, ``"sigmoid"``,
            ``"identity"`` or a callable. Default: ``"softmax"``
        max_examples_per_batch (int, optional): most images per forward pass.
            Default: ``N``
        return_curve (bool, optional): also return the curve ``(N, n_steps + 1)``.
            Default: False
        seed (int, optional): seed of the order in which tied pixels are changed.
            Default: 0

    Returns:
        Tensor ``(N,)`` (and the curve) on the inputs' device.
"""


@higher_is_better(True)
def insertion_auc(
    forward_func: Callable[..., Tensor],
    inputs: Union[Tensor, tuple[Tensor, ...]],
    attributions: Tensor,
    target: TargetType = None,
    additional_forward_args: Any = None,
    n_steps: int = 50,
    substrate: Substrate = "blur",
    score_fn: Union[str, ScoreFunction] = "softmax",
    max_examples_per_batch: Optional[int] = None,
    return_curve: bool = False,
    seed: int = 0,
) -> Union[Tensor, tuple[Tensor, Tensor]]:
    auc, curve = _curve(
        forward_func,
        inputs,
        attributions,
        target,
        additional_forward_args,
        n_steps,
        substrate,
        score_fn,
        max_examples_per_batch,
        seed,
        insert=True,
    )
    return (auc, curve) if return_curve else auc


@higher_is_better(False)
def deletion_auc(
    forward_func: Callable[..., Tensor],
    inputs: Union[Tensor, tuple[Tensor, ...]],
    attributions: Tensor,
    target: TargetType = None,
    additional_forward_args: Any = None,
    n_steps: int = 50,
    substrate: Substrate = "zero",
    score_fn: Union[str, ScoreFunction] = "softmax",
    max_examples_per_batch: Optional[int] = None,
    return_curve: bool = False,
    seed: int = 0,
) -> Union[Tensor, tuple[Tensor, Tensor]]:
    auc, curve = _curve(
        forward_func,
        inputs,
        attributions,
        target,
        additional_forward_args,
        n_steps,
        substrate,
        score_fn,
        max_examples_per_batch,
        seed,
        insert=False,
    )
    return (auc, curve) if return_curve else auc


insertion_auc.__doc__ = (
    "Insertion AUC: the score as the most salient pixels are restored "
    "onto the substrate (blurred image by default); higher is better.\n" + _ARGS_DOC
)
deletion_auc.__doc__ = (
    "Deletion AUC: the score as the most salient pixels are replaced "
    "by the substrate (zeros by default); lower is better.\n" + _ARGS_DOC
)
