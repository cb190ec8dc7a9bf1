r"""How a model output becomes :math:`\log p(y \mid Z)` for the DSIB loss.

A likelihood is a callable ``(output, index) -> Tensor``: ``output`` is the
model's output for a batch of ``N`` rows, ``index`` an integer tensor ``(N, D)``
naming one element of each row's output (the target), and the result is the
log-probability of that target, shape ``(N,)``.
"""

from __future__ import annotations

from typing import Callable, Union

import torch.nn.functional as F
from torch import Tensor

from captum_infocam._targets import select
from captum_infocam._validation import check_choice

__all__ = ["LIKELIHOODS", "Likelihood", "check_output", "resolve_likelihood"]

Likelihood = Callable[[Tensor, Tensor], Tensor]


def softmax_likelihood(output: Tensor, index: Tensor) -> Tensor:
    """Log-softmax over dimension 1 (classes), at the target: single-label outputs."""
    return select(output.log_softmax(1), index)


def sigmoid_likelihood(output: Tensor, index: Tensor) -> Tensor:
    """Log-sigmoid of the target's logit: multi-label or one score per example."""
    return select(F.logsigmoid(output), index)


#: Built-in likelihoods by name.
LIKELIHOODS: dict[str, Likelihood] = {
    "softmax": softmax_likelihood,
    "sigmoid": sigmoid_likelihood,
}


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


def resolve_likelihood(likelihood: Union[str, Likelihood]) -> Likelihood:
    """Returns the likelihood named ``likelihood``, or ``likelihood`` if callable."""
    if callable(likelihood):
        return likelihood
    if not isinstance(likelihood, str):
        raise TypeError("likelihood must be a name or a callable (output, index) -> log p")
    check_choice("likelihood", likelihood, LIKELIHOODS)
    return LIKELIHOODS[likelihood]
