"""Metrics: hand-computed values, agreement with independent implementations, properties."""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from captum_infocam.metrics import (
    average_drop,
    average_gain,
    average_increase,
    boxes_to_mask,
    confidence_metrics,
    confidence_scores,
    deletion_auc,
    energy_pointing_game,
    grid_pointing_game,
    improved_average_drop,
    improved_average_increase,
    insertion_auc,
    noisy_linear_imputation,
    pointing_game,
    rise_blur,
    road_least_relevant_first,
    road_most_relevant_first,
    saliency_maps,
)
from captum_infocam.metrics.localization import default_tolerance
from captum_infocam.metrics.perturbation import rise_kernel

ALL_FORWARD_METRICS = [
    average_drop,
    average_increase,
    average_gain,
    improved_average_drop,
    improved_average_increase,
    insertion_auc,
    deletion_auc,
    road_most_relevant_first,
    road_least_relevant_first,
]


class PixelSum(nn.Module):
    """Scores an image as ``[sum of its pixels / total, 0]`` (use ``score_fn="identity"``)."""

    def __init__(self, total: float) -> None:
        super().__init__()
        self.total = total

    def forward(self, x: Tensor) -> Tensor:
        score = x.flatten(1).sum(1) / self.total
        return torch.stack([score, torch.zeros_like(score)], 1)


class Lookup(nn.Module):
    """Scores ``[p, 1 - p]`` (use ``score_fn="identity"``): ``p`` is ``full`` on an image whose
    mean pixel is 1, ``empty`` on an all-zero image and ``partial`` on anything between."""

    def __init__(self, full: float, partial: float, empty: float) -> None:
        super().__init__()
        self.full, self.partial, self.empty = full, partial, empty

    def forward(self, x: Tensor) -> Tensor:
        mean = x.flatten(1).mean(1)
        full, partial, empty = (
            torch.full_like(mean, v) for v in (self.full, self.partial, self.empty)
        )
        p = torch.where(mean == 1, full, torch.where(mean == 0, empty, partial))
        return torch.stack([p, 1 - p], 1)


class RegionEvidence(nn.Module):
    """Two-class logits ``[a, 0]`` with ``a = inside * mean(x on region) + outside * mean(x
    off region) + bias``: hand-computable evidence for an object at ``region``."""

    def __init__(self, region: Tensor, inside: float, outside: float, bias: float) -> None:
        super().__init__()
        self.region, self.inside, self.outside, self.bias = region, inside, outside, bias

    def forward(self, x: Tensor) -> Tensor:
        on = x[..., self.region].flatten(1).mean(1)
        off = x[..., ~self.region].flatten(1).mean(1)
        a = self.inside * on + self.outside * off + self.bias
        return torch.stack([a, torch.zeros_like(a)], 1)


REGION = torch.zeros(4, 4, dtype=torch.bool)
REGION[1:3, 1:3] = True  # 4 of the 16 pixels
BUDGETS = (1 / 16, 1 / 8, 1 / 4, 1 / 2)  # 1, 2, 4 and 8 pixels of 16


def _improved_drop_by_hand(y: Tensor, kept: list[Tensor]) -> Tensor:
    """Mean of Y - O_b over the budgets (a constant image has no jitter, so no dead zone)."""
    return torch.stack([y - o for o in kept]).mean(0)


def test_classic_confidence_metrics_by_hand() -> None:
    x = torch.ones(1, 1, 2, 2)
    # Min-max keeps this map as is: O = (1 + 0 + 0.5 + 0) / 4 of the full score.
    attributions = torch.tensor([[[[1.0, 0.0], [0.5, 0.0]]]])
    model = PixelSum(total=4.0)
    kwargs = dict(target=0, score_fn="identity")
    # Y = 1, O = 0.375.
    torch.testing.assert_close(
        average_drop(model, x, attributions, **kwargs), torch.tensor([0.625])
    )
    assert average_increase(model, x, attributions, **kwargs).item() == 0.0
    assert average_gain(model, x, attributions, **kwargs).item() == 0.0
    # Against class 1 (always 0): Y = 0, nothing to drop.
    assert average_drop(model, x, attributions, target=1, score_fn="identity").item() == 0.0


def test_removal_that_raises_the_score_gets_no_credit() -> None:
    # The case: Y = 0.119, O = 0.018 and Y0 = 0.5 >= Y. The old improved drop,
    # clip((Y - O) / (Y - Y0), 0, 1), gave the best value, 0; the classic drop gives 0.849.
    model, x, attributions = Lookup(0.119, 0.018, 0.5), torch.ones(1, 1, 4, 4), torch.rand(1, 4, 4)
    kwargs = dict(target=0, score_fn="identity")
    torch.testing.assert_close(
        average_drop(model, x, attributions, **kwargs), torch.tensor([0.101 / 0.119])
    )
    torch.testing.assert_close(
        improved_average_drop(model, x, attributions, **kwargs), torch.tensor([0.101])
    )
    # An object whose background is evidence against it: the blank image scores
    # Y0 = sigmoid(0) = 0.5 above Y = sigmoid(3 - 6) = 0.047.
    model = RegionEvidence(REGION, inside=3.0, outside=-6.0, bias=0.0)
    mask = REGION.float().expand(1, 4, 4)
    y = torch.sigmoid(torch.tensor([-3.0]))
    # Budgets of 1, 2, 4, 8 pixels: the object mask keeps 1/4, 1/2, 1 of the object, then
    # the object and 4 of the 12 background pixels; the inverse mask k/12 of the background.
    on_object = [torch.sigmoid(torch.tensor([a])) for a in (0.75, 1.5, 3.0, 3.0 - 6 / 3)]
    on_inverse = [torch.sigmoid(torch.tensor([-6 * k / 12])) for k in (1, 2, 4, 8)]
    object_drop = improved_average_drop(model, x, mask, target=0, budgets=BUDGETS)
    inverse_drop = improved_average_drop(model, x, 1 - mask, target=0, budgets=BUDGETS)
    torch.testing.assert_close(object_drop, _improved_drop_by_hand(y, on_object))
    torch.testing.assert_close(inverse_drop, _improved_drop_by_hand(y, on_inverse))
    assert object_drop.item() == pytest.approx(-0.7477, abs=1e-4)  # keeping the object: a rise
    assert inverse_drop.item() == pytest.approx(-0.1485, abs=1e-4)
    # The classic drop: the object mask keeps the object (a rise, 0), the inverse mask
    # the background.
    o_inverse = torch.sigmoid(torch.tensor([-6.0]))
    assert average_drop(model, x, mask, target=0).item() == 0.0
    torch.testing.assert_close(average_drop(model, x, 1 - mask, target=0), (y - o_inverse) / y)


def test_improved_drop_moves_no_more_than_the_scores() -> None:
    # The fluctuation: Y = 0.30, O lowered from 0.295 by 0.0025. The classic drop
    # moves by 0.0025 / Y = 0.0083 (from 0.0167 to 0.025), the improved drop by 0.0025.
    x, attributions = torch.ones(1, 1, 4, 4), torch.rand(1, 4, 4)
    kwargs = dict(target=0, score_fn="identity")
    before = Lookup(0.30, 0.295, 0.29)
    after = Lookup(0.30, 0.2925, 0.29)
    torch.testing.assert_close(
        average_drop(before, x, attributions, **kwargs), torch.tensor([0.005 / 0.3])
    )
    torch.testing.assert_close(
        average_drop(after, x, attributions, **kwargs), torch.tensor([0.025])
    )
    torch.testing.assert_close(
        improved_average_drop(before, x, attributions, **kwargs), torch.tensor([0.005])
    )
    torch.testing.assert_close(
        improved_average_drop(after, x, attributions, **kwargs), torch.tensor([0.0075])
    )


