"""The target's log-odds, from every likelihood form, against float64 references."""

from __future__ import annotations

import torch

from captum_infocam.likelihood import resolve_likelihood


def _reference(log_p: torch.Tensor) -> torch.Tensor:
    log_p = log_p.double()
    return log_p - torch.log(-torch.expm1(log_p))


def test_softmax_log_odds_are_exact_where_the_probability_rounds_to_one() -> None:
    output = torch.tensor([[40.0, 0.0, -3.0], [1.0, 2.0, 3.0]])
    index = torch.tensor([[0], [2]])
    got = resolve_likelihood("softmax")(output, index)
    # Row 0: p = 1 - 4e-18 in float64 too, so the reference is the closed form.
    expected = torch.tensor([40.0 - torch.logsumexp(torch.tensor([0.0, -3.0]), 0), 0.0])
    expected[1] = _reference(output.double().log_softmax(1)[1, 2])
    torch.testing.assert_close(got, expected.float())


def test_softmax_log_odds_follow_a_multi_dimensional_target() -> None:
    # Segmentation-like output (N, classes, H, W): the others are the other classes at (h, w).
    output = torch.randn(2, 4, 3, 5, generator=torch.Generator().manual_seed(0))
    index = torch.tensor([[1, 0, 4], [3, 2, 2]])
    got = resolve_likelihood("softmax")(output, index)
    log_p = output.double().log_softmax(1)
    expected = torch.stack([_reference(log_p[0, 1, 0, 4]), _reference(log_p[1, 3, 2, 2])])
    torch.testing.assert_close(got, expected.float())


def test_sigmoid_log_odds_are_the_logit_and_a_callable_is_converted() -> None:
    output = torch.tensor([[2.5, -1.0], [0.3, 7.0]])
    index = torch.tensor([[0], [1]])
    torch.testing.assert_close(
        resolve_likelihood("sigmoid")(output, index), torch.tensor([2.5, 7.0])
    )

    def log_sigmoid(out: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.logsigmoid(out.gather(1, idx)[:, 0])

    torch.testing.assert_close(
        resolve_likelihood(log_sigmoid)(output, index),
        torch.tensor([2.5, 7.0]),
        rtol=1e-5,
        atol=1e-5,
    )
    # A log p that rounds to 0 is capped, not infinite.
    capped = resolve_likelihood(lambda out, idx: torch.zeros(len(out)))(output, index)
    assert torch.isfinite(capped).all() and (capped > 15).all()
