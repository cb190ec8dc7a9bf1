"""Reliability: fuzzed arguments, degenerate activations, dtypes, non-finite values."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from captum_infocam import DSIBSettings, InfoCAM
from captum_infocam.metrics import (
    average_drop,
    average_gain,
    confidence_metrics,
    energy_pointing_game,
    improved_average_drop,
    pointing_game,
)
from tests.conftest import ModelState, SmallCNN, coloured_squares, trained_copy

pytestmark = pytest.mark.filterwarnings("ignore::captum_infocam.CollapsedFitWarning")


class Fuzzed(nn.Module):
    """conv -> ``layer`` (pooled to ``layer_side``) -> global pooling -> linear."""

    def __init__(self, layer_side: int, classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.layer = nn.Sequential(nn.AdaptiveAvgPool2d(layer_side), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.layer(self.conv(x)))


def _targets(n: int, classes: int) -> st.SearchStrategy:
    index = st.integers(-classes - 1, classes + 1)
    return st.one_of(
        st.none(),
        index,
        st.tuples(index),
        st.lists(index, min_size=max(0, n - 1), max_size=n + 1),
        st.lists(st.tuples(index), min_size=n, max_size=n),
        st.builds(lambda v: torch.tensor(v), st.lists(index, min_size=1, max_size=n + 1)),
        st.just(1.5),
        st.just(True),
    )


def _target_is_valid(target, n: int, classes: int) -> bool:
    def ok(i: object) -> bool:
        # Negative indices count from the end, as in Python and Captum.
        return isinstance(i, int) and not isinstance(i, bool) and -classes <= i < classes

    if isinstance(target, Tensor):
        values = target.tolist()
        return len(values) in (1, n) and all(map(ok, values))
    if isinstance(target, list):
        flat = [t[0] if isinstance(t, tuple) else t for t in target]
        return len(target) == n and all(map(ok, flat))
    if isinstance(target, tuple):
        return ok(target[0])
    return ok(target)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_calls_give_a_finite_map_or_a_clear_error(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 3), label="batch")
    side = data.draw(st.integers(1, 9), label="input side")
    layer_side = data.draw(st.integers(1, side), label="layer side")
    classes = data.draw(st.integers(2, 4), label="classes")
    target = data.draw(_targets(n, classes), label="target")
    n_samples = data.draw(st.integers(-1, 3), label="n_samples")
    steps = data.draw(st.integers(-1, 3), label="steps")
    beta = data.draw(st.sampled_from([-1.0, 0.0, 0.5, 10.0, math.inf, math.nan]), label="beta")
    gamma = data.draw(st.sampled_from([-0.5, 0.0, 1.0, 100.0, math.nan]), label="gamma")
    lr = data.draw(st.sampled_from([-1.0, 0.0, 1e-3, 1.0, 50.0]), label="lr")
    torch.manual_seed(data.draw(st.integers(0, 1000), label="seed"))
    model = Fuzzed(layer_side, classes).eval()
    x = torch.randn(n, 3, side, side)
    state = ModelState.of(model)
    valid = (
        _target_is_valid(target, n, classes)
        and n_samples >= 1
        and steps >= 1
        and math.isfinite(beta)
        and beta >= 0
        and math.isfinite(gamma)
        and gamma >= 0
        and lr > 0
    )
    cam = InfoCAM(model, model.layer)

    def call() -> torch.Tensor:
        fit = DSIBSettings(n_samples=n_samples, steps=steps, beta=beta, gamma=gamma, lr=lr)
        return cam.attribute(x, target=target, settings=fit)

    if valid:
        attr = call()
        assert attr.shape == (n, 1, layer_side, layer_side)
        assert torch.isfinite(attr).all() and (attr >= 0).all()
        assert torch.isfinite(cam.last_fit.gates).all()
    else:
        with pytest.raises((ValueError, TypeError)):
            call()
    state.assert_unchanged(model)


class Degenerate(nn.Module):
    """A layer whose output is replaced by ``make(x)``, then pooling and a linear head."""

    def __init__(self, make) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.make = make
        self.layer = nn.Identity()
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.layer(self.make(self.conv(x))))


@pytest.mark.parametrize(
    ("make", "zero_map"),
    [
        (lambda a: a * 0, True),
        (lambda a: torch.relu(a - 1e3), True),  # a dead ReLU
        (lambda a: torch.ones_like(a) * torch.tensor([0.0, 1.0, 2.0, 3.0])[:, None, None], False),
        (
            lambda a: torch.cat([a[:, :2], torch.full_like(a[:, 2:], 5.0)], 1),
            False,
        ),  # constant channels
        (lambda a: a.abs() * 1e6, False),
    ],
    ids=["all-zero", "dead-relu", "constant-maps", "constant-channels", "huge"],
)
def test_degenerate_activations_give_finite_maps(make, zero_map: bool) -> None:
    model = Degenerate(make).eval()
    cam = InfoCAM(model, model.layer)
    x = torch.randn(2, 3, 6, 6)
    attr = cam.attribute(x, target=[0, 2])
    assert torch.isfinite(attr).all() and (attr >= 0).all()
    fit = cam.last_fit
    for part in (fit, fit.complement):
        for tensor in (part.gates, part.bits, part.information, part.loss_trace):
            assert torch.isfinite(tensor).all()
    # With the complement a constant layer may weigh to a negative constant, a zero map.
    assert fit.zero_map.tolist() == (attr == 0).flatten(1).all(1).tolist()
    if zero_map:
        assert fit.zero_map.all()
    # The single fit's weights are positive: only a layer of zeros gives a zero map.
    cam.attribute(x, target=[0, 2], settings=DSIBSettings(contrast="none"))
    assert cam.last_fit.zero_map.tolist() == [zero_map, zero_map]


@pytest.mark.parametrize("where", ["inputs", "output", "during-fit"])
def test_non_finite_values_are_reported(where: str) -> None:
    class Poisoned(SmallCNN):
        def forward(self, x: Tensor) -> Tensor:
            logits = super().forward(x)
            if where == "output":
                return logits * float("nan")
            if where == "during-fit" and len(x) > 2:  # only the perturbed batch
                return logits + float("inf")
            return logits

    torch.manual_seed(0)
    model = Poisoned().eval()
    x = torch.randn(2, 3, 8, 8)
    if where == "inputs":
        x[0, 0, 0, 0] = float("inf")
    cam = InfoCAM(model, model.features, suffix_strategy="rerun")
    messages = {
        "inputs": "inputs contains NaN or infinite",
        "output": "output of forward_func contains NaN",
        "during-fit": "perturbed activations",
    }
    with pytest.raises(ValueError, match=messages[where]):
        cam.attribute(x, target=0, settings=DSIBSettings(n_samples=2, steps=2))


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
def test_other_dtypes_give_maps_close_to_float32(trained_cnn: SmallCNN, dtype: torch.dtype) -> None:
    x, y = coloured_squares(4, generator=torch.Generator().manual_seed(1))
    reference = InfoCAM(trained_cnn, trained_cnn.features).attribute(x, target=y)
    model = trained_copy(trained_cnn, dtype=dtype)
    attr = InfoCAM(model, model.features).attribute(x.to(dtype), target=y)
    assert attr.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    tolerance = 1e-5 if dtype == torch.float64 else 0.1
    scale = reference.amax((1, 2, 3), keepdim=True)
    torch.testing.assert_close((attr / scale).float(), reference / scale, rtol=0, atol=tolerance)


def test_cpu_autocast_to_bfloat16_is_close_to_float32(trained_cnn: SmallCNN) -> None:
    x, y = coloured_squares(4, generator=torch.Generator().manual_seed(2))
    cam = InfoCAM(trained_cnn, trained_cnn.features)
    reference = cam.attribute(x, target=y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        attr = cam.attribute(x, target=y)
    assert attr.dtype == torch.float32 and torch.isfinite(attr).all()
    scale = reference.amax((1, 2, 3), keepdim=True)
    torch.testing.assert_close(attr / scale, reference / scale, rtol=0, atol=0.1)


# --- metrics edge cases -----------------------------------------------------------------


def test_metrics_handle_zero_probabilities_and_zero_maps() -> None:
    def certain(x: Tensor) -> Tensor:  # class 1 always has probability 0
        logits = torch.zeros(len(x), 2)
        logits[:, 1] = -1e4
        return logits

    x = torch.rand(2, 3, 5, 5)
    maps = torch.rand(2, 1, 5, 5)
    for target in (0, 1):
        values = confidence_metrics(certain, x, maps, target=target)
        for name, value in values.items():
            assert torch.isfinite(value).all(), name
    assert average_drop(certain, x, maps, target=1).eq(0).all()
    assert average_gain(certain, x, maps, target=0).eq(0).all()  # Y = 0.5 -> O = 0.5
    assert improved_average_drop(certain, x, torch.zeros(2, 1, 5, 5), target=0).eq(0).all()
    zero = torch.zeros(2, 1, 5, 5)
    mask = torch.zeros(2, 5, 5, dtype=torch.bool)
    mask[:, 1:3, 1:3] = True
    assert pointing_game(zero, mask).eq(0).all()
    torch.testing.assert_close(energy_pointing_game(zero, mask), torch.full((2,), 4 / 25))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_autocast_to_float16_is_close_to_float32(trained_cnn: SmallCNN) -> None:
    x, y = coloured_squares(4, generator=torch.Generator().manual_seed(2))
    model = trained_copy(trained_cnn, device="cuda")
    cam = InfoCAM(model, model.features)
    reference = cam.attribute(x.cuda(), target=y.cuda())
    with torch.autocast("cuda", dtype=torch.float16):
        attr = cam.attribute(x.cuda(), target=y.cuda())
    assert attr.dtype == torch.float32 and torch.isfinite(attr).all()
    scale = reference.amax((1, 2, 3), keepdim=True)
    torch.testing.assert_close(attr / scale, reference / scale, rtol=0, atol=0.1)
