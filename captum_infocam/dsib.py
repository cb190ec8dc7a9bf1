r"""Dual-Stream Information Bottleneck (DSIB): the fit that decides InfoCAM's weights.

What the InfoCAM paper's abstract states: two latent variables split the
activations ``A`` of a layer into a discriminative stream and a task-irrelevant
noise stream by variational inference, and maximising the mutual information
between the discriminative stream and the prediction assigns the weights of the
feature maps. No gradient of the output with respect to ``A`` enters the weights.

Everything below is this package's concrete formulation (the abstract gives no
formulas), written as pure tensor functions.

**One bottleneck.**

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
      = \tfrac12\big(\lambda^2 A'^2 + (1-\lambda)^2 - \log (1-\lambda)^2 - 1\big),

  whose mean over positions needs only the per-channel mean of :math:`A'^2`;
* the evidence for the explained event :math:`e` (the target :math:`y`) read
  as its log-odds :math:`\ell_e(Z) = \log p(e \mid Z) - \log(1 - p(e \mid Z))`
  (:mod:`captum_infocam.likelihood`; for a softmax,
  :math:`\ell_y = z_y - \log\sum_{k \ne y} e^{z_k}`);
* the loss, minimised over :math:`\alpha` with Adam, summed over samples so that
  every sample's fit is independent of the others in its batch:

  .. math::
      \mathcal{L} = D\big(\ell_e(Z_d)\big) + \beta\,\overline{\mathrm{KL}}
      + \gamma\,\underbrace{\log\big(1 + e^{\ell_e(Z_n)}\big)}_{-\log(1 - p(e \mid Z_n)):
        \text{ noise stream carries no evidence}},

  with the discriminative term either the cross-entropy
  :math:`D(\ell) = \log(1 + e^{-\ell}) = -\log p(e \mid Z_d)`
  (``evidence="log_likelihood"``, the variational lower bound on
  :math:`I(Z_d; Y)`), or the log-odds themselves, :math:`D(\ell) = -\ell`
  (``evidence="log_odds"``).

**Why log-odds.** The cross-entropy is :math:`\log(1 + e^{-\ell})`: its slope
:math:`-(1 - p)` vanishes when the model is confident. On the benchmark's
ResNet (one-object images, :math:`p(y) \approx 0.9997`) the cross-entropy's
gradient on the gate logits at the first step is about :math:`2 \cdot 10^{-7}`
against :math:`8 \cdot 10^{-3}` for :math:`\beta\,\overline{\mathrm{KL}}`, so the
compression alone moves the gates (Adam gives every gate the same step) until
the prediction starts to fall: the fit keeps a minimal set of channels. The
log-odds have slope 1 at any confidence: a channel stays open while the evidence
it carries, in nats of log-odds (I. J. Good's weight of evidence, up to the
prior's constant), outweighs the information it costs. For a sample whose
prediction is not saturated the two terms agree to first order.

**Evidence for and evidence against (``contrast="complement"``).** Gates in
:math:`(0, 1)` only add: a positive combination of a layer's object-shaped
channels outlines every object, whatever the classifier does with them (a
randomised classifier leaves such a map unchanged). The complement fit is a
second bottleneck, fitted in the same batched pass, for the complementary event
:math:`\neg y` ("the model's answer is not :math:`y`"), whose log-odds are
:math:`\ell_{\neg y} = -\ell_y`: its gates :math:`\lambda^-` keep the channels
that carry evidence *against* :math:`y` (the other objects of a scene), and its
noise stream must carry no evidence against :math:`y`. The channel weights are
:math:`w_c = \lambda_c^+ - \lambda_c^-`. The complementary event needs no choice
of a competing class and applies to any output (softmax classes, sigmoid labels,
a single score). A competitor's own bottleneck (the strongest other class
:math:`j`, maximising :math:`\log p(j \mid Z)`) was measured and not kept: on a
one-object image it makes :math:`j` win out of the target object's own
features (median :math:`p(j \mid Z_d)` rose from :math:`2 \cdot 10^{-4}` to
0.77), and subtracting those features cut holes into the target's map.

The noise draws of one step are shared by all samples and fits of a batch, so
the fit of a sample does not depend on which other samples share its batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.profiler import record_function
from tqdm import tqdm

from captum_infocam._validation import check_choice, check_int, check_real
from captum_infocam.likelihood import Likelihood, check_likelihood
from captum_infocam.prior import PRIORS, PriorStatistics, PriorType

__all__ = [
    "AUTOCAST_DTYPES",
    "CONTRASTS",
    "EVIDENCE",
    "FIT_DEFAULTS",
    "GATE_TRAVEL",
    "READOUTS",
    "DSIBFit",
    "DSIBSettings",
    "channel_maps",
    "collapse_modes",
    "dual_streams",
    "fit_dsib",
    "gate_gradient",
    "is_collapsed",
    "kl_divergence",
    "mean_kl",
    "rows_per_example",
    "without_negligible_slope",
]

#: A fit whose gates are all below this value closed every channel.
CLOSED_GATE = 0.1
#: A fit whose gates are all above this value removed no channel.
OPEN_GATE = 0.9
#: A fit whose gates all lie within this distance of each other (a thousandth of
#: the gates' range (0, 1)) told no channel from another: its map is the channel
#: sum, scaled, whatever the target.
EQUAL_GATES = 1e-3
#: How the discriminative term reads the evidence: ``-ℓ`` or ``-log p = log(1 + e^{-ℓ})``.
EVIDENCE = ("log_odds", "log_likelihood")
#: Which bottlenecks a call fits: the target's and its complement's, or the target's alone.
CONTRASTS = ("complement", "none")
#: The fit's settings that depend on ``contrast`` when left at ``None``. The complement's
#: were chosen on seed-1 benchmark items (docs/benchmark.md): 1 draw and 7 steps give the
#: maps of 2 draws and 10 steps within one standard error of every metric, in 0.35 of the
#: suffix passes, with one paired loss (GPG 0.021 lower on VGG's middle-layer grids); 5 or
#: 6 steps lost more there. ``"none"`` keeps the first release's fit.
FIT_DEFAULTS: dict[str, dict[str, Any]] = {
    "complement": dict(n_samples=1, steps=7, evidence="log_odds"),
    "none": dict(n_samples=4, steps=10, evidence="log_likelihood"),
}
#: How far Adam can move a gate logit over a fit with the default learning rate
#: ``GATE_TRAVEL / steps``: from ``alpha_init = 5`` (gate 0.993) down to -5 (0.007).
GATE_TRAVEL = 10.0
#: The reduced precisions ``autocast_dtype`` accepts for the network after the layer.
AUTOCAST_DTYPES = (torch.bfloat16, torch.float16)


@dataclass(frozen=True)
class DSIBSettings:
    r"""Every setting of InfoCAM's fit and read-out, checked when the object is made.

    Pass one to :meth:`~captum_infocam.InfoCAM.attribute` as ``settings``;
    :func:`dataclasses.replace` gives a changed copy, checked again. The settings
    left at ``None`` take the default of the chosen ``contrast``
    (:data:`FIT_DEFAULTS`, and ``lr`` = :data:`GATE_TRAVEL` / ``steps``) when the
    fit runs (:meth:`resolved`), so ``DSIBSettings(contrast="none")`` alone is the
    first release's fit and ``replace(settings, steps=20)`` also changes ``lr``.

    Attributes:
        contrast (str): ``"complement"``: a second bottleneck, for the evidence
            against the target (its complementary event), is fitted in the same
            pass and its gates are subtracted, :math:`w_c = \lambda^+_c - \lambda^-_c`;
            ``"none"``: the single fit, :math:`w_c = \lambda_c`.
            Default: ``"complement"``
        n_samples (int): ``K``, noise draws per stream and step.
            Default: 1 with the complement (2 bottlenecks x 2 streams x 1 draw:
            4 rows per example and step), 4 with ``contrast="none"``
        steps (int): ``T``, Adam steps of the fit.
            Default: 7 with the complement, 10 with ``contrast="none"``
        lr (float): Adam's learning rate on the gate logits. Adam moves every
            logit by about ``lr`` per step, whatever its gradient's size, so
            ``lr * steps`` is how far a logit can travel.
            Default: :data:`GATE_TRAVEL` / ``steps``
        beta (float): weight of the compression (mean KL) term. Default: 1.0
        gamma (float): weight of the noise-stream term. Default: 1.0
        alpha_init (float): initial gate logit (gates start at
            :math:`\sigma(\alpha_0)`). Default: 5.0
        evidence (str): the discriminative term of the loss: ``"log_odds"``
            (:math:`-\ell`, which does not saturate on confident predictions) or
            ``"log_likelihood"`` (the cross-entropy :math:`-\log p`).
            Default: ``"log_odds"`` with the complement, ``"log_likelihood"`` with
            ``contrast="none"``
        prior (str or PriorStatistics, optional): the noise prior, ``"zero"`` or
            ``"batch"`` (see :mod:`captum_infocam.prior`) or data-set statistics.
            ``None``: the statistics of :meth:`~captum_infocam.InfoCAM.fit_statistics`
            if it was called, else ``"zero"``. Default: None
        readout (str): how the fit becomes channel maps: ``"gates"``
            (:math:`\lambda_c A_c`), ``"bits"``, ``"standardized"`` or
            ``"information"`` (see :data:`READOUTS`); with the complement, its
            read-out is subtracted. Default: ``"gates"``
        likelihood (str or Callable): how the output becomes :math:`\log p(y)`:
            ``"softmax"`` over dimension 1, ``"sigmoid"`` per output, ``"auto"``
            (sigmoid for one score per example, ``(N,)`` or ``(N, 1)``, softmax
            otherwise), or a callable ``(output, index) -> log p`` (see
            :mod:`captum_infocam.likelihood`). For a multi-label output, pass
            ``"sigmoid"``. Default: ``"auto"``
        seed (int, optional): seed of the noise draws (and of any randomness
            inside the model during the call); the caller's random state is left
            unchanged. ``None`` draws from the global generator. Default: 0
        autocast_dtype (torch.dtype, optional): run the network after the layer
            in this reduced precision during the fit (``torch.autocast``):
            ``torch.bfloat16`` or ``torch.float16`` (CUDA). The activations, the
            gates and the read-out stay in full precision. ``None`` runs the fit
            in the layer's precision. Default: None

    Examples::

        >>> settings = DSIBSettings(beta=2.0, readout="bits")
        >>> attr = cam.attribute(x, target=y, settings=settings)
        >>> longer = dataclasses.replace(settings, steps=20)  # lr: 10 / 20
        >>> longer.resolved().lr
        0.5
    """

    contrast: str = "complement"
    n_samples: Optional[int] = None
    steps: Optional[int] = None
    lr: Optional[float] = None
    beta: float = 1.0
    gamma: float = 1.0
    alpha_init: float = 5.0
    evidence: Optional[str] = None
    prior: Optional[PriorType] = None
    readout: str = "gates"
    likelihood: Union[str, Likelihood] = "auto"
    seed: Optional[int] = 0
    autocast_dtype: Optional[torch.dtype] = None

    def __post_init__(self) -> None:
        values = self._filled()
        check_int("n_samples", values["n_samples"], 1)
        check_real("lr", values["lr"], 0.0, strict=True)
        check_real("beta", self.beta, 0.0)
        check_real("gamma", self.gamma, 0.0)
        check_real("alpha_init", self.alpha_init, float("-inf"))
        check_choice("evidence", values["evidence"], EVIDENCE)
        if self.prior is not None and not isinstance(self.prior, PriorStatistics):
            check_choice("prior", self.prior, PRIORS)
        check_choice("readout", self.readout, READOUTS)
        check_likelihood(self.likelihood)
        if self.seed is not None:
            check_int("seed", self.seed, 0)
        if self.autocast_dtype not in (None, *AUTOCAST_DTYPES):
            raise TypeError(
                f"autocast_dtype must be None, torch.bfloat16 or torch.float16, "
                f"got {self.autocast_dtype!r}"
            )

    def resolved(self) -> DSIBSettings:
        """A copy with the defaults that depend on ``contrast`` and ``steps`` filled in."""
        return replace(self, **self._filled())

    def _filled(self) -> dict[str, Any]:
        check_choice("contrast", self.contrast, CONTRASTS)
        values = {name: getattr(self, name) for name in ("n_samples", "steps", "evidence", "lr")}
        for name, default in FIT_DEFAULTS[self.contrast].items():
            if values[name] is None:
                values[name] = default
        check_int("steps", values["steps"], 1)
        if values["lr"] is None:
            values["lr"] = GATE_TRAVEL / values["steps"]
        return values


@dataclass(frozen=True)
class DSIBFit:
    r"""What one DSIB fit found, one row per sample; all tensors stay on the device.

    The fit explains an event :math:`e`: the target :math:`y`, or for
    :attr:`complement` the complementary event :math:`\neg y`.

    Attributes:
        gate_logits (Tensor): :math:`\alpha`, shape ``(B, C)``, after the last step.
        gates (Tensor): :math:`\lambda = \sigma(\alpha)`, shape ``(B, C)``.
        bits (Tensor): information each channel transmits,
            :math:`\sum_{h,w} \mathrm{KL}_{c,h,w} / \ln 2`, shape ``(B, C)``.
        information (Tensor): the per-position information summed over channels,
            :math:`\sum_c \mathrm{KL}_{c,h,w} / \ln 2`, shape ``(B, 1, H, W)``.
        loss_trace (Tensor): the total loss of each step, shape ``(T, B)``.
        log_odds (Tensor): :math:`\ell_e(Z_d)` averaged over the draws of the
            last step, shape ``(B,)``.
        cross_entropy (Tensor): :math:`-\log p(e \mid Z_d)` averaged over the
            draws of the last step, shape ``(B,)``.
        kl (Tensor): the mean KL per element at the last step, shape ``(B,)``.
        noise_loss (Tensor): :math:`-\log(1 - p(e \mid Z_n))` averaged over the
            draws of the last step, shape ``(B,)``.
        p_discriminative (Tensor): :math:`p(e \mid Z_d)` averaged over the draws
            of the last step, shape ``(B,)``.
        p_noise (Tensor): :math:`p(e \mid Z_n)` averaged over the draws of the
            last step, shape ``(B,)``: low when the removed channels no longer
            predict the event.
        collapsed (Tensor): ``True`` where every gate closed
            (:math:`\lambda < 0.1`), none moved (:math:`\lambda > 0.9`), or,
            with more than one channel, every gate ended equal
            (:math:`\max_c \lambda_c - \min_c \lambda_c < 10^{-3}`), shape
            ``(B,)``; see :func:`is_collapsed`. For a complement fit, every gate
            closed is a valid answer (nothing in the sample is evidence against
            the target).
        zero_map (Tensor, optional): set by :class:`~captum_infocam.InfoCAM`:
            ``True`` where the returned map is zero everywhere, shape ``(B,)``.
            That is a valid answer (no position carries evidence that survives
            the read-out and ReLU, e.g. a layer of zeros), not an error.
        complement (DSIBFit, optional): the fit of the complementary event
            :math:`\neg y` (the evidence against the target), made in the same
            pass, with its own gates :math:`\lambda^-` and outcomes; ``None``
            for ``contrast="none"``.
    """

    gate_logits: Tensor
    gates: Tensor
    bits: Tensor
    information: Tensor
    loss_trace: Tensor
    log_odds: Tensor
    cross_entropy: Tensor
    kl: Tensor
    noise_loss: Tensor
    p_discriminative: Tensor
    p_noise: Tensor
    collapsed: Tensor
    zero_map: Optional[Tensor] = None
    complement: Optional[DSIBFit] = None


def rows_per_example(n_samples: int, complement: bool) -> int:
    r"""Rows each sample takes in the batches the fit passes to ``log_odds``: ``F * 2K``.

    The rows are sample-major: sample ``b`` owns rows ``b * F * 2K`` to
    ``(b + 1) * F * 2K - 1``, its ``F`` fits (the target's, then the
    complement's if ``complement``) one after the other, and within a fit its
    ``K`` discriminative draws first, then its ``K`` noise draws, as
    :func:`dual_streams` flattens them. A per-sample tensor (the target, a value
    the model needs beside the layer's) lines up with the rows after
    ``repeat_interleave(rows_per_example(K, complement), dim=0)``.
    """
    return (2 if complement else 1) * 2 * n_samples


def is_collapsed(gates: Tensor) -> Tensor:
    r"""Where a fit's gates ``(B, C)`` carry no ranking of the channels, shape ``(B,)``.

    A fit collapsed when every gate closed (all below :data:`CLOSED_GATE`), none
    moved (all above :data:`OPEN_GATE`), or, for more than one channel, every
    gate ended equal (within :data:`EQUAL_GATES`); see :func:`collapse_modes`.
    """
    closed, unmoved, equal = collapse_modes(gates)
    return closed | unmoved | equal


def collapse_modes(gates: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    r"""The ways a fit's gates ``(B, C)`` collapse, each ``(B,)`` and exclusive: every gate
    closed, no gate moved, and, neither, every gate equal (more than one channel)."""
    low, high = gates.amin(1), gates.amax(1)
    closed, unmoved = high < CLOSED_GATE, low > OPEN_GATE
    equal = (high - low < EQUAL_GATES) & (gates.shape[1] > 1) & ~closed & ~unmoved
    return closed, unmoved, equal


def kl_divergence(alpha: Tensor, standardized: Tensor) -> Tensor:
    r"""Closed-form :math:`\mathrm{KL}(q(Z_d \mid A) \,\|\, r)` per element.

    Args:
        alpha (Tensor): gate logits, shape ``(B, C)``.
        standardized (Tensor): :math:`A' = (A - \mu) / \sigma`, shape
            ``(B, C, H, W)``.

    Returns:
        Tensor of shape ``(B, C, H, W)``, in nats, non-negative.
    """
    return _kl(alpha, standardized.square(), (..., None, None))


def mean_kl(alpha: Tensor, mean_square: Tensor) -> Tensor:
    r"""The mean of :func:`kl_divergence` over channels and positions, per sample.

    Only :math:`\lambda^2 A'^2` varies with the position, so the mean needs only
    the per-channel mean of :math:`A'^2`.

    Args:
        alpha (Tensor): gate logits, shape ``(B, C)``.
        mean_square (Tensor): :math:`\overline{A'^2}` over positions, shape ``(B, C)``.

    Returns:
        Tensor of shape ``(B,)``, in nats.
    """
    return _kl(alpha, mean_square, (...,)).mean(1)


def _kl(alpha: Tensor, square: Tensor, expand: tuple) -> Tensor:
    gate = torch.sigmoid(alpha)[expand]
    # log (1 - λ) = log σ(-α), exact even where λ rounds to 1.
    log_keep_noise = F.logsigmoid(-alpha)[expand]
    return 0.5 * (gate.square() * square + (1.0 - gate).square() - 2.0 * log_keep_noise - 1.0)


def without_negligible_slope(x: Tensor) -> Tensor:
    r"""``x`` unchanged, without gradient where the slope of :math:`\mathrm{softplus}(x)`
    is negligible: :math:`\sigma(x) < \epsilon^2` (:math:`x < 2 \log \epsilon`, about
    -32 in float32, :math:`\epsilon` the dtype's machine epsilon).

    A loss term :math:`\mathrm{softplus}(x)` passes its slope :math:`\sigma(x)` to the
    whole backward of its row. Where :math:`x` lies between about -103 and -87 (a
    confident model's noise stream, say), :math:`\sigma(x)` is a subnormal float32,
    every value of the row's backward stays subnormal, and CPUs compute on subnormal
    floats 10 to 100 times slower: one such row in 16 made each convolution's
    backward about 7 times its forward at ResNet-50's ``layer3``. Cut, the row's
    backward carries exact zeros; what it would have added to the gate logits'
    gradient is below :math:`\epsilon^2` of what a unit slope adds, so the fit is
    unchanged at the dtype's precision.
    """
    cut = 2.0 * math.log(torch.finfo(x.dtype).eps)
    return torch.where(x < cut, x.detach(), x)


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
    # keep·A + (1-keep)·(μ + σ·n) in two fused multiply-adds: the noise-free part has
    # no draw dimension, and (1-keep)·μ, (1-keep)·σ have one value per channel.
    base = torch.addcmul((1.0 - keep) * mean[:, None, None], keep, activations[:, None, None])
    return torch.addcmul(base, (1.0 - keep) * std[:, None, None], noise[None])


def gate_gradient(
    stream_grads: Tensor, activations: Tensor, mean: Tensor, std: Tensor, noise: Tensor
) -> Tensor:
    r"""The gradient of a loss with respect to the gates, from its gradient on the streams.

    The chain rule through :func:`dual_streams`: with :math:`G = \partial
    \mathcal{L} / \partial Z` and :math:`U = A - \mu - \sigma n` (the
    activations' distance from a draw of the prior),
    :math:`\partial Z_d / \partial \lambda = U_d` and
    :math:`\partial Z_n / \partial \lambda = -U_n`, so

    .. math::
        \frac{\partial \mathcal{L}}{\partial \lambda_c}
        = \sum_k \sum_{h,w} \big(G_{d,k} U_{d,k} - G_{n,k} U_{n,k}\big)_{c,h,w},

    computed as :math:`\sum G (A - \mu) - \sigma \sum G n`, so that no
    tensor of :math:`U` is kept. Written out because autograd's backward through
    the broadcast streams took a third of a ResNet-50 ``layer4`` fit step
    (``docs/speed.md``).

    Args:
        stream_grads (Tensor): :math:`G`, shape ``(B, 2, K, C, H, W)``.
        activations, mean, std, noise (Tensor): as :func:`dual_streams` takes them.

    Returns:
        Tensor of shape ``(B, C)``.
    """
    grads = stream_grads.flatten(-2)
    centred = (activations - mean).flatten(-2)[:, None, None]
    scale = torch.broadcast_to(std, (*activations.shape[:2], 1, 1))[:, None, None, :, 0, 0]
    per_draw = torch.linalg.vecdot(grads, centred) - scale * torch.linalg.vecdot(
        grads, noise.flatten(-2)[None]
    )
    return per_draw[:, 0].sum(1) - per_draw[:, 1].sum(1)


def fit_dsib(
    activations: Tensor,
    log_odds: Callable[[Tensor], Tensor],
    mean: Tensor,
    std: Tensor,
    *,
    n_samples: int,
    steps: int,
    lr: float,
    beta: float,
    gamma: float,
    alpha_init: float,
    evidence: str,
    complement: bool,
    generator: torch.Generator | None = None,
    internal_batch_size: int | None = None,
    show_progress: bool = False,
    grad_kwargs: dict[str, Any] | None = None,
) -> DSIBFit:
    r"""Fits the per-sample, per-channel gates of the DSIB with Adam.

    With ``complement``, each sample gets two fits, the target's and its
    complement's (see the module docstring), run as consecutive rows of one
    batch. All samples, fits and draws of a step go through ``log_odds`` as one
    batch (or in chunks of ``internal_batch_size`` rows); no value is read back
    to the host inside the loop.

    Args:
        activations (Tensor): ``A``, shape ``(B, C, H, W)``, without gradient.
        log_odds (Callable): ``log_odds(Z, rows)`` maps consecutive rows
            ``rows`` (a ``slice``) of the ``B * F * 2K`` rows of a step (``F``
            fits per sample, 2 if ``complement`` else 1, ordered as
            :func:`rows_per_example` describes), given as ``Z``, to the
            target's log-odds :math:`\ell_y(Z)`, one per row.
        mean (Tensor): prior mean, broadcastable to ``(B, C, 1, 1)``.
        std (Tensor): prior standard deviation, positive, broadcastable to
            ``(B, C, 1, 1)``.
        n_samples (int): ``K``, noise draws per stream and step.
        steps (int): ``T``, Adam steps.
        lr (float): Adam's learning rate on :math:`\alpha`.
        beta (float): weight of the mean KL (the compression).
        gamma (float): weight of the noise-stream term.
        alpha_init (float): initial gate logit.
        evidence (str): the discriminative term, ``"log_odds"`` (:math:`-\ell`)
            or ``"log_likelihood"`` (the cross-entropy :math:`-\log p`).
        complement (bool): also fit the complementary event :math:`\neg y`.
        generator (torch.Generator, optional): source of the noise draws, on
            the device of ``activations``. Default: the global generator.
        internal_batch_size (int, optional): pass at most this many rows to
            ``log_odds`` at once, each chunk's backward done before the next
            chunk runs, which bounds the memory of the network after the layer;
            the fit is the same up to floating-point rounding. Default: all
            ``B * F * 2K`` rows at once.
        show_progress (bool, optional): show a progress bar over the steps.
        grad_kwargs (dict, optional): keyword arguments of ``torch.autograd.grad``
            for the backward through the network after the layer, as Captum's
            ``grad_kwargs`` (``{"materialize_grads": True}``: zeros where the
            output does not depend on the layer). Default: None

    Returns:
        :class:`DSIBFit` of the target, with the complement's fit in
        :attr:`DSIBFit.complement`.
    """
    batch, channels = activations.shape[:2]
    fits = 2 if complement else 1
    standardized = (activations - mean) / std
    mean_square = standardized.square().mean((2, 3))

    def per_fit(value: Tensor) -> Tensor:
        """Repeats a per-sample value for each fit of the sample (consecutive rows)."""
        return value.repeat_interleave(fits, dim=0) if len(value) == batch else value

    # +1 explains y, -1 its complement: ℓ(¬y) = -ℓ(y).
    sign = torch.tensor([1.0, -1.0][:fits], dtype=activations.dtype, device=activations.device)
    sign = sign.repeat(batch)[:, None]
    alpha = torch.full(
        (batch * fits, channels),
        float(alpha_init),
        dtype=activations.dtype,
        device=activations.device,
        requires_grad=True,
    )
    optimizer = torch.optim.Adam([alpha], lr=lr)
    rows = (per_fit(activations), per_fit(mean), per_fit(std), per_fit(mean_square))
    activations_rows, mean_rows, std_rows, mean_square_rows = rows
    # Per row of a step: its fit's sign and whether it belongs to the noise stream.
    row_sign = sign.repeat_interleave(2 * n_samples)
    noise_row = torch.arange(2, device=activations.device).repeat_interleave(n_samples) == 1
    noise_row = noise_row.repeat(batch * fits)
    total = len(row_sign)
    chunk = total if internal_batch_size is None else internal_batch_size

    def row_losses(event: Tensor, is_noise: Tensor) -> Tensor:
        """Each row's share of its sample's loss, the KL term left out."""
        if evidence == "log_odds":
            discriminative = -event
        else:
            discriminative = F.softplus(without_negligible_slope(-event))
        noise_loss = gamma * F.softplus(without_negligible_slope(event))
        return torch.where(is_noise, noise_loss, discriminative) / n_samples

    trace = []
    for _ in tqdm(range(steps), desc="InfoCAM fit", disable=not show_progress):
        with record_function("InfoCAM: streams"):
            # Drawn in float32 whatever the fit's dtype, so a float64 fit sees the same noise.
            noise = torch.randn(
                (2, n_samples, *activations.shape[1:]),
                generator=generator,
                device=activations.device,
            ).to(activations.dtype)
            gates = torch.sigmoid(alpha)
            streams = dual_streams(activations_rows, gates.detach(), mean_rows, std_rows, noise)
            streams = streams.flatten(0, 2)
        # The network after the layer runs chunk by chunk, each chunk's backward
        # (to its streams) done before the next; a chunk's gradient takes the place of
        # its streams, which are not needed again. Then the chain rule from the streams to α.
        events, stream_grads = [], streams
        for start in range(0, total, chunk):
            rows = slice(start, min(start + chunk, total))
            with record_function("InfoCAM: suffix forward"):
                z = streams[rows].detach().requires_grad_()
                # A clone: the network may change its input in place (ReLU(inplace=True));
                # a leaf may not.
                event = log_odds(z.clone(), rows) * row_sign[rows]
                loss = row_losses(event, noise_row[rows]).sum()
            with record_function("InfoCAM: suffix backward"):
                grad = torch.autograd.grad(loss, z, **(grad_kwargs or {}))[0]
                if chunk < total:
                    stream_grads[rows] = grad
                else:
                    stream_grads = grad
            events.append(event.detach())
        with record_function("InfoCAM: gate gradient"):
            event = torch.cat(events).view(batch * fits, 2, n_samples)
            per_gate = gate_gradient(
                stream_grads.view(batch * fits, 2, n_samples, *activations.shape[1:]),
                activations_rows,
                mean_rows,
                std_rows,
                noise,
            )
            kl = mean_kl(alpha, mean_square_rows)
            alpha.grad = torch.autograd.grad((gates * per_gate).sum() + beta * kl.sum(), alpha)[0]
        with record_function("InfoCAM: optimizer"):
            optimizer.step()
            discriminative = -event[:, 0] if evidence == "log_odds" else F.softplus(-event[:, 0])
            noise_loss = F.softplus(event[:, 1]).mean(1)
            kl = kl.detach()
            trace.append(discriminative.mean(1) + beta * kl + gamma * noise_loss)

    alpha = alpha.detach()
    losses = torch.stack(trace)

    def outcome(fit: int) -> DSIBFit:
        logits = alpha[fit::fits]
        gates = torch.sigmoid(logits)
        kl_bits = kl_divergence(logits, standardized) / math.log(2.0)
        own = event[fit::fits]
        p = torch.sigmoid(own)
        return DSIBFit(
            gate_logits=logits,
            gates=gates,
            bits=kl_bits.sum((2, 3)),
            information=kl_bits.sum(1, keepdim=True),
            loss_trace=losses[:, fit::fits],
            log_odds=own[:, 0].mean(1),
            cross_entropy=F.softplus(-own[:, 0]).mean(1),
            kl=kl.detach()[fit::fits],
            noise_loss=noise_loss.detach()[fit::fits],
            p_discriminative=p[:, 0].mean(1),
            p_noise=p[:, 1].mean(1),
            collapsed=is_collapsed(gates),
        )

    target = outcome(0)
    return replace(target, complement=outcome(1)) if complement else target


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


def channel_maps(
    fit: DSIBFit, readout: str, activations: Tensor, mean: Tensor, std: Tensor
) -> Tensor:
    r"""Per-channel maps ``(B, C, H, W)`` of a fit: the target's read-out, minus the
    complement's where the fit has one (``"gates"``: :math:`(\lambda^+_c - \lambda^-_c) A_c`)."""
    maps = READOUTS[readout](fit, activations, mean, std)
    if fit.complement is not None:
        maps = maps - READOUTS[readout](fit.complement, activations, mean, std)
    return maps
