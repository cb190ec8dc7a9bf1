r"""How a model output becomes the evidence for the target in the DSIB loss.

A likelihood is named (``"softmax"``, ``"sigmoid"``, or ``"auto"``: sigmoid for an
output with one score per example, ``(N,)`` or ``(N, 1)``, softmax otherwise) or a callable
``(output, index) -> Tensor``: ``output`` is the model's output for a batch of
``N`` rows, ``index`` an integer tensor ``(N, D)`` naming one element of each
row's output (the target), and the result is the log-probability of that
target, shape ``(N,)``.

The fit reads every likelihood as the **log-odds** of the target,

.. math::
    \ell = \log p(y \mid Z) - \log\big(1 - p(y \mid Z)\big),

from which :math:`\log p = \log\sigma(\ell)` and :math:`\log(1-p) =
\log\sigma(-\ell)` follow exactly. The built-in likelihoods compute
:math:`\ell` from the logits without rounding: softmax
:math:`z_y - \log\sum_{k \ne y} e^{z_k}` (the target against the model's other
classes), sigmoid :math:`z_y`. For a callable, :math:`\ell` is derived from its
:math:`\log p`, which float32 rounds to 0 above :math:`p \approx 1 - 10^{-7}`;
the log-odds are then capped near 16 nats.
"""

from __future__ import annotations

from typing import Callable, Union

import torch
from torch import Tensor

from captum_infocam._targets import select
from captum_infocam._validation import check_choice

__all__ = [
    "AUTO",
    "LOG_ODDS",
    "Likelihood",
    "LogOdds",
    "check_output",
    "choose_likelihood",
    "resolve_likelihood",
]

#: ``(output, index) -> log p(target)``, shape ``(N,)``.
Likelihood = Callable[[Tensor, Tensor], Tensor]
#: ``(output, index) -> log-odds of the target``, shape ``(N,)``.
LogOdds = Callable[[Tensor, Tensor], Tensor]

#: Log-probabilities above this are taken as this (a probability of one up to rounding).
_LOG_P_CEILING = -1e-7


def softmax_log_odds(output: Tensor, index: Tensor) -> Tensor:
    """The target's logit against the log-sum-exp of the other classes along dimension 1."""
    rows = torch.arange(len(output), device=output.device)
    others = output.index_put((rows, *index.unbind(1)), output.new_tensor(float("-inf")))
    return select(output, index) - select(others.logsumexp(1), index[:, 1:])


def sigmoid_log_odds(output: Tensor, index: Tensor) -> Tensor:
    """The target's logit: multi-label outputs or one score per example."""
    return select(output, index)


#: Built-in likelihoods by name, as log-odds functions.
LOG_ODDS: dict[str, LogOdds] = {
    "softmax": softmax_log_odds,
    "sigmoid": sigmoid_log_odds,
}


#: The likelihood that follows the output: see :func:`choose_likelihood`.
AUTO = "auto"


def choose_likelihood(likelihood: Union[str, Likelihood], output: Tensor) -> Union[str, Likelihood]:
    """``likelihood`` itself, or for ``"auto"``: ``"sigmoid"`` where the output holds one
    score per example (``(N,)`` or ``(N, 1)``, a regression or a binary logit, Captum's
    usual single-output call), ``"softmax"`` over dimension 1 otherwise."""
    if likelihood != AUTO:
        return likelihood
    return "sigmoid" if output[0].numel() == 1 else "softmax"


def check_output(likelihood: Union[str, Likelihood], output: Tensor) -> None:
    """Raises ``ValueError`` if the model's ``output`` cannot feed ``likelihood``.

    ``"softmax"`` needs at least two classes along dimension 1; ``"sigmoid"``
    takes any output, and a callable is the caller's to check.
    """
    if likelihood == "softmax" and (output.dim() < 2 or output.shape[1] < 2):
        raise ValueError(
            "likelihood='softmax' needs an output with at least two classes along "
            f"dimension 1, got shape {tuple(output.shape)}; use 'sigmoid'"
        )


def _log_odds_of(likelihood: Likelihood) -> LogOdds:
    def log_odds(output: Tensor, index: Tensor) -> Tensor:
        log_p = likelihood(output, index).clamp(max=_LOG_P_CEILING)
        return log_p - torch.log(-torch.expm1(log_p))

    return log_odds


def check_likelihood(likelihood: Union[str, Likelihood]) -> None:
    """Raises unless ``likelihood`` is a name of :data:`LOG_ODDS`, ``"auto"``, or a callable."""
    if callable(likelihood):
        return
    if not isinstance(likelihood, str):
        raise TypeError("likelihood must be a name or a callable (output, index) -> log p")
    check_choice("likelihood", likelihood, (*LOG_ODDS, AUTO))


def resolve_likelihood(likelihood: Union[str, Likelihood]) -> LogOdds:
    """Returns the log-odds function of ``likelihood`` (a name of :data:`LOG_ODDS` or a
    ``log p`` callable; ``"auto"`` is first chosen with :func:`choose_likelihood`)."""
    check_likelihood(likelihood)
    if callable(likelihood):
        return _log_odds_of(likelihood)
    if likelihood == AUTO:
        raise ValueError("likelihood='auto' is chosen from the output: choose_likelihood first")
    return LOG_ODDS[likelihood]
