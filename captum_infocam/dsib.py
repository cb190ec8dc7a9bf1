r"""Dual-Stream Information Bottleneck (DSIB): the fit that decides InfoCAM's weights.

What the InfoCAM paper's abstract states: two latent variables split the
activations ``A`` of a layer into a discriminative stream and a task-irrelevant
noise stream by variational inference, and maximising the mutual information
between the discriminative stream and the prediction assigns the weights of the
feature maps. No gradient of the output with respect to ``A`` enters the weights.

Everything below is this package's concrete formulation (the abstract gives no
formulas), written as pure tensor functions:

* gates :math:`\lambda = \sigma(\alpha) \in (0, 1)^{B \times C}`, one per sample
  and channel, with :math:`\alpha` initialised high (every channel passes);
* a prior / noise :math:`\epsilon \sim \mathcal{N}(\mu, \sigma^2)` per channel;
* two reparameterised streams, ``K`` draws each:

  .. math::
      Z_d = \lambda A + (1 - \lambda)\,\epsilon, \qquad
      Z_n = (1 - \lambda) A + \lambda\,\epsilon';

* the posterior of the discriminative stream,
  :math:`q(Z_d \mid A) = \mathcal{N}(\lambda A + (1-\lambda)\mu,\,(1-\lambda)^2\sigma^2)`,
  against the prior :math:`r(Z) = \mathcal{N}(\mu, \sigma^2)`. With
  :math:`A' = (A - \mu)/\sigma`:

  .. math::
      \mathrm{KL}(q \,\|\, r)
      = \log\frac{\sigma}{(1-\lambda)\sigma}
        + \frac{(1-\lambda)^2\sigma^2 + \lambda^2 (A-\mu)^2}{2\sigma^2} - \frac12
      = \tfrac12\big(\lambda^2 A'^2 + (1-\lambda)^2 - \log (1-\lambda)^2 - 1\big);

* the loss, minimised over :math:`\alpha` with Adam, summed over samples so that
  every sample's fit is independent of the others in its batch:

  .. math::
      \mathcal{L} = \underbrace{-\log p(y \mid Z_d)}_{\text{bound on } I(Z_d;Y)}
      + \beta\,\overline{\mathrm{KL}}
      + \gamma\,\underbrace{[-\log(1 - p(y \mid Z_n))]}_{\text{noise stream
        carries no evidence}}.

The noise draws of one step are shared by all samples of a batch, so the fit of
a sample does not depend on which other samples share its batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "READOUTS",
    "DSIBFit",
    "dual_streams",
    "fit_dsib",
    "is_collapsed",
    "kl_divergence",
    "log1mexp",
    "rows_per_example",
]

#: A fit whose gates are all below this value closed every channel.
CLOSED_GATE = 0.1
#: A fit whose gates are all above this value removed no channel.
OPEN_GATE = 0.9
#: A fit whose gates all lie within this distance of each other (a thousandth of
#: the gates' range (0, 1)) told no channel from another: its map is the channel
#: sum, scaled, whatever the target.
EQUAL_GATES = 1e-3


@dataclass(frozen=True)
class DSIBFit:
    r"""What one DSIB fit found, one row per sample; all tensors stay on the device.

    Attributes:
        gate_logits (Tensor): :math:`\alpha`, shape ``(B, C)``, after the last step.
        gates (Tensor): :math:`\lambda = \sigma(\alpha)`, shape ``(B, C)``.
        bits (Tensor): information each channel transmits,
            :math:`\sum_{h,w} \mathrm{KL}_{c,h,w} / \ln 2`, shape ``(B, C)``.
        information (Tensor): the per-position information summed over channels,
            :math:`\sum_c \mathrm{KL}_{c,h,w} / \ln 2`, shape ``(B, 1, H, W)``.
        loss_trace (Tensor): the total loss of each step, shape ``(T, B)``.
        cross_entropy (Tensor): :math:`-\log p(y \mid Z_d)` averaged over the
            draws of the last step, shape ``(B,)``.
        kl (Tensor): the mean KL per element at the last step, shape ``(B,)``.
        noise_loss (Tensor): :math:`-\log(1 - p(y \mid Z_n))` averaged over the
            draws of the last step, shape ``(B,)``.
        p_discriminative (Tensor): :math:`p(y \mid Z_d)` averaged over the draws
            of the last step, shape ``(B,)``.
        p_noise (Tensor): :math:`p(y \mid Z_n)` averaged over the draws of the
            last step, shape ``(B,)``: low when the removed channels no longer
            predict the target.
        collapsed (Tensor): ``True`` where every gate closed
            (:math:`\lambda < 0.1`), none moved (:math:`\lambda > 0.9`), or,
            with more than one channel, every gate ended equal
            (:math:`\max_c \lambda_c - \min_c \lambda_c < 10^{-3}`), shape
            ``(B,)``; see :func:`is_collapsed`.
        zero_map (Tensor, optional): set by :class:`~captum_infocam.InfoCAM`:
            ``True`` where the returned map is zero everywhere, shape ``(B,)``.
            That is a valid answer (no position carries evidence that survives
            the read-out and ReLU, e.g. a layer of zeros), not an error.
    """

    gate_logits: Tensor
    gates: Tensor
    bits: Tensor
    information: Tensor
    loss_trace: Tensor
    cross_entropy: Tensor
    kl: Tensor
    noise_loss: Tensor
    p_discriminative: Tensor
    p_noise: Tensor
    collapsed: Tensor
    zero_map: Optional[Tensor] = None


def rows_per_example(n_samples: int) -> int:
    r"""Rows each sample takes in the batches the fit passes to ``log_prob``: ``2K``.

    The rows are sample-major, as :func:`dual_streams` flattens them: sample ``b``
    owns rows ``b * 2K`` to ``(b + 1) * 2K - 1``, its ``K`` discriminative draws
    first, then its ``K`` noise draws. A per-sample tensor (the target, a value
    the model needs beside the layer's) lines up with the rows after
    ``repeat_interleave(rows_per_example(K), dim=0)``.
    """
    return 2 * n_samples


def is_collapsed(gates: Tensor) -> Tensor:
    r"""Where a fit's gates ``(B, C)`` carry no ranking of the channels, shape ``(B,)``.

    A fit collapsed when every gate closed (all below :data:`CLOSED_GATE`), none
    moved (all above :data:`OPEN_GATE`), or, for more than one channel, every
    gate ended equal (within :data:`EQUAL_GATES`).
    """
    low, high = gates.amin(1), gates.amax(1)
    equal = (high - low < EQUAL_GATES) & (gates.shape[1] > 1)
    return (high < CLOSED_GATE) | (low > OPEN_GATE) | equal


def log1mexp(log_p: Tensor) -> Tensor:
    r"""Computes :math:`\log(1 - e^{x})` stably for :math:`x \le 0`.

    Values of ``log_p`` above :math:`-10^{-7}` (a probability of one up to
    rounding) are clamped there, so the result is finite.
    """
    log_p = log_p.clamp(max=-1e-7)
    return torch.where(
        log_p > -math.log(2.0),
        torch.log(-torch.expm1(log_p)),
        torch.log1p(-torch.exp(log_p)),
    )


def kl_divergence(alpha: Tensor, standardized: Tensor) -> Tensor:
    r"""Closed-form :math:`\mathrm{KL}(q(Z_d \mid A) \,\|\, r)` per element.

    Args:
        alpha (Tensor): gate logits, shape ``(B, C)``.
        standardized (Tensor): :math:`A' = (A - \mu) / \sigma`, shape
            ``(B, C, H, W)``.

    Returns:
        Tensor of shape ``(B, C, H, W)``, in nats, non-negative.
    """
    gate = torch.sigmoid(alpha)[..., None, None]
    # log (1 - λ) = log σ(-α), exact even where λ rounds to 1.
    log_keep_noise = F.logsigmoid(-alpha)[..., None, None]
    return 0.5 * (
        gate.square() * standardized.square() + (1.0 - gate).square() - 2.0 * log_keep_noise - 1.0
    )


def dual_streams(
    activations: Tensor, gates: Tensor, mean: Tensor, std: Tensor, noise: Tensor
) -> Tensor:
    r"""Builds both streams for every sample and draw in one tensor.

    Args:
        activations (Tensor): ``A``, shape ``(B, C, H, W)``.
        gates (Tensor): :math:`\lambda`, shape ``(B, C)``.
        mean (Tensor): prior mean, broadcastable to ``(B, C, 1, 1)``.
        std (Tensor): prior standard deviation, broadcastable to ``(B, C, 1, 1)``.
        noise (Tensor): standard normal draws, shape ``(2, K, C, H, W)``;
            ``noise[0]`` feeds the discriminative stream, ``noise[1]`` the
            noise stream.

    Returns:
        Tensor of shape ``(B, 2, K, C, H, W)``: ``[:, 0]`` holds
        :math:`Z_d = \lambda A + (1-\lambda)\epsilon`, ``[:, 1]`` holds
        :math:`Z_n = (1-\lambda) A + \lambda \epsilon'`.
    """
    keep = torch.stack((gates, 1.0 - gates), dim=1)[:, :, None, :, None, None]
    # keep·A + (1-keep)·(μ + σ·n): the noise-free part has no draw dimension, so
    # the (B, 2, K, C, H, W) result comes from one fused multiply-add.
    base = keep * activations[:, None, None] + (1.0 - keep) * mean[:, None, None]
    return torch.addcmul(base, (1.0 - keep) * std[:, None, None], noise[None])


def fit_dsib(
    activations: Tensor,
    log_prob: Callable[[Tensor], Tensor],
    mean: Tensor,
    std: Tensor,
    *,
    n_samples: int,
    steps: int,
    lr: float,
    beta: float,
    gamma: float,
    alpha_init: float,
    generator: torch.Generator | None = None,
) -> DSIBFit:
    r"""Fits the per-sample, per-channel gates of the DSIB with Adam.

    All samples and all draws of a step go through ``log_prob`` as one batch; no
    value is read back to the host inside the loop.

    Args:
        activations (Tensor): ``A``, shape ``(B, C, H, W)``, without gradient.
        log_prob (Callable): maps a batch ``Z`` of shape ``(B * 2K, C, H, W)``,
            ordered as :func:`rows_per_example` describes, to
            :math:`\log p(y \mid Z)` of shape ``(B * 2K,)``.
        mean (Tensor): prior mean, broadcastable to ``(B, C, 1, 1)``.
        std (Tensor): prior standard deviation, positive, broadcastable to
            ``(B, C, 1, 1)``.
        n_samples (int): ``K``, noise draws per stream and step.
        steps (int): ``T``, Adam steps.
        lr (float): Adam's learning rate on :math:`\alpha`.
        beta (float): weight of the mean KL (the compression).
        gamma (float): weight of the noise-stream term.
        alpha_init (float): initial gate logit.
        generator (torch.Generator, optional): source of the noise draws, on
            the device of ``activations``. Default: the global generator.

    Returns:
        :class:`DSIBFit`.
    """
    batch, channels = activations.shape[:2]
    standardized = (activations - mean) / std
    alpha = torch.full(
        (batch, channels),
        float(alpha_init),
        dtype=activations.dtype,
        device=activations.device,
        requires_grad=True,
    )
    optimizer = torch.optim.Adam([alpha], lr=lr)
    trace = []
    for _ in range(steps):
        # Drawn in float32 whatever the fit's dtype, so a float64 fit sees the same noise.
        noise = torch.randn(
            (2, n_samples, *activations.shape[1:]),
            generator=generator,
            device=activations.device,
        ).to(activations.dtype)
        streams = dual_streams(activations, torch.sigmoid(alpha), mean, std, noise)
        log_p = log_prob(streams.flatten(0, 2)).view(batch, 2, n_samples)
        cross_entropy = -log_p[:, 0].mean(1)
        noise_loss = -log1mexp(log_p[:, 1]).mean(1)
        kl = kl_divergence(alpha, standardized).mean((1, 2, 3))
        loss = cross_entropy + beta * kl + gamma * noise_loss
        alpha.grad = torch.autograd.grad(loss.sum(), alpha)[0]
        optimizer.step()
        trace.append(loss.detach())

    alpha = alpha.detach()
    gates = torch.sigmoid(alpha)
    kl_bits = kl_divergence(alpha, standardized) / math.log(2.0)
    p = log_p.detach().exp()
    return DSIBFit(
        gate_logits=alpha,
        gates=gates,
        bits=kl_bits.sum((2, 3)),
        information=kl_bits.sum(1, keepdim=True),
        loss_trace=torch.stack(trace),
        cross_entropy=cross_entropy.detach(),
        kl=kl.detach(),
        noise_loss=noise_loss.detach(),
        p_discriminative=p[:, 0].mean(1),
        p_noise=p[:, 1].mean(1),
        collapsed=is_collapsed(gates),
    )


def _gates_readout(fit: DSIBFit, activations: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    return fit.gates[..., None, None] * activations


def _bits_readout(fit: DSIBFit, activations: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    return fit.bits[..., None, None] * activations


def _standardized_readout(fit: DSIBFit, activations: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    return fit.gates[..., None, None] * (activations - mean) / std


def _information_readout(fit: DSIBFit, activations: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    # Per-element information of each channel, in bits: outside the abstract's
    # "weights of the feature maps", offered as a separate option.
    standardized = (activations - mean) / std
    return kl_divergence(fit.gate_logits, standardized) / math.log(2.0)


#: How a fitted bottleneck becomes per-channel maps ``(B, C, H, W)`` (summed over
#: channels for the InfoCAM map): ``"gates"`` :math:`\lambda_c A_c`, ``"bits"``
#: :math:`\mathrm{bits}_c A_c`, ``"standardized"``
#: :math:`\lambda_c (A_c - \mu_c)/\sigma_c`, ``"information"`` the per-element
#: KL of each channel in bits.
READOUTS: dict[str, Callable[[DSIBFit, Tensor, Tensor, Tensor], Tensor]] = {
    "gates": _gates_readout,
    "bits": _bits_readout,
    "standardized": _standardized_readout,
    "information": _information_readout,
}