def test_a_near_all_ones_map_keeps_no_more_than_its_budget() -> None:
    x = torch.ones(1, 1, 4, 4)
    model = RegionEvidence(REGION, inside=4.0, outside=0.0, bias=-2.0)
    mask = REGION.float().expand(1, 4, 4)
    near_ones = torch.ones(1, 4, 4)
    near_ones[0, 0, 0] = 0  # one background pixel
    constant = torch.ones(1, 4, 4)
    y = torch.sigmoid(torch.tensor([2.0]))
    # The classic drop: the near-all-ones map keeps 15/16 of the image, the object whole, and
    # scores the best drop, 0; the constant map is normalised to zeros, the blank image.
    assert average_drop(model, x, near_ones, target=0).item() == 0.0
    torch.testing.assert_close(
        average_drop(model, x, constant, target=0), (y - torch.sigmoid(torch.tensor([-2.0]))) / y
    )
    # Improved: at a budget of k pixels the 15 tied pixels keep k/15 each, the object's mean.
    near_kept = [torch.sigmoid(torch.tensor([4 * k / 15 - 2])) for k in (1, 2, 4, 8)]
    constant_kept = [torch.sigmoid(torch.tensor([4 * k / 16 - 2])) for k in (1, 2, 4, 8)]
    object_kept = [torch.sigmoid(torch.tensor([a])) for a in (-1.0, 0.0, 2.0, 2.0)]
    near_drop = improved_average_drop(model, x, near_ones, target=0, budgets=BUDGETS)
    torch.testing.assert_close(near_drop, _improved_drop_by_hand(y, near_kept))
    torch.testing.assert_close(
        improved_average_drop(model, x, constant, target=0, budgets=BUDGETS),
        _improved_drop_by_hand(y, constant_kept),
    )
    object_drop = improved_average_drop(model, x, mask, target=0, budgets=BUDGETS)
    torch.testing.assert_close(object_drop, _improved_drop_by_hand(y, object_kept))
    assert near_drop.item() == pytest.approx(0.5925, abs=1e-4)
    assert object_drop.item() == pytest.approx(0.2482, abs=1e-4)


class Recorder:
    """A model that keeps every batch it is given."""

    def __init__(self, model: nn.Module) -> None:
        self.model, self.batches = model, []

    def __call__(self, x: Tensor) -> Tensor:
        self.batches.append(x.clone())
        return self.model(x)


def _tie_shared_weights(values: Tensor, kept: float) -> Tensor:
    """Reference: pixel p keeps clip((kept - #greater) / #equal, 0, 1), counted by brute force."""
    flat = values.flatten()
    greater = (flat[None, :] > flat[:, None]).sum(1).double()
    equal = (flat[None, :] == flat[:, None]).sum(1).double()
    return ((kept - greater) / equal).clamp(0, 1).view_as(values)


def test_retained_images_and_noisy_copies_are_the_documented_ones() -> None:
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 6, 6, generator=gen)
    maps = (torch.rand(2, 6, 6, generator=gen) * 4).floor()  # four levels: many ties
    recorder = Recorder(_classifier(classes=3))
    budgets = (0.1, 0.3, 1.0)
    scores = confidence_scores(
        recorder, x, maps, target=1, budgets=budgets, noise_copies=2, noise_scale=0.05, seed=7
    )
    rows = torch.cat(recorder.batches).view(7, 2, 3, 6, 6)  # Y, O, 3 budgets, 2 copies
    torch.testing.assert_close(rows[0], x)
    torch.testing.assert_close(rows[1], saliency_maps(maps, (6, 6), 2)[:, None] * x)
    for slot, budget in enumerate(budgets, start=2):
        for i in range(2):
            weights = _tie_shared_weights(maps[i].double(), budget * 36)
            assert weights.sum().item() == pytest.approx(budget * 36)
            torch.testing.assert_close(rows[slot, i], weights.float() * x[i])
    patterns = torch.randn((2, 3, 6, 6), generator=torch.Generator().manual_seed(7))
    for copy in range(2):
        for i in range(2):
            expected = x[i] + 0.05 * x[i].std() * patterns[copy]
            torch.testing.assert_close(rows[5 + copy, i], expected)
    assert scores.retained.shape == (3, 2) and scores.noisy.shape == (2, 2)
    assert scores.masked.shape == (2,)


def test_the_jitter_sets_the_dead_zone_and_the_soft_count_in_confidence_metrics() -> None:
    model = _classifier()
    x, maps, target = _batch(n=4)
    kwargs = dict(target=target, noise_scale=0.5, seed=2)
    scores = confidence_scores(model, x, maps, **kwargs, retained_jitter=True)
    y, kept, noisy = scores.original, scores.retained, scores.noisy
    jitter = (noisy - y).pow(2).mean(0).sqrt()
    assert (jitter > 1e-4).all()
    change = y - kept
    drop = (change.sign() * (change.abs() - 2 * 2**0.5 * jitter).clamp_min(0)).mean(0)
    # The increase: the jitter of the change covers O_b's own, from its 4 noisy copies.
    kept_jitter = (scores.retained_noisy - kept[:, None]).pow(2).mean(1).sqrt()
    assert scores.retained_noisy.shape == (4, 4, 4) and (kept_jitter > 1e-4).all()
    spread = (jitter.pow(2) + kept_jitter.pow(2)).sqrt()
    normal = torch.distributions.Normal(0.0, 1.0)
    increase = (2 * normal.cdf((kept - y) / spread) - 1).clamp_min(0).mean(0)
    values = confidence_metrics(model, x, maps, **kwargs)
    torch.testing.assert_close(values["improved_average_drop"], drop)
    torch.testing.assert_close(values["improved_average_increase"], increase)
    torch.testing.assert_close(improved_average_drop(model, x, maps, **kwargs), drop)
    torch.testing.assert_close(improved_average_increase(model, x, maps, **kwargs), increase)
    # Without noisy copies there is no dead zone and the count is a hard count.
    bare = confidence_metrics(model, x, maps, target=target, noise_copies=0)
    torch.testing.assert_close(bare["improved_average_drop"], change.mean(0))
    # Without them only the relative floor is left: a hard count of clear rises.
    floor = 1e-3 * torch.maximum(y, kept)
    hard = (2 * normal.cdf((kept - y) / floor) - 1).clamp_min(0).mean(0)
    torch.testing.assert_close(bare["improved_average_increase"], hard)
    assert not torch.allclose(values["improved_average_drop"], bare["improved_average_drop"])


def test_the_improved_increase_does_not_depend_on_the_scale_of_the_scores() -> None:
    model = _classifier()
    x, maps, target = _batch(n=4)
    probabilities = improved_average_increase(model, x, maps, target=target)
    rescaled = improved_average_increase(
        model, x, maps, target=target, score_fn=lambda out: 40 * out.softmax(1) - 7
    )
    torch.testing.assert_close(rescaled, probabilities, rtol=1e-4, atol=1e-4)
    assert 0.05 < probabilities.mean().item() < 0.95


