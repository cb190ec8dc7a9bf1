"""The DSIB tensor functions against independent formulations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal
from torch.distributions import kl_divergence as reference_kl

from captum_infocam.dsib import (
    READOUTS,
    channel_maps,
    dual_streams,
    fit_dsib,
    gate_gradient,
    is_collapsed,
    kl_divergence,
    mean_kl,
    rows_per_example,
    without_negligible_slope,
)


def test_kl_matches_torch_distributions() -> None:
    gen = torch.Generator().manual_seed(0)
    alpha = torch.randn(2, 3, generator=gen) * 3
    activations = torch.randn(2, 3, 4, 5, generator=gen) * 2 + 1
    mean = torch.randn(1, 3, 1, 1, generator=gen)
    std = torch.rand(1, 3, 1, 1, generator=gen) + 0.5
    gate = torch.sigmoid(alpha)[..., None, None]
    posterior = Normal(gate * activations + (1 - gate) * mean, (1 - gate) * std)
    expected = reference_kl(
        posterior, Normal(mean.expand_as(activations), std.expand_as(activations))
    )
    got = kl_divergence(alpha, (activations - mean) / std)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_kl_is_finite_when_gates_round_to_one() -> None:
    alpha = torch.tensor([[40.0, -40.0]])
    kl = kl_divergence(alpha, torch.ones(1, 2, 1, 1))
    # λ = 1: log(1/(1-λ)) = 40 nats dominates; λ = 0: the posterior is the prior.
    assert torch.isfinite(kl).all()
    torch.testing.assert_close(
        kl[0, 0, 0, 0], torch.tensor(0.5 * (1 + 2 * 40.0 - 1)), atol=1e-4, rtol=0
    )
    torch.testing.assert_close(kl[0, 1, 0, 0], torch.tensor(0.0), atol=1e-6, rtol=0)


def test_mean_kl_is_the_mean_of_the_per_element_kl() -> None:
    gen = torch.Generator().manual_seed(1)
    alpha = torch.randn(3, 4, generator=gen) * 4
    standardized = torch.randn(3, 4, 5, 6, generator=gen) * 2
    torch.testing.assert_close(
        mean_kl(alpha, standardized.square().mean((2, 3))),
        kl_divergence(alpha, standardized).mean((1, 2, 3)),
    )


def test_streams_follow_their_formulas_exactly() -> None:
    activations = torch.tensor([[[[2.0]], [[4.0]]]])  # (1, 2, 1, 1)
    gates = torch.tensor([[0.25, 1.0]])
    mean = torch.tensor([[[[1.0]], [[-1.0]]]])
    std = torch.tensor([[[[2.0]], [[3.0]]]])
    noise = torch.tensor([0.5, -1.0]).view(2, 1, 1, 1, 1).expand(2, 1, 2, 1, 1)
    streams = dual_streams(activations, gates, mean, std, noise)
    assert streams.shape == (1, 2, 1, 2, 1, 1)
    epsilon_d = mean.flatten() + std.flatten() * 0.5
    epsilon_n = mean.flatten() + std.flatten() * -1.0
    lam = gates.flatten()
    a = activations.flatten()
    torch.testing.assert_close(streams[0, 0, 0].flatten(), lam * a + (1 - lam) * epsilon_d)
    torch.testing.assert_close(streams[0, 1, 0].flatten(), (1 - lam) * a + lam * epsilon_n)


def test_discriminative_stream_is_distributed_as_the_posterior() -> None:
    gen = torch.Generator().manual_seed(3)
    activations = torch.tensor([[[[1.5]], [[-2.0]]]])
    gates = torch.tensor([[0.3, 0.8]])
    mean = torch.tensor([[[[0.5]], [[1.0]]]])
    std = torch.tensor([[[[2.0]], [[0.5]]]])
    noise = torch.randn(2, 200_000, 2, 1, 1, generator=gen)
    z_d = dual_streams(activations, gates, mean, std, noise)[0, 0].flatten(1)
    lam = gates.flatten()
    torch.testing.assert_close(
        z_d.mean(0), lam * activations.flatten() + (1 - lam) * mean.flatten(), atol=0.02, rtol=0
    )
    torch.testing.assert_close(z_d.std(0), (1 - lam) * std.flatten(), atol=0.02, rtol=0)


@pytest.mark.parametrize("per_sample_prior", [False, True])
def test_gate_gradient_is_the_chain_rule_through_the_streams(per_sample_prior: bool) -> None:
    gen = torch.Generator().manual_seed(2)
    activations = torch.randn(3, 4, 2, 5, generator=gen).relu()
    prior_shape = (3 if per_sample_prior else 1, 4, 1, 1)
    mean = torch.randn(prior_shape, generator=gen)
    std = torch.rand(prior_shape, generator=gen) + 0.5
    noise = torch.randn(2, 2, 4, 2, 5, generator=gen)
    stream_grads = torch.randn(3, 2, 2, 4, 2, 5, generator=gen)
    gates = torch.rand(3, 4, generator=gen).requires_grad_()
    streams = dual_streams(activations, gates, mean, std, noise)
    (expected,) = torch.autograd.grad((streams * stream_grads).sum(), gates)
    torch.testing.assert_close(gate_gradient(stream_grads, activations, mean, std, noise), expected)


@pytest.mark.parametrize("evidence", ["log_odds", "log_likelihood"])
def test_fit_follows_the_documented_loss_step_by_step(evidence: str) -> None:
    # An independent fit: autograd through the streams of each bottleneck, the loss as
    # the module docstring writes it, summed over samples, and Adam.
    weight = torch.tensor([[1.0, -2.0, 0.5], [0.0, 1.0, -1.0], [0.5, 0.0, 0.0]])
    gen = torch.Generator().manual_seed(4)
    activations = torch.rand(2, 3, 3, 3, generator=gen) * 2
    mean, std = torch.full((1, 3, 1, 1), 0.2), torch.full((1, 3, 1, 1), 0.7)
    settings = dict(
        n_samples=2, steps=4, lr=0.8, beta=0.5, gamma=2.0, alpha_init=1.0, evidence=evidence
    )

    def log_odds(z: torch.Tensor, rows: slice = slice(None)) -> torch.Tensor:
        logits = z.mean((2, 3)) @ weight.T
        return logits[:, 0] - torch.logsumexp(logits[:, 1:], 1)

    fit = fit_dsib(
        activations,
        log_odds,
        mean,
        std,
        complement=True,
        generator=torch.Generator().manual_seed(9),
        **settings,
    )
    draws = torch.Generator().manual_seed(9)
    # (sample, fit, channel)
    alpha = torch.full((2, 2, 3), settings["alpha_init"], requires_grad=True)
    optimizer = torch.optim.Adam([alpha], lr=settings["lr"])
    mean_square = ((activations - mean) / std).square().mean((2, 3))
    for _ in range(settings["steps"]):
        noise = torch.randn((2, 2, 3, 3, 3), generator=draws)
        loss = 0.0
        for fit_index, sign in enumerate((1.0, -1.0)):
            streams = dual_streams(
                activations, torch.sigmoid(alpha[:, fit_index]), mean, std, noise
            )
            event = sign * log_odds(streams.flatten(0, 2)).view(2, 2, 2)  # (sample, stream, draw)
            discriminative = -event[:, 0] if evidence == "log_odds" else F.softplus(-event[:, 0])
            loss = (
                loss
                + (
                    discriminative.mean(1)
                    + settings["beta"] * mean_kl(alpha[:, fit_index], mean_square)
                    + settings["gamma"] * F.softplus(event[:, 1]).mean(1)
                ).sum()
            )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.testing.assert_close(fit.gate_logits, alpha[:, 0].detach())
    torch.testing.assert_close(fit.complement.gate_logits, alpha[:, 1].detach())


def _linear_log_odds(weight: torch.Tensor):
    """Log-odds of y=0 under a GAP + linear two-class head over (N, C, H, W) maps."""

    def log_odds(z: torch.Tensor, rows: slice) -> torch.Tensor:
        logits = z.mean((2, 3)) @ weight.T
        return logits[:, 0] - logits[:, 1]

    return log_odds


# The original single fit; the tests of the complement say so.
_SETTINGS = dict(
    n_samples=6,
    steps=10,
    lr=1.0,
    beta=1.0,
    gamma=1.0,
    alpha_init=5.0,
    evidence="log_likelihood",
    complement=False,
)
_CONTRAST = _SETTINGS | dict(evidence="log_odds", complement=True)


@pytest.mark.parametrize("complement", [False, True])
def test_log_odds_rows_follow_the_documented_layout(complement: bool) -> None:
    # Gates start at σ(20) ≈ 1 and the noise has σ ≈ 0, so at the first step every
    # discriminative row is its sample's A and every noise row is the prior mean 0.
    activations = torch.arange(1.0, 4.0).view(3, 1, 1, 1).expand(3, 2, 2, 2)
    seen = []

    def log_odds(z: torch.Tensor, rows: slice) -> torch.Tensor:
        seen.append(z.detach())
        return -z.mean((1, 2, 3)).abs() - 1.0

    settings = {**_SETTINGS, "n_samples": 2, "steps": 1, "alpha_init": 20.0}
    settings["complement"] = complement
    fit_dsib(
        activations, log_odds, torch.zeros(1, 2, 1, 1), torch.full((1, 2, 1, 1), 1e-6), **settings
    )
    fits = 2 if complement else 1
    rows = rows_per_example(2, complement)
    assert rows == 4 * fits and seen[0].shape == (3 * rows, 2, 2, 2)
    per_row = seen[0].mean((1, 2, 3)).view(3, fits, 2, 2)  # (sample, fit, stream, draw)
    expected = torch.tensor([1.0, 2.0, 3.0])[:, None, None].expand(3, fits, 2)
    torch.testing.assert_close(per_row[:, :, 0], expected)
    torch.testing.assert_close(per_row[:, :, 1], torch.zeros(3, fits, 2), atol=1e-5, rtol=0)


@pytest.mark.parametrize("settings", [_SETTINGS, _CONTRAST], ids=["single", "complement"])
def test_fit_is_deterministic_and_row_independent(settings: dict) -> None:
    weight = torch.tensor([[3.0, 2.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    gen = torch.Generator().manual_seed(0)
    activations = torch.rand(3, 4, 5, 5, generator=gen) + 0.5
    ones = torch.ones(3, 4, 1, 1)
    log_odds = _linear_log_odds(weight)

    def fit(acts: torch.Tensor):
        return fit_dsib(
            acts,
            log_odds,
            0 * ones[: len(acts)],
            ones[: len(acts)],
            generator=torch.Generator().manual_seed(7),
            **settings,
        )

    batch = fit(activations)
    again = fit(activations)
    assert torch.equal(batch.gates, again.gates)
    fits = [batch] if batch.complement is None else [batch, batch.complement]
    for i in range(3):
        single = fit(activations[i : i + 1])
        singles = [single] if single.complement is None else [single, single.complement]
        for alone, together in zip(singles, fits, strict=True):
            torch.testing.assert_close(alone.gates, together.gates[i : i + 1], rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(alone.loss_trace, together.loss_trace[:, i : i + 1])


def test_fit_reports_shapes_and_consistent_information() -> None:
    weight = torch.tensor([[1.0, -1.0, 0.5], [0.0, 0.0, 0.0]])
    activations = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    mean, std = torch.zeros(1, 3, 1, 1), torch.full((1, 3, 1, 1), 0.5)
    fit = fit_dsib(activations, _linear_log_odds(weight), mean, std, **_SETTINGS)
    assert fit.gates.shape == fit.bits.shape == (2, 3)
    assert fit.information.shape == (2, 1, 4, 4)
    assert fit.loss_trace.shape == (_SETTINGS["steps"], 2)
    information = READOUTS["information"](fit, activations, mean, std)
    torch.testing.assert_close(information.sum(1, keepdim=True), fit.information)
    torch.testing.assert_close(information.sum((2, 3)), fit.bits)
    torch.testing.assert_close(
        READOUTS["gates"](fit, activations, mean, std), fit.gates[..., None, None] * activations
    )
    assert (fit.bits >= 0).all()
    kl_nats = kl_divergence(fit.gate_logits, (activations - mean) / std).mean((1, 2, 3))
    torch.testing.assert_close(fit.bits.sum(1) * math.log(2) / (3 * 16), kl_nats)
    # Means over the draws: -log p = softplus(-ℓ) is convex, so Jensen orders them.
    assert (fit.cross_entropy >= torch.nn.functional.softplus(-fit.log_odds) - 1e-6).all()
    assert fit.complement is None


def test_complement_keeps_the_evidence_against_the_target() -> None:
    # log-odds of class 0 = 3 m_0 + 2 m_1 - 2 m_2 + 0 m_3: channel 2 is evidence against it.
    weight = torch.tensor([[3.0, 2.0, -2.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    activations = torch.ones(1, 4, 6, 6)
    mean, std = torch.zeros(1, 4, 1, 1), torch.ones(1, 4, 1, 1)
    generator = torch.Generator().manual_seed(0)  # over 30 seeds: gates 0.89-0.94, 0.01-0.02
    fit = fit_dsib(
        activations, _linear_log_odds(weight), mean, std, generator=generator, **_CONTRAST
    )
    for_, against = fit.gates[0], fit.complement.gates[0]
    assert (for_[:2] > 0.85).all() and (for_[2:] < 0.1).all()
    assert against[2] > 0.85 and (against[[0, 1, 3]] < 0.1).all()
    assert fit.p_discriminative > 0.9 and fit.complement.p_discriminative > 0.5
    weights = channel_maps(fit, "gates", activations, mean, std)[0, :, 0, 0]
    torch.testing.assert_close(weights, for_ - against)
    assert weights[0] > 0.8 and weights[2] < -0.8 and weights[3].abs() < 0.1


def test_complement_of_the_complement_is_the_target() -> None:
    # Negating the log-odds explains "not y": the two fits swap exactly.
    weight = torch.tensor([[1.0, -1.0, 0.5], [0.0, 0.0, 0.0]])
    activations = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    mean, std = torch.zeros(1, 3, 1, 1), torch.full((1, 3, 1, 1), 0.5)
    log_odds = _linear_log_odds(weight)

    def fit(function):
        return fit_dsib(
            activations,
            function,
            mean,
            std,
            generator=torch.Generator().manual_seed(3),
            **_CONTRAST,
        )

    straight, negated = fit(log_odds), fit(lambda z, rows: -log_odds(z, rows))
    assert torch.equal(negated.gates, straight.complement.gates)
    assert torch.equal(negated.complement.gates, straight.gates)
    torch.testing.assert_close(negated.log_odds, straight.complement.log_odds)


def test_log_odds_keep_weak_evidence_that_the_cross_entropy_lets_go() -> None:
    # A confident prediction saturates the cross-entropy, and the compression then closes
    # the weakest evidence (weight 1); the log-odds still count it.
    weight = torch.tensor([[3.0, 2.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    activations = torch.ones(1, 4, 6, 6)
    mean, std = torch.zeros(1, 4, 1, 1), torch.ones(1, 4, 1, 1)
    gates = {
        evidence: fit_dsib(
            activations,
            _linear_log_odds(weight),
            mean,
            std,
            generator=torch.Generator().manual_seed(0),
            **_SETTINGS | dict(evidence=evidence),
        ).gates[0]
        for evidence in ("log_odds", "log_likelihood")
    }
    assert gates["log_odds"][2] > 0.7 > 0.3 > gates["log_likelihood"][2]
    assert (gates["log_odds"][3] < 0.1) and (gates["log_likelihood"][3] < 0.1)


@pytest.mark.parametrize(
    ("settings", "why"),
    [
        (dict(beta=10.0, gamma=0.0), "compression alone closes every gate"),
        (dict(lr=0.1), "too small a step never moves the gates"),
    ],
)
def test_collapsed_fits_are_reported(settings: dict, why: str) -> None:
    weight = torch.tensor([[3.0, 2.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    activations = torch.ones(1, 4, 6, 6)
    mean, std = torch.zeros(1, 4, 1, 1), torch.ones(1, 4, 1, 1)
    fit = fit_dsib(
        activations,
        _linear_log_odds(weight),
        mean,
        std,
        generator=torch.Generator().manual_seed(0),
        **{**_SETTINGS, **settings},
    )
    assert fit.collapsed.all(), why
    healthy = fit_dsib(
        activations,
        _linear_log_odds(weight),
        mean,
        std,
        generator=torch.Generator().manual_seed(0),
        **_SETTINGS,
    )
    assert not healthy.collapsed.any()


def test_collapse_detector_flags_closed_unmoved_and_equal_gates() -> None:
    gates = torch.tensor(
        [
            [0.05, 0.02, 0.09, 0.01],  # every gate closed
            [0.95, 0.99, 0.91, 0.93],  # none moved
            [0.503, 0.503, 0.5034, 0.5031],  # all equal: no channel told apart
            [0.05, 0.99, 0.5, 0.3],  # a ranking
            [0.5, 0.5, 0.5, 0.5015],  # equal but for one gate, 1.5e-3 away
            [0.95, 0.05, 0.95, 0.95],  # one gate closed
        ]
    )
    expected = torch.tensor([True, True, True, False, False, False])
    assert torch.equal(is_collapsed(gates), expected)
    # One channel has nothing to rank: only closing or not moving is a collapse.
    assert torch.equal(is_collapsed(torch.tensor([[0.5], [0.05]])), torch.tensor([False, True]))


@pytest.mark.parametrize("dtype, cut", [(torch.float32, -31.8), (torch.float64, -72.1)])
def test_softplus_slope_is_cut_only_where_negligible(dtype: torch.dtype, cut: float) -> None:
    x = torch.tensor([-200.0, -95.0, cut - 0.1, cut + 0.1, -1.0, 0.0, 30.0], dtype=dtype)
    x.requires_grad_(True)
    kept = without_negligible_slope(x)
    (slope,) = torch.autograd.grad(torch.nn.functional.softplus(kept).sum(), x)
    assert torch.equal(kept.detach(), x.detach())
    expected = torch.where(x < cut, 0.0, torch.sigmoid(x)).detach()
    torch.testing.assert_close(slope, expected, rtol=1e-6, atol=0)
    assert slope[2] == 0 and slope[3] > 0


def _subnormal(t: torch.Tensor) -> torch.Tensor:
    return (t != 0) & (t.abs() < torch.finfo(t.dtype).tiny)


@pytest.mark.parametrize("evidence", ["log_odds", "log_likelihood"])
def test_confident_rows_pass_no_subnormal_gradient_and_the_fit_is_unchanged(
    evidence: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Gates near 1: the discriminative rows hold A (mean 1, log-odds +95 for the
    # target fit, -95 for the complement's), the noise rows the zero prior mean
    # (log-odds -95 or +95). Each row whose term is softplus(±95) gets the slope
    # σ(-95) ≈ 5e-42, a subnormal float32, which the backward would carry to the
    # streams; the cut passes exact zeros there instead.
    activations = torch.ones(2, 3, 4, 4)
    grads = []

    def log_odds(z: torch.Tensor, rows: slice) -> torch.Tensor:
        z.register_hook(grads.append)
        return 190.0 * z.mean((1, 2, 3)) - 95.0

    def fit():
        grads.clear()
        return fit_dsib(
            activations,
            log_odds,
            torch.zeros(1, 3, 1, 1),
            torch.full((1, 3, 1, 1), 1e-3),
            generator=torch.Generator().manual_seed(0),
            **(_CONTRAST | dict(evidence=evidence, steps=3)),
        )

    cut = fit()
    assert not any(_subnormal(g).any() for g in grads)
    monkeypatch.setattr("captum_infocam.dsib.without_negligible_slope", lambda x: x)
    uncut = fit()
    assert any(_subnormal(g).any() for g in grads)  # the case the cut is for
    for a, b in ((cut, uncut), (cut.complement, uncut.complement)):
        assert torch.equal(a.gates, b.gates)
        assert torch.equal(a.loss_trace, b.loss_trace)
