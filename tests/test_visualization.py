"""Visualisation helpers over Captum's: shapes, overlays, and maps with nothing to show."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from captum_infocam.visualization import compare_methods, overlay, to_hwc, upsample


def test_to_hwc_moves_channels_last() -> None:
    tensor = torch.arange(24.0).view(2, 3, 4)
    array = to_hwc(tensor)
    assert array.shape == (3, 4, 2) and array[1, 2, 1] == tensor[1, 1, 2].item()
    assert to_hwc(tensor[None]).shape == (3, 4, 2)
    assert to_hwc(tensor[0]).shape == (3, 4, 1)
    with pytest.raises(ValueError, match="expected"):
        to_hwc(torch.zeros(1, 1, 1, 1, 1))


def test_upsample_is_captums_interpolate() -> None:
    maps = torch.rand(2, 1, 4, 4)
    up = upsample(maps, (16, 16))
    assert up.shape == (2, 1, 16, 16)
    torch.testing.assert_close(up, torch.nn.functional.interpolate(maps, (16, 16), mode="bilinear"))


@pytest.mark.parametrize(
    "attribution",
    [
        torch.zeros(1, 4, 4),
        -torch.ones(1, 4, 4),
        torch.full((1, 4, 4), float("nan")),
        torch.rand(4, 4),
    ],
    ids=["all-zero", "negative-only", "nan", "random"],
)
def test_overlay_never_raises(attribution: torch.Tensor) -> None:
    figure = Figure()
    ax = figure.subplots()
    image = torch.rand(3, 16, 16)
    returned, axes = overlay(attribution, image, ax=ax, title="x")
    assert returned is figure and axes is ax and ax.get_title() == "x"
    notes = [text.get_text() for text in ax.texts]
    assert ("map is zero" in notes) == (not attribution.nan_to_num().clamp_min(0).any())


def test_overlay_rejects_an_unknown_sign_before_drawing() -> None:
    figure = Figure()
    ax = figure.subplots()
    with pytest.raises(ValueError, match=r"sign must be one of \['absolute_value', 'all'"):
        overlay(torch.rand(1, 4, 4), torch.rand(3, 16, 16), ax=ax, sign="both")
    assert not ax.images, "nothing may be drawn for a bad argument"


def test_compare_methods_draws_one_row_per_image() -> None:
    images = torch.rand(3, 3, 16, 16)
    maps = {"a": torch.rand(3, 1, 4, 4), "b": torch.zeros(3, 4, 4)}
    masks = torch.zeros(3, 16, 16, dtype=torch.bool)
    masks[:, 4:8, 4:8] = True
    figure = compare_methods(images, maps, masks, row_titles=["x", "y", "z"])
    axes = np.asarray(figure.axes).reshape(3, 3)
    assert [ax.get_title() for ax in axes[0]] == ["x", "a", "b"]
    assert axes[1, 0].get_title() == "y"
    figure.canvas.draw()