def test_the_improved_increase_is_0_where_nothing_rises_and_scale_free_at_any_scale() -> None:
    x, maps, target = _batch(n=4)
    # An input-blind model: every score equals Y, on every map, and nothing rose.
    blind = nn.Sequential(nn.Flatten(), nn.Linear(3 * 12 * 12, 4)).eval()
    with torch.no_grad():
        blind[1].weight.zero_()
        blind[1].bias.copy_(torch.tensor([3.0, 1.0, 0.0, -1.0]))
    for attributions in (maps, torch.rand(4, 1, 6, 6), torch.ones(4, 1, 6, 6)):
        assert not improved_average_increase(blind, x, attributions, target=target).any()
    # Scores a million times smaller: the same values (the floor is relative).
    model = _classifier()
    probabilities = improved_average_increase(model, x, maps, target=target)
    tiny = improved_average_increase(
        model, x, maps, target=target, score_fn=lambda out: 1e-6 * out.softmax(1)
    )
    torch.testing.assert_close(tiny, probabilities, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize(
    "metric", [average_drop, average_gain, improved_average_drop, confidence_metrics]
)
def test_metrics_whose_bounds_need_probabilities_reject_other_scores(metric) -> None:
    model = _classifier()
    x, maps, target = _batch(n=2)
    with pytest.raises(ValueError, match=r"score_fn must give probabilities in \[0, 1\]"):
        metric(model, x, maps * 10, target=target, score_fn="identity")


def test_deletion_and_insertion_by_hand() -> None:
    values = torch.tensor([[[[4.0, 3.0], [2.0, 1.0]]]])
    model = PixelSum(total=10.0)
    kwargs = dict(target=0, n_steps=4, substrate="zero", score_fn="identity")
    # Removing the largest first leaves 1, 0.6, 0.3, 0.1, 0 at fractions 0, 1/4, ..., 1.
    deletion, curve = deletion_auc(model, values, values, return_curve=True, **kwargs)
    torch.testing.assert_close(curve, torch.tensor([[1.0, 0.6, 0.3, 0.1, 0.0]]))
    torch.testing.assert_close(deletion, torch.tensor([0.25 * (0.5 + 0.6 + 0.3 + 0.1)]))
    insertion = insertion_auc(model, values, values, **kwargs)
    torch.testing.assert_close(insertion, torch.tensor([0.25 * (0.4 + 0.7 + 0.9 + 0.5)]))
    # The reversed map deletes the smallest first.
    reversed_map = -values
    torch.testing.assert_close(
        deletion_auc(model, values, reversed_map, **kwargs),
        torch.tensor([0.25 * (0.5 + 0.9 + 0.7 + 0.4)]),
    )


def test_pointing_games_by_hand() -> None:
    attributions = torch.zeros(2, 1, 10, 10)
    attributions[0, 0, 1, 1] = 3.0
    attributions[0, 0, 6:8, 6:8] = 1.0
    attributions[1, 0, 9, 9] = 1.0
    mask = torch.zeros(2, 10, 10, dtype=torch.bool)
    mask[:, 5:9, 5:9] = True
    # Energy after min-max: sample 0 has 3 -> 1 outside and four 1/3 inside.
    torch.testing.assert_close(
        energy_pointing_game(attributions, mask), torch.tensor([(4 / 3) / (1 + 4 / 3), 0.0])
    )
    # The maximum of sample 0 at (1, 1) is sqrt(32) ~ 5.7 px from (5, 5); sample 1's at (9, 9)
    # is 1.41 px from (8, 8).
    torch.testing.assert_close(
        pointing_game(attributions, mask, tolerance=0), torch.tensor([0.0, 0.0])
    )
    torch.testing.assert_close(
        pointing_game(attributions, mask, tolerance=1), torch.tensor([0.0, 0.0])
    )
    torch.testing.assert_close(
        pointing_game(attributions, mask, tolerance=2), torch.tensor([0.0, 1.0])
    )
    torch.testing.assert_close(
        pointing_game(attributions, mask, tolerance=6), torch.tensor([1.0, 1.0])
    )


def test_grid_pointing_game_by_hand() -> None:
    cell = torch.zeros(3, 4, 4, dtype=torch.bool)
    cell[:, :2, :2] = True  # the top-left cell of a 2 x 2 grid
    attributions = torch.zeros(3, 1, 4, 4)
    attributions[0, 0, 0, 0] = 3.0
    attributions[0, 0, 3, 3] = 1.0  # 3 of 4 units of positive attribution in the cell
    attributions[1] = -1.0
    attributions[1, 0, 1, 1] = 2.0  # negative values are no attribution: all of it inside
    attributions[2] = 0.5  # a floor counts everywhere (min-max would erase it): a quarter
    torch.testing.assert_close(
        grid_pointing_game(attributions, cell), torch.tensor([0.75, 1.0, 0.25])
    )
    # A 2 x 2 map of cell values, upsampled bilinearly to 4 x 4: each cell keeps its share
    # up to the blending at the border, which bilinear interpolation makes symmetric.
    coarse = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    up = torch.nn.functional.interpolate(coarse, size=(4, 4), mode="bilinear")
    expected = up[0, 0, :2, :2].sum() / up.sum()
    torch.testing.assert_close(grid_pointing_game(coarse, cell[:1]), expected[None])
    # No positive attribution: the cell's share of the image; an empty cell: NaN.
    empty = torch.zeros(1, 4, 4, dtype=torch.bool)
    assert grid_pointing_game(-torch.ones(1, 1, 4, 4), cell[:1]).item() == 0.25
    assert torch.isnan(grid_pointing_game(torch.ones(1, 1, 4, 4), empty)).all()


def test_boxes_are_the_union_of_pixel_centres_inside() -> None:
    boxes = [
        torch.tensor([[0.0, 0.0, 2.0, 1.0], [3.0, 3.0, 4.0, 4.0]]),
        torch.tensor([[0.6, 0.0, 1.4, 4.0]]),
    ]
    mask = boxes_to_mask(boxes, (4, 4))
    expected = torch.zeros(2, 4, 4, dtype=torch.bool)
    expected[0, 0, 0:2] = True
    expected[0, 3, 3] = True
    expected[1, :, 1] = False  # centre 1.5 is outside [0.6, 1.4]
    assert torch.equal(mask, expected)
    one_each = boxes_to_mask(torch.tensor([[1.0, 1.0, 3.0, 3.0]]), (4, 4))
    assert one_each.sum() == 4 and one_each[0, 1:3, 1:3].all()


def test_constant_and_empty_cases_are_documented_values() -> None:
    constant = torch.ones(2, 1, 4, 4)
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[0, :2] = True
    energy = energy_pointing_game(constant, mask)
    assert energy[0].item() == 0.5 and torch.isnan(energy[1])
    hits = pointing_game(constant, mask)
    assert hits[0].item() == 0.0 and torch.isnan(hits[1])
    outside = pointing_game(
        constant, boxes=torch.tensor([[10.0, 10.0, 12.0, 12.0]] * 2), image_size=(4, 4)
    )
    assert torch.isnan(outside).all()


def test_saliency_maps_by_hand() -> None:
    # Two channels sum to [[0, 1], [2, 4]]; min-max gives [[0, .25], [.5, 1]].
    attributions = torch.tensor([[[[0.0, 1.0], [1.0, 3.0]], [[0.0, 0.0], [1.0, 1.0]]]])
    expected = torch.tensor([[[0.0, 0.25], [0.5, 1.0]]])
    torch.testing.assert_close(saliency_maps(attributions, (2, 2), 1), expected)
    torch.testing.assert_close(saliency_maps(attributions.sum(1), (2, 2), 1), expected)
    # A constant map and one of NaN become zeros; NaN elsewhere counts as 0.
    special = torch.stack([torch.full((2, 2), 7.0), torch.full((2, 2), float("nan"))])
    assert torch.equal(saliency_maps(special, (2, 2), 2), torch.zeros(2, 2, 2))
    partly_nan = torch.tensor([[[float("nan"), 2.0], [1.0, 0.0]]])
    torch.testing.assert_close(
        saliency_maps(partly_nan, (2, 2), 1), torch.tensor([[[0.0, 1.0], [0.5, 0.0]]])
    )
    with pytest.raises(ValueError, match="with N = 2"):
        saliency_maps(attributions, (2, 2), 2)
    with pytest.raises(TypeError, match="attributions must be a tensor"):
        saliency_maps(attributions.numpy(), (2, 2), 1)


def test_upsampling_is_bilinear_with_pixel_centres() -> None:
    # Upsampling [[0, 4]] to 4 columns with pixel centres (align_corners=False): output
    # centres 0.5, 1.5, 2.5, 3.5 fall at input coordinates -0.25 (clamped to 0), 0.25, 0.75
    # and 1.25 (clamped to 1): the values 0, 1, 3, 4. Nearest would give 0, 0, 4, 4.
    row = torch.tensor([[[0.0, 4.0]]])
    expected = torch.tensor([[[0.0, 0.25, 0.75, 1.0]]])
    torch.testing.assert_close(saliency_maps(row, (1, 4), 1), expected)
    torch.testing.assert_close(
        saliency_maps(row.transpose(1, 2), (4, 1), 1), expected.transpose(1, 2)
    )


def test_a_nan_cell_does_not_spread_when_upsampled() -> None:
    gen = torch.Generator().manual_seed(0)
    low = torch.rand(2, 1, 4, 4, generator=gen) + 1
    broken = low.clone()
    broken[0, 0, 1, 2] = float("nan")
    broken[1, 0, 3, 0] = float("inf")
    zeroed = torch.where(torch.isfinite(broken), broken, 0.0)
    torch.testing.assert_close(
        saliency_maps(broken, (16, 16), 2), saliency_maps(zeroed, (16, 16), 2)
    )


class _HalfReader(nn.Module):
    """Class 0's logit falls as one half of the image moves away from ``reference``
    (class 1's is 0): a model that looks at that half only."""

    def __init__(self, reference: Tensor, top: bool) -> None:
        super().__init__()
        rows = slice(0, 16) if top else slice(16, 32)
        self.rows, self.reference = rows, reference[:, :, rows]

    def forward(self, x: Tensor) -> Tensor:
        change = (x[:, :, self.rows] - self.reference).square().mean((1, 2, 3))
        evidence = 5 - 100 * change
        return torch.stack((evidence, torch.zeros_like(evidence)), 1)


def test_ties_are_broken_in_no_spatial_order() -> None:
    # A constant map ranks no pixel above another. Read in raster order (the order of a
    # map that falls pixel by pixel along the rows), the top half goes first: a model that
    # reads the top half would look explained, one that reads the bottom half not. With
    # ties broken at random both lose their evidence at about the same pace.
    x = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    maps = {
        "flat": torch.full((1, 1, 32, 32), 0.5),
        "raster": -torch.arange(32.0 * 32).view(1, 1, 32, 32),
    }
    scored = {
        "deletion": lambda m, a: deletion_auc(m, x, a, target=0, n_steps=16, score_fn="identity"),
        "insertion": lambda m, a: insertion_auc(
            m, x, a, target=0, n_steps=16, substrate="zero", score_fn="identity"
        ),
        "road": lambda m, a: road_most_relevant_first(
            m, x, a, target=0, noise=0.0, score_fn="identity"
        ),
    }
    for name, metric in scored.items():
        gap = {
            kind: abs(
                (metric(_HalfReader(x, True), attr) - metric(_HalfReader(x, False), attr)).item()
            )
            for kind, attr in maps.items()
        }
        assert gap["flat"] < 0.25 * gap["raster"], (name, gap)
    # The order is seeded: the same seed, the same order; another seed, another order.
    model = _HalfReader(x, True).eval()
    flat = maps["flat"]
    first = deletion_auc(model, x, flat, target=0, n_steps=16, seed=3)
    assert deletion_auc(model, x, flat, target=0, n_steps=16, seed=3) == first
    assert deletion_auc(model, x, flat, target=0, n_steps=16, seed=4) != first


def test_a_plateau_of_maxima_scores_the_share_within_reach() -> None:
    # A 10 x 10 image, the object the 2 x 2 block at rows and columns 4-5.
    mask = torch.zeros(1, 10, 10, dtype=torch.bool)
    mask[:, 4:6, 4:6] = True
    # Near all ones: every pixel but one ties at the maximum; 4 of those 99 are on the object.
    near_ones = torch.ones(1, 1, 10, 10)
    near_ones[0, 0, 0, 0] = 0.0
    assert pointing_game(near_ones, mask, tolerance=0).item() == pytest.approx(4 / 99)
    # Within 1 px (a disk of radius 1): the block and its 8 edge neighbours, 12 pixels.
    assert pointing_game(near_ones, mask, tolerance=1).item() == pytest.approx(12 / 99)
    # The inverse mask has no maximum on the object: at tolerance 1 only its 8 neighbours.
    inverse = (~mask).float()[:, None]
    assert pointing_game(inverse, mask, tolerance=0).item() == 0.0
    assert pointing_game(inverse, mask, tolerance=1).item() == pytest.approx(8 / 96)
    # A single maximum is still a hit or a miss.
    peak = torch.zeros(1, 1, 10, 10)
    peak[0, 0, 4, 5] = 1.0
    assert pointing_game(peak, mask, tolerance=0).item() == 1.0
    peak = torch.zeros(1, 1, 10, 10)
    peak[0, 0, 0, 9] = 1.0
    assert pointing_game(peak, mask, tolerance=3).item() == 0.0


def test_the_pointing_game_tolerance_scales_with_the_image() -> None:
    assert default_tolerance((224, 224)) == 15 and default_tolerance((64, 80)) == 4
    gen = torch.Generator().manual_seed(0)
    for side, expected in ((64, 4), (224, 15), (448, 30)):
        maps = torch.rand(6, 1, 8, 8, generator=gen)
        mask = torch.zeros(6, side, side, dtype=torch.bool)
        mask[:, side // 3 : side // 2, side // 3 : side // 2] = True
        torch.testing.assert_close(
            pointing_game(maps, mask), pointing_game(maps, mask, tolerance=expected)
        )


def test_a_model_that_outputs_probabilities_is_warned_about_a_second_softmax() -> None:
    probabilities = nn.Sequential(_classifier(), nn.Softmax(dim=1)).eval()
    x, maps, target = _batch()
    message = r"already look like probabilities .* pass score_fn='identity'"
    with pytest.warns(UserWarning, match=message) as caught:
        average_gain(probabilities, x, maps, target=target)
    assert caught[0].filename == __file__  # the warning names the caller's line
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        as_they_are = average_gain(probabilities, x, maps, target=target, score_fn="identity")
        average_gain(_classifier(), x, maps, target=target)  # logits: no warning
    torch.testing.assert_close(as_they_are, average_gain(_classifier(), x, maps, target=target))


def test_every_metric_refuses_non_finite_maps_and_names_the_examples() -> None:
    model = _classifier()
    x, maps, target = _batch()
    mask = torch.zeros(len(x), *x.shape[-2:], dtype=torch.bool)
    mask[:, 2:6, 2:6] = True
    broken = maps.clone()
    broken[1, 0, 0, 0] = float("nan")
    broken[3, 0, 2, 2] = float("inf")
    calls = {
        "average_drop": lambda m: average_drop(model, x, m, target=target),
        "improved_average_increase": lambda m: improved_average_increase(
            model, x, m, target=target
        ),
        "insertion": lambda m: insertion_auc(model, x, m, target=target, n_steps=2),
        "deletion": lambda m: deletion_auc(model, x, m, target=target, n_steps=2),
        "road": lambda m: road_most_relevant_first(model, x, m, target=target, fractions=(0.5,)),
        "energy": lambda m: energy_pointing_game(m, mask),
        "energy_minmax": lambda m: energy_pointing_game(m, mask, normalization="minmax"),
        "pointing": lambda m: pointing_game(m, mask),
        "grid": lambda m: grid_pointing_game(m, mask),
    }
    for call in calls.values():
        with pytest.raises(ValueError, match=r"NaN or infinite values for example\(s\) \[1, 3\]"):
            call(broken)
        call(broken.nan_to_num(0.0, 0.0, 0.0))  # what the message suggests works


def test_float64_maps_score_a_float32_model() -> None:
    model = _classifier()
    x, maps, target = _batch()
    for metric in (average_drop, average_gain, improved_average_drop):
        torch.testing.assert_close(
            metric(model, x, maps.double(), target=target),
            metric(model, x, maps, target=target),
            check_dtype=False,
        )


# --- agreement with independent implementations ------------------------------------------


def _classifier(seed: int = 0, classes: int = 4) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(32, classes),
    ).eval()


def _batch(n: int = 4, size: int = 12, seed: int = 1) -> tuple[Tensor, Tensor, list[int]]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, size, size, generator=gen)
    maps = torch.rand(n, 1, size // 2, size // 2, generator=gen)
    return x, maps, [i % 4 for i in range(n)]


def _raw_maps(n: int, size: int, seed: int = 5) -> Tensor:
    """Signed maps far from [0, 1], with their extremes in opposite corners (so that
    bilinear upsampling keeps them and normalising before or after it agrees)."""
    gen = torch.Generator().manual_seed(seed)
    raw = torch.randn(n, size, size, generator=gen) * 3 + 1
    raw[:, 0, 0] = raw.amin((1, 2)) - 1
    raw[:, -1, -1] = raw.amax((1, 2)) + 1
    return raw


def _min_max(maps: np.ndarray) -> np.ndarray:
    low = maps.min(axis=(1, 2), keepdims=True)
    return (maps - low) / (maps.max(axis=(1, 2), keepdims=True) - low)


def test_drop_and_increase_agree_with_pytorch_grad_cam_on_raw_maps() -> None:
    metrics = pytest.importorskip("pytorch_grad_cam.metrics.cam_mult_image")
    targets_module = pytest.importorskip("pytorch_grad_cam.utils.model_targets")
    image = pytest.importorskip("pytorch_grad_cam.utils.image")
    model = _classifier()
    x, _, target = _batch()
    raw = _raw_maps(4, 3)
    targets = [targets_module.ClassifierOutputSoftmaxTarget(t) for t in target]
    # pytorch-grad-cam's methods normalise and upsample (scale_cam_image: min-max, then
    # cv2.resize); its metrics multiply the image by the map as given.
    cams = image.scale_cam_image(raw.numpy(), (12, 12))
    theirs_drop = metrics.DropInConfidence()(x, cams, targets, model)
    theirs_increase = metrics.IncreaseInConfidence()(x, cams, targets, model)
    y = model(x).softmax(1)[torch.arange(4), target].detach()
    # Their drop is not divided by Y.
    ours_drop = average_drop(model, x, raw, target=target) * y
    np.testing.assert_allclose(ours_drop.numpy(), theirs_drop, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(
        average_increase(model, x, raw, target=target).numpy(), theirs_increase
    )
    # Given the raw map itself, their metric multiplies by raw values: a documented difference.
    full = nn.functional.interpolate(raw[:, None], size=(12, 12), mode="bilinear")[:, 0]
    raw_drop = metrics.DropInConfidence()(x, full.numpy(), targets, model)
    normalised_drop = metrics.DropInConfidence()(x, _min_max(full.numpy()), targets, model)
    np.testing.assert_allclose(ours_drop.numpy(), normalised_drop, rtol=1e-4, atol=1e-6)
    assert not np.allclose(raw_drop, normalised_drop, atol=1e-3)


class _GivenCams:
    """torchcam's CAM-extractor protocol, returning maps given in advance."""

    def __init__(self, model: nn.Module, cams: Tensor) -> None:
        self.model, self.cams = model, cams

    def __call__(self, class_idx, scores):
        return [self.cams]

    def fuse_cams(self, cams):
        return cams[0]

    def _hooks_off(self):
        return contextlib.nullcontext()


def _torchcam_normalised(raw: Tensor) -> Tensor:
    core = pytest.importorskip("torchcam.methods.core")
    return core._CAM._normalize(raw.clone())


def test_drop_and_increase_agree_with_torchcam_on_raw_maps() -> None:
    torchcam_metrics = pytest.importorskip("torchcam.metrics")
    model = _classifier()
    x, _, target = _batch()
    raw = _raw_maps(4, 6)
    # torchcam normalises the layer's map, then its metric upsamples it (bilinear).
    cams = _GivenCams(model, _torchcam_normalised(raw))
    metric = torchcam_metrics.ClassificationMetric(cams, lambda z: z.softmax(-1))
    metric.update(x, class_idx=target)
    theirs = metric.summary()
    assert average_drop(model, x, raw, target=target).mean().item() == pytest.approx(
        theirs["avg_drop"], rel=1e-5, abs=1e-6
    )
    assert average_increase(model, x, raw, target=target).mean().item() == pytest.approx(
        theirs["conf_increase"]
    )


def test_normalising_after_upsampling_differs_from_torchcam_where_the_peak_is_inside() -> None:
    torchcam_metrics = pytest.importorskip("torchcam.metrics")
    model = _classifier()
    x, _, target = _batch()
    raw = _raw_maps(4, 6)
    raw[:, 2, 3] = raw.amax((1, 2)) + 5  # a peak no output pixel centre falls on (x2 upsampling)

    def torchcam_drop(cams: Tensor) -> float:
        metric = torchcam_metrics.ClassificationMetric(
            _GivenCams(model, _torchcam_normalised(cams)), lambda z: z.softmax(-1)
        )
        metric.update(x, class_idx=target)
        return metric.summary()["avg_drop"]

    ours = average_drop(model, x, raw, target=target).mean().item()
    # We upsample, then normalise: the same as torchcam given the upsampled raw map.
    upsampled = nn.functional.interpolate(raw[:, None], size=(12, 12), mode="bilinear")[:, 0]
    assert ours == pytest.approx(torchcam_drop(upsampled), rel=1e-5, abs=1e-6)
    # torchcam normalises the low-resolution map first; its upsampled peak stays below 1.
    assert ours != pytest.approx(torchcam_drop(raw), rel=1e-3)
    # A map and the same map upsampled score alike.
    torch.testing.assert_close(
        average_drop(model, x, upsampled, target=target), average_drop(model, x, raw, target=target)
    )


def test_a_constant_map_at_layer_resolution_scores_as_a_constant_map() -> None:
    model = _classifier()
    x, _, target = _batch()
    mask = torch.zeros(len(x), *x.shape[-2:], dtype=torch.bool)
    mask[:, 3:8, 3:8] = True
    # Bilinear upsampling of a constant 0.7 leaves a float ripple; normalised first, none.
    layer_sized = torch.full((len(x), 1, 5, 5), 0.7)
    image_sized = torch.full((len(x), 1, *x.shape[-2:]), 0.7)
    assert not saliency_maps(layer_sized, x.shape[-2:], len(x)).any()
    for metric in (average_drop, improved_average_drop, average_gain):
        torch.testing.assert_close(
            metric(model, x, layer_sized, target=target),
            metric(model, x, image_sized, target=target),
        )
    assert not pointing_game(layer_sized, mask, tolerance=0).any()


@pytest.mark.parametrize("n_steps", [4, 9])
def test_insertion_and_deletion_agree_with_torchcam(n_steps: int) -> None:
    torchcam_metrics = pytest.importorskip("torchcam.metrics")
    model = _classifier()
    x, _, target = _batch()
    raw = _raw_maps(4, 6)
    metric = torchcam_metrics.DeletionInsertionMetric(
        _GivenCams(model, _torchcam_normalised(raw)),
        lambda z: z.softmax(-1),
        steps=n_steps,
        batch_size=7,
    )
    metric.update(x, class_idx=target)
    theirs = metric.summary()
    kwargs = dict(target=target, n_steps=n_steps, substrate="zero")
    assert deletion_auc(model, x, raw, **kwargs).mean().item() == pytest.approx(
        theirs["deletion_auc"], rel=1e-5
    )
    assert insertion_auc(model, x, raw, **kwargs).mean().item() == pytest.approx(
        theirs["insertion_auc"], rel=1e-5
    )


def test_the_blur_substrate_is_rises_kernel_with_zero_padding() -> None:
    ndimage = pytest.importorskip("scipy.ndimage")
    impulse = np.zeros((11, 11))
    impulse[5, 5] = 1
    kernel = ndimage.gaussian_filter(impulse, 5)  # RISE's gkern(11, 5)
    np.testing.assert_allclose(rise_kernel().numpy(), kernel, rtol=0, atol=1e-15)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 9, 14, generator=gen, dtype=torch.float64)
    # RISE's conv2d(x, kern, padding=5): a correlation per channel, zeros outside the image.
    expected = np.stack(
        [[ndimage.correlate(c, kernel, mode="constant", cval=0.0) for c in image] for image in x]
    )
    np.testing.assert_allclose(rise_blur(x).numpy(), expected, rtol=0, atol=1e-12)
    # Insertion starts from that substrate by default.
    model = _classifier().double()
    maps = torch.rand(2, 1, 9, 14, generator=gen, dtype=torch.float64)
    kwargs = dict(target=1, n_steps=3, return_curve=True)
    _, default = insertion_auc(model, x, maps, **kwargs)
    _, given = insertion_auc(model, x, maps, substrate=torch.from_numpy(expected), **kwargs)
    torch.testing.assert_close(default, given)
    first = model(torch.from_numpy(expected)).softmax(1)[:, 1].detach()
    torch.testing.assert_close(default[:, 0], first)


def test_localisation_agrees_with_quantus_on_raw_maps() -> None:
    quantus = pytest.importorskip("quantus")
    gen = torch.Generator().manual_seed(0)
    signed = torch.randn(6, 1, 10, 10, generator=gen) * 2 + 0.5
    floor = torch.rand(6, 1, 10, 10, generator=gen) + 0.3  # non-negative, minimum above 0
    mask = torch.zeros(6, 1, 10, 10)
    for i in range(6):
        mask[i, 0, i : i + 4, 2 : 2 + i + 2] = 1
    x = torch.rand(6, 3, 10, 10, generator=gen).numpy()
    y = np.zeros(6, dtype=int)

    def theirs(metric, maps: Tensor) -> np.ndarray:
        scores = metric(
            model=None, x_batch=x, y_batch=y, a_batch=maps.numpy(), s_batch=mask.numpy()
        )
        return np.asarray(scores, dtype=np.float32)

    pointing = quantus.PointingGame(disable_warnings=True)
    np.testing.assert_array_equal(
        pointing_game(signed, mask[:, 0], tolerance=0).numpy(), theirs(pointing, signed)
    )
    # Quantus' energy share is on |a|, Score-CAM's (ours) on the positive part: equal on
    # non-negative maps, and Quantus clipped to the positive part equals ours on any map.
    energy = quantus.AttributionLocalisation(disable_warnings=True)
    np.testing.assert_allclose(
        energy_pointing_game(floor, mask[:, 0]).numpy(), theirs(energy, floor), rtol=1e-5
    )
    positive = quantus.AttributionLocalisation(
        disable_warnings=True, abs=False, positive_attributions=True
    )
    np.testing.assert_allclose(
        energy_pointing_game(signed, mask[:, 0]).numpy(), theirs(positive, signed), rtol=1e-5
    )
    assert not np.allclose(energy_pointing_game(signed, mask[:, 0]).numpy(), theirs(energy, signed))
    # Documented difference on degenerate maps: Quantus refuses a constant map; here it points
    # nowhere (a collapsed explanation cannot win) and spreads its energy evenly.
    for constant in (torch.ones(6, 1, 10, 10), torch.zeros(6, 1, 10, 10)):
        with pytest.raises(AssertionError, match="all equal to"):
            theirs(pointing, constant)
        assert pointing_game(constant, mask[:, 0], tolerance=0).eq(0).all()
        torch.testing.assert_close(energy_pointing_game(constant, mask[:, 0]), mask.mean((1, 2, 3)))


def test_energy_is_on_the_raw_map_with_min_max_as_an_option() -> None:
    quantus = pytest.importorskip("quantus")
    # The map: 1.0 on the object, 0.5 elsewhere; the object is 9 of 100 pixels.
    mask = torch.zeros(1, 10, 10, dtype=torch.bool)
    mask[0, 2:5, 2:5] = True
    floor = torch.where(mask, 1.0, 0.5)[:, None]
    torch.testing.assert_close(energy_pointing_game(floor, mask), torch.tensor([9 / (9 + 45.5)]))
    assert energy_pointing_game(floor, mask, normalization="minmax").item() == 1.0
    theirs = quantus.AttributionLocalisation(disable_warnings=True)(
        model=None,
        x_batch=np.zeros((1, 3, 10, 10), dtype=np.float32),
        y_batch=np.zeros(1, dtype=int),
        a_batch=floor.numpy(),
        s_batch=mask[:, None].float().numpy(),
    )
    assert theirs[0] == pytest.approx(9 / 54.5, rel=1e-5)
    # A layer-sized map is upsampled (bilinear) before its energy is taken.
    low = torch.tensor([[[[0.0, 4.0]]]])
    right = torch.zeros(1, 1, 4, dtype=torch.bool)
    right[0, 0, 2:] = True
    torch.testing.assert_close(energy_pointing_game(low, right), torch.tensor([7 / 8]))
    with pytest.raises(ValueError, match="normalization must be one of"):
        energy_pointing_game(floor, mask, normalization="max")


def test_energy_depends_on_the_maps_contrast_and_the_pointing_game_does_not() -> None:
    # Squaring keeps every pixel's rank but lowers the floor against the peak: object
    # 8 x 1.0 + 1.5, floor 91 x 0.5; squared 8 x 1.0 + 2.25 and 91 x 0.25. The energy
    # share rises, the single maximum stays (docs/metrics.md: compare maps of one degree).
    mask = torch.zeros(1, 10, 10, dtype=torch.bool)
    mask[0, 2:5, 2:5] = True
    floor = torch.where(mask, 1.0, 0.5)[:, None]
    floor[0, 0, 3, 3] = 1.5
    torch.testing.assert_close(
        energy_pointing_game(floor, mask), torch.tensor([9.5 / (9.5 + 45.5)])
    )
    torch.testing.assert_close(
        energy_pointing_game(floor.square(), mask), torch.tensor([10.25 / (10.25 + 22.75)])
    )
    assert pointing_game(floor, mask).item() == pointing_game(floor.square(), mask).item() == 1.0


def _road_reference(order: str, percentile: int):
    road = pytest.importorskip("pytorch_grad_cam.metrics.road")
    perturbation = pytest.importorskip("pytorch_grad_cam.metrics.perturbation_confidence")
    remove = {
        "most": perturbation.RemoveMostRelevantFirst,
        "least": perturbation.RemoveLeastRelevantFirst,
    }[order]
    imputer = road.NoisyLinearImputer(noise=0.0)
    return perturbation.PerturbationConfidenceMetric(remove(percentile, imputer))


def test_imputation_agrees_with_roads_exact_solver() -> None:
    road = pytest.importorskip("pytorch_grad_cam.metrics.road")
    from captum_infocam.benchmark.items import ShapesItems

    images = ShapesItems("single", 2).load(range(2)).image  # the benchmark's 64-pixel images
    gen = torch.Generator().manual_seed(0)
    ranking = torch.rand(2, 1, 8, 8, generator=gen)
    order = torch.argsort(saliency_maps(ranking, (64, 64), 2).flatten(1), dim=1, descending=True)
    exact = road.NoisyLinearImputer(noise=0.0)
    for fraction in (0.1, 0.5, 0.9):
        removed = torch.zeros(2, 64 * 64, dtype=torch.bool)
        removed.scatter_(1, order[:, : round(fraction * 64 * 64)], True)
        removed = removed.view(2, 64, 64)
        ours = noisy_linear_imputation(images, removed, noise=0.0)
        theirs = torch.stack([exact(images[i], (~removed[i]).float()) for i in range(2)])
        error = (ours - theirs).abs()
        # Converged: 32 iterations per level, the default before 2026-12-04, missed by 7e-3.
        assert error[removed[:, None].expand_as(error)].mean() < 1e-5, fraction
        assert error.max() < 1e-4, fraction
        assert torch.equal(
            ours[~removed[:, None].expand_as(ours)], images[~removed[:, None].expand_as(images)]
        )
    # The noise: exactly noise times the given pattern, on the removed pixels only.
    pattern = torch.randn(2, 3, 64, 64, generator=gen)
    noisy = noisy_linear_imputation(images, removed, noise=0.01, noise_pattern=pattern)
    quiet = noisy_linear_imputation(images, removed, noise=0.0)
    torch.testing.assert_close(noisy - quiet, 0.01 * pattern * removed[:, None])


@pytest.mark.parametrize("order", ["most", "least"])
def test_road_agrees_with_pytorch_grad_cam(order: str) -> None:
    targets_module = pytest.importorskip("pytorch_grad_cam.utils.model_targets")
    model = _classifier()
    gen = torch.Generator().manual_seed(4)
    x = torch.rand(3, 3, 10, 10, generator=gen)
    raw = torch.randn(3, 10, 10, generator=gen)  # 100 distinct values: the same pixel counts
    target = [0, 1, 2]
    targets = [targets_module.ClassifierOutputSoftmaxTarget(t) for t in target]
    fractions = (0.2, 0.5, 0.9)
    # pytorch-grad-cam's percentile p removes 100 - p percent: the score minus Y, per fraction.
    theirs = np.mean(
        [
            _road_reference(order, round(100 * (1 - f)))(x, raw.numpy(), targets, model)
            for f in fractions
        ],
        axis=0,
    )
    metric = road_most_relevant_first if order == "most" else road_least_relevant_first
    ours = metric(model, x, raw, target=target, fractions=fractions, noise=0.0)
    y = model(x).softmax(1)[torch.arange(3), target].detach()
    np.testing.assert_allclose((ours - y).numpy(), theirs, rtol=0, atol=1e-4)


def test_road_orders_remove_opposite_ends_of_the_map() -> None:
    values = torch.tensor([[[[4.0, 3.0], [2.0, 1.0]]]])
    x = values.expand(1, 3, 2, 2).contiguous()
    model = PixelSum(total=30.0)
    kwargs = dict(target=0, fractions=(0.25, 0.5), noise=0.0, score_fn="identity")
    _, most = road_most_relevant_first(model, x, values, return_curve=True, **kwargs)
    _, least = road_least_relevant_first(model, x, values, return_curve=True, **kwargs)
    # Removing the 4 (then the 4 and 3) imputes them from their neighbours' weighted mean:
    # 4 -> (3/6 + 2/6 + 1/12) / (5/12) = 2.2; then 4 and 3 solve a 2 x 2 system.
    assert most[0, 0].item() == pytest.approx(3 * (2.2 + 3 + 2 + 1) / 30, abs=1e-4)
    assert least[0, 0].item() == pytest.approx(3 * (4 + 3 + 2 + 2.8) / 30, abs=1e-4)
    assert (most < least).all()


# --- properties -------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ALL_FORWARD_METRICS, ids=lambda f: f.__name__)
def test_chunked_and_unchunked_runs_agree(metric) -> None:
    model = _classifier()
    x, maps, target = _batch(n=5)
    kwargs = dict(n_steps=6) if metric in (insertion_auc, deletion_auc) else {}
    whole = metric(model, x, maps, target=target, **kwargs)
    for chunk in (1, 3, 7):
        torch.testing.assert_close(
            metric(model, x, maps, target=target, max_examples_per_batch=chunk, **kwargs), whole
        )
    assert whole.shape == (5,) and whole.dtype == torch.float32


@pytest.mark.parametrize("metric", ALL_FORWARD_METRICS, ids=lambda f: f.__name__)
def test_float64_is_preserved(metric) -> None:
    model = _classifier().double()
    x, maps, target = _batch(n=2)
    result = metric(model, x.double(), maps.double(), target=target)
    assert result.dtype == torch.float64 and result.device == x.device


def test_additional_forward_args_follow_their_examples() -> None:
    model = _classifier()
    x, maps, target = _batch(n=4)
    scale = torch.tensor([1.0, 2.0, 0.5, 3.0])

    def scaled(inputs: Tensor, factor: Tensor) -> Tensor:
        return model(inputs) * factor[:, None]

    separate = torch.cat(
        [
            deletion_auc(
                lambda z, i=i: scaled(z, scale[i : i + 1].expand(len(z))),
                x[i : i + 1],
                maps[i : i + 1],
                target=target[i],
                n_steps=4,
            )
            for i in range(4)
        ]
    )
    together = deletion_auc(
        scaled,
        x,
        maps,
        target=target,
        additional_forward_args=(scale,),
        n_steps=4,
        max_examples_per_batch=3,
    )
    torch.testing.assert_close(together, separate)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 3),
    size=st.integers(3, 9),
    map_size=st.integers(1, 9),
    seed=st.integers(0, 2**16),
    zero_map=st.booleans(),
    score_fn=st.sampled_from(["softmax", "sigmoid"]),
    logit_scale=st.sampled_from([1.0, 30.0]),
    copies=st.integers(0, 3),
)
def test_results_stay_within_their_documented_bounds(
    n: int,
    size: int,
    map_size: int,
    seed: int,
    zero_map: bool,
    score_fn: str,
    logit_scale: float,
    copies: int,
) -> None:
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(3 * size * size, 3)).eval()
    model = lambda z: logit_scale * linear(z)  # noqa: E731  (30: saturated probabilities)
    x = torch.randn(n, 3, size, size, generator=gen) * 3
    maps = (
        torch.zeros(n, 1, map_size, map_size)
        if zero_map
        else torch.randn(n, 1, map_size, map_size, generator=gen)
    )
    target = torch.randint(0, 3, (n,), generator=gen)
    kwargs = dict(target=target, score_fn=score_fn, noise_copies=copies, noise_scale=0.2)
    values = confidence_metrics(model, x, maps, **kwargs)
    y = confidence_scores(model, x, maps, **kwargs).original
    drop = values.pop("improved_average_drop")
    assert ((drop >= -(1 - y) - 1e-6) & (drop <= y + 1e-6)).all(), (drop, y)
    values["insertion"] = insertion_auc(model, x, maps, target=target, n_steps=3)
    values["deletion"] = deletion_auc(model, x, maps, target=target, n_steps=3)
    values["road"] = road_most_relevant_first(model, x, maps, target=target, fractions=(0.5,))
    mask = torch.rand(n, size, size, generator=gen) > 0.5
    values["energy"] = energy_pointing_game(maps, mask)
    values["pointing"] = pointing_game(maps, mask, tolerance=1)
    for name, value in values.items():
        assert value.shape == (n,), name
        finite = value[~torch.isnan(value)]
        assert ((finite >= 0) & (finite <= 1)).all(), (name, value)
        if name not in ("energy", "pointing"):
            assert torch.isfinite(value).all(), name
    assert torch.isnan(values["energy"]).eq(~mask.flatten(1).any(1)).all()


