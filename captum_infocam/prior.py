r"""The prior :math:`\mathcal{N}(\mu, \sigma^2)` of the DSIB noise, per channel.

The choice of :math:`\mu, \sigma` is this package's (the paper's abstract is
silent). One pitfall decides it: with :math:`\mu` set to a sample's *own*
spatial mean, a global-average-pooling head sees
:math:`\bar Z_d = \lambda \bar A + (1-\lambda)\bar A = \bar A` whatever the
gates, so they are unidentifiable and the fit collapses. The options here all
avoid it:

* ``"zero"``: :math:`\mu = 0` and :math:`\sigma_{b,c}` the root mean square of
  channel ``c`` of sample ``b`` over positions. It needs no data set and keeps
  the fit of a sample independent of its batch.
* ``"batch"``: :math:`\mu_c, \sigma_c` over the batch and positions. The fit of a
  sample then depends on the rest of its batch.
* :class:`PriorStatistics`: :math:`\mu_c, \sigma_c` of a reference data set,
  from :meth:`captum_infocam.InfoCAM.fit_statistics`.

Degenerate channels are never divided by zero: every :math:`\sigma` is floored
at ``1e-3`` times the mean :math:`\sigma` over channels, and at ``1e-12``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import torch
from torch import Tensor

__all__ = ["PRIORS", "PriorStatistics", "RunningMoments", "prior_moments"]

_RELATIVE_STD_FLOOR = 1e-3
_ABSOLUTE_STD_FLOOR = 1e-12


@dataclass(frozen=True)
class PriorStatistics:
    """Per-channel mean and standard deviation of a layer over a data set.

    Attributes:
        mean (Tensor): shape ``(C,)``.
        std (Tensor): shape ``(C,)``, non-negative.
        count (int): number of values (samples times positions) per channel.
    """

    mean: Tensor
    std: Tensor
    count: int


class RunningMoments:
    """Accumulates per-channel moments of ``(B, C, H, W)`` maps in float64."""

    def __init__(self) -> None:
        self.count = 0
        self._sum: Tensor | None = None
        self._sum_sq: Tensor | None = None

    def update(self, maps: Tensor) -> None:
        values = maps.detach().to(torch.float64).transpose(0, 1).flatten(1)
        if self._sum is None or self._sum_sq is None:
            self._sum = values.sum(1)
            self._sum_sq = values.square().sum(1)
        else:
            self._sum = self._sum + values.sum(1)
            self._sum_sq = self._sum_sq + values.square().sum(1)
        self.count += values.shape[1]

    def statistics(self, dtype: torch.dtype = torch.float32) -> PriorStatistics:
        if self._sum is None or self._sum_sq is None:
            raise ValueError("no activations were seen: the data set is empty")
        mean = self._sum / self.count
        variance = (self._sum_sq / self.count - mean.square()).clamp_min(0.0)
        return PriorStatistics(mean=mean.to(dtype), std=variance.sqrt().to(dtype), count=self.count)


def _floor(std: Tensor) -> Tensor:
    relative = _RELATIVE_STD_FLOOR * std.mean(dim=1, keepdim=True)
    return std.maximum(relative).clamp_min(_ABSOLUTE_STD_FLOOR)


def _zero_prior(activations: Tensor) -> tuple[Tensor, Tensor]:
    rms = activations.square().mean((2, 3), keepdim=True).sqrt()
    return torch.zeros_like(rms), _floor(rms)


def _batch_prior(activations: Tensor) -> tuple[Tensor, Tensor]:
    std, mean = torch.std_mean(activations, dim=(0, 2, 3), keepdim=True, correction=0)
    return mean, _floor(std)


#: Named priors computed from the activations being explained.
PRIORS = {"zero": _zero_prior, "batch": _batch_prior}

PriorType = Union[str, PriorStatistics]


def prior_moments(prior: PriorType, activations: Tensor) -> tuple[Tensor, Tensor]:
    """Returns ``(mean, std)``, each broadcastable to ``activations`` ``(B, C, H, W)``.

    Args:
        prior (str or PriorStatistics): a key of :data:`PRIORS` or data-set
            statistics with one entry per channel.
        activations (Tensor): the maps being explained, shape ``(B, C, H, W)``.
    """
    if isinstance(prior, PriorStatistics):
        channels = activations.shape[1]
        if prior.mean.shape != (channels,) or prior.std.shape != (channels,):
            raise ValueError(
                f"prior statistics have shape {tuple(prior.mean.shape)} but the "
                f"layer has {channels} channels"
            )
        like = {"dtype": activations.dtype, "device": activations.device}
        mean = prior.mean.to(**like).view(1, channels, 1, 1)
        std = prior.std.to(**like).view(1, channels, 1, 1)
        return mean, _floor(std)
    return PRIORS[prior](activations)