@settings(max_examples=40, deadline=None)
@given(
    y=st.floats(0.01, 1.0),
    o=st.floats(0.0, 1.0),
    shift=st.floats(-0.05, 0.05),
)
def test_the_improved_drop_is_1_lipschitz_where_the_classic_is_1_over_y(
    y: float, o: float, shift: float
) -> None:
    moved = min(max(o + shift, 1e-6), 1 - 1e-6)
    o = min(max(o, 1e-6), 1 - 1e-6)
    x, attributions = torch.ones(1, 1, 4, 4, dtype=torch.float64), torch.rand(1, 4, 4)

    def drops(partial: float) -> tuple[float, float]:
        model = Lookup(y, partial, 0.5)
        kwargs = dict(target=0, score_fn="identity")
        classic = average_drop(model, x, attributions.double(), **kwargs)
        improved = improved_average_drop(model, x, attributions.double(), **kwargs)
        return classic.item(), improved.item()

    (classic, improved), (classic_moved, improved_moved) = drops(o), drops(moved)
    change = abs(moved - o)
    assert abs(improved_moved - improved) <= change + 1e-12
    assert abs(classic_moved - classic) <= change / y + 1e-12
    assert -(1 - y) - 1e-12 <= improved <= y + 1e-12
    if o < y and moved < y:  # both drops: the classic moves by exactly change / y
        assert abs(classic_moved - classic) == pytest.approx(change / y, abs=1e-9)


@pytest.mark.parametrize(
    ("metric", "passes"),
    [
        (average_drop, 2),
        (average_increase, 2),
        (average_gain, 2),
        (improved_average_increase, 25),  # Y, 4 budgets, 4 copies of each of those 5
        (improved_average_drop, 9),
        (confidence_metrics, 26),
        (road_most_relevant_first, 9),
    ],
    ids=lambda v: getattr(v, "__name__", str(v)),
)
def test_each_confidence_metric_runs_only_the_forward_passes_it_needs(metric, passes: int) -> None:
    model = _classifier()
    x, maps, target = _batch(n=3)
    calls = []
    handle = model.register_forward_pre_hook(lambda module, args: calls.append(len(args[0])))
    try:
        metric(model, x, maps, target=target)
    finally:
        handle.remove()
    assert sum(calls) == 3 * passes and max(calls) == 3


def test_metrics_name_their_direction() -> None:
    lower = {average_drop, improved_average_drop, deletion_auc, road_most_relevant_first}
    for metric in [*ALL_FORWARD_METRICS, energy_pointing_game, pointing_game, grid_pointing_game]:
        assert metric.higher_is_better is (metric not in lower), metric.__name__


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda m, x, a: average_drop(m, x, a[:1], target=0), ValueError, "attributions must be"),
        (lambda m, x, a: average_drop(m, x, a, target=[0]), ValueError, "target list"),
        (
            lambda m, x, a: average_drop(m, x, a, target=0, score_fn="probit"),
            ValueError,
            r"score_fn must be one of \['identity', 'sigmoid', 'softmax'\], or a callable",
        ),
        (lambda m, x, a: insertion_auc(m, x, a, target=0, n_steps=0), ValueError, "n_steps"),
        (
            lambda m, x, a: insertion_auc(m, x, a, target=0, substrate="noise"),
            ValueError,
            r"substrate must be one of \['blur', 'zero'\], or a tensor or a callable",
        ),
        (
            lambda m, x, a: deletion_auc(m, x, a, target=0, max_examples_per_batch=0),
            ValueError,
            "max_examples",
        ),
        (lambda m, x, a: average_drop(m, x[0], a, target=0), ValueError, "inputs must be one"),
        (lambda m, x, a: energy_pointing_game(a), ValueError, "exactly one of mask and boxes"),
        (lambda m, x, a: pointing_game(a, boxes=torch.zeros(2, 4)), ValueError, "image_size"),
        (
            lambda m, x, a: improved_average_drop(m, x, a, target=0, budgets=(0.5, 1.5)),
            ValueError,
            r"budgets must be a sequence of fractions in \(0, 1\]",
        ),
        (
            lambda m, x, a: improved_average_increase(m, x, a, target=0, budgets=()),
            ValueError,
            "at least one budget",
        ),
        (
            lambda m, x, a: improved_average_drop(m, x, a, target=0, noise_copies=-1),
            ValueError,
            "noise_copies must be >= 0",
        ),
        (
            lambda m, x, a: improved_average_drop(m, x, a, target=0, noise_scale=-0.1),
            ValueError,
            "noise_scale must be finite and >= 0",
        ),
        (
            lambda m, x, a: road_most_relevant_first(m, x, a, target=0, fractions=(0.5, 1.0)),
            ValueError,
            r"fractions must be a non-empty sequence in \(0, 1\)",
        ),
        (
            lambda m, x, a: road_least_relevant_first(m, x, a, target=0, iterations=1.5),
            TypeError,
            "iterations must be an int",
        ),
        (lambda m, x, a: grid_pointing_game(a, torch.ones(8, 8)), ValueError, "mask must be"),
        (lambda m, x, a: grid_pointing_game(a[:1], torch.ones(2, 8, 8)), ValueError, "with N = 2"),
    ],
)
def test_bad_arguments_raise_clear_errors(call, error: type, message: str) -> None:
    model = _classifier()
    x, maps, _ = _batch(n=2)
    with pytest.raises(error, match=message):
        call(model, x, maps)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_metrics_run_on_cuda_without_per_step_synchronisation() -> None:
    model = _classifier().cuda()
    x, maps, target = (t.cuda() if isinstance(t, Tensor) else t for t in _batch(n=4))
    mask = torch.zeros(4, 12, 12, dtype=torch.bool, device="cuda")
    mask[:, 2:8, 3:9] = True
    for metric in ALL_FORWARD_METRICS:
        result = metric(model, x, maps, target=target)
        assert result.device.type == "cuda" and result.shape == (4,)
    assert energy_pointing_game(maps, mask).device.type == "cuda"
    assert pointing_game(maps, mask).device.type == "cuda"

    def synchronisations(call) -> int:
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as record:
                warnings.simplefilter("always")
                call()
        finally:
            torch.cuda.set_sync_debug_mode("default")
        return sum("synchroniz" in str(w.message) for w in record)

    def deletion(n_steps: int) -> int:
        return synchronisations(
            lambda: deletion_auc(
                model, x, maps, target=target, n_steps=n_steps, max_examples_per_batch=2
            )
        )

    # Argument checks synchronise once; the loop over steps and chunks must not.
    assert deletion(4) == deletion(32)

    def improved(copies: int, fractions: int) -> int:
        def call() -> None:
            confidence_metrics(
                model, x, maps, target=target, noise_copies=copies, max_examples_per_batch=2
            )
            road_most_relevant_first(
                model,
                x,
                maps,
                target=target,
                fractions=(0.5,) * fractions,
                max_examples_per_batch=2,
            )

        return synchronisations(call)

    # The probability check synchronises once per call; copies and fractions add none.
    assert improved(1, 1) == improved(6, 5)
