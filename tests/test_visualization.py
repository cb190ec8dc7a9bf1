"""Overlays and method grids: the blend by value, every accepted input form, clear errors."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from captum_infocam.visualization import compare_methods, image_array, overlay, show_overlay


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _image(height: int = 12, width: int = 16) -> torch.Tensor:
    """A (3, H, W) image spanning exactly [0, 1], so min-max scaling leaves it unchanged."""
    image = torch.rand(3, height, width, generator=torch.Generator().manual_seed(0))
    image[0, 0, 0], image[1, 0, 0] = 0.0, 1.0
    return image


def test_overlay_is_the_alpha_blend_of_the_image_and_the_coloured_upsampled_map() -> None:
    image = _image()
    attribution = torch.tensor([[[[0.0, 1.0], [2.0, 5.0]]]])  # (1, 1, 2, 2), as attribute() gives
    rgb = overlay(attribution, image, colormap="viridis", alpha=0.3)

    up = F.interpolate(attribution, size=(12, 16), mode="bilinear", align_corners=False)[0, 0]
    scaled = ((up - up.min()) / (up.max() - up.min())).numpy()
    heat = matplotlib.colormaps["viridis"](scaled)[..., :3]
    expected = 0.7 * image.permute(1, 2, 0).numpy() + 0.3 * heat
    assert rgb.shape == (12, 16, 3) and rgb.dtype == np.float32
    np.testing.assert_allclose(rgb, expected, atol=1e-5)


def test_overlay_keeps_the_images_colours() -> None:
    red = torch.zeros(3, 8, 8)
    red[0] = 1.0
    # alpha = 0: the image itself, in colour (Captum's blended heat map shows it grey)
    np.testing.assert_array_equal(overlay(torch.rand(4, 4), red, alpha=0.0), red.permute(1, 2, 0))


def test_overlay_takes_every_map_and_image_form_alike() -> None:
    image = _image(8, 8)
    attribution = torch.rand(1, 1, 4, 4)
    expected = overlay(attribution, image)
    hwc = image.permute(1, 2, 0)
    maps = [attribution[0], attribution[0, 0], attribution.numpy(), attribution[0, 0].numpy()]
    images = [
        image.numpy(),  # (C, H, W) array: only the first dimension can be channels
        hwc,  # (H, W, C) tensor
        hwc.numpy(),  # (H, W, C) array
        image[None],  # (1, C, H, W), as x[:1]
        image * 4 - 2,  # a normalised tensor: any value range
        (hwc * 255).round().to(torch.uint8).numpy(),  # 8-bit
    ]
    for form in maps:
        np.testing.assert_allclose(overlay(form, image), expected, atol=1e-6)
    for form in images:
        np.testing.assert_allclose(overlay(attribution, form), expected, atol=3e-3)


def test_image_array_reads_grey_and_ambiguous_shapes() -> None:
    grey = torch.rand(5, 6)
    np.testing.assert_array_equal(image_array(grey)[..., 2], grey.numpy())
    np.testing.assert_array_equal(image_array(grey[None]), image_array(grey))
    square = torch.rand(3, 5, 3)  # channels at both ends: torch reads it (C, H, W) ...
    assert image_array(square).shape == (5, 3, 3)
    assert image_array(square.numpy()).shape == (3, 5, 3)  # ... numpy (H, W, C)


def test_channel_maps_are_summed_as_the_metrics_do() -> None:
    image = _image(8, 8)
    channels = torch.rand(1, 5, 4, 4)  # attribute(..., attr_dim_summation=False)[:1]
    np.testing.assert_allclose(overlay(channels, image), overlay(channels.sum(1), image), atol=1e-6)


@pytest.mark.parametrize(
    ("attribution", "image", "kwargs", "error", "message"),
    [
        (torch.rand(2, 1, 4, 4), _image(), {}, ValueError, r"it holds 2 maps: pass one"),
        (torch.rand(3, 4, 4), _image(), {}, ValueError, r"attribution must be one map"),
        (torch.rand(4), _image(), {}, ValueError, r"two spatial dimensions"),
        ([[0.0, 1.0]], _image(), {}, TypeError, r"attribution must be a tensor or a numpy"),
        (torch.rand(4, 4), torch.rand(5, 8, 8), {}, ValueError, r"image must be one image"),
        (torch.rand(4, 4), torch.rand(2, 3, 8, 8), {}, ValueError, r"image must be one image"),
        (torch.rand(4, 4), "x.png", {}, TypeError, r"image must be a tensor or a numpy"),
        (torch.rand(4, 4), torch.full((3, 4, 4), float("nan")), {}, ValueError, "NaN"),
        (torch.rand(4, 4), _image(), {"alpha": 1.5}, ValueError, r"alpha must be in \[0, 1\]"),
        (torch.rand(4, 4), _image(), {"colormap": "rainbowish"}, ValueError, "colormap must be"),
    ],
)
def test_overlay_rejects_what_it_cannot_draw(attribution, image, kwargs, error, message) -> None:
    with pytest.raises(error, match=message):
        overlay(attribution, image, **kwargs)


def test_show_overlay_draws_the_overlay_with_a_colour_bar_in_a_pyplot_figure() -> None:
    image, attribution = _image(), torch.rand(1, 1, 3, 4)
    figure, ax = show_overlay(attribution, image, title="t")
    assert plt.fignum_exists(figure.number), "Jupyter shows pyplot figures only"
    np.testing.assert_array_equal(ax.images[0].get_array(), overlay(attribution, image))
    assert ax.get_title() == "t"
    assert len(figure.axes) == 2 and "min-max" in figure.axes[1].get_ylabel()
    assert not ax.texts
    _, flat = show_overlay(torch.zeros(4, 4), image, colorbar=False)
    assert [t.get_text() for t in flat.texts] == ["map is constant"]


def _grid(figure) -> np.ndarray:
    """The grid's axes (the colour bar's excluded), row by row."""
    return np.array([ax for ax in figure.axes if ax.get_label() != "<colorbar>"])


def test_compare_methods_shows_each_overlay_with_a_colour_bar_and_an_outline_legend() -> None:
    images = torch.stack([_image(8, 8), _image(8, 8).flip(0)])
    maps = {"a": torch.rand(2, 1, 4, 4), "b": torch.rand(2, 4, 4)}
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[:, 2:6, 2:6] = True
    figure = compare_methods(images, maps, masks, row_titles=["x", "y"], colormap="magma")
    assert plt.fignum_exists(figure.number)
    axes = _grid(figure).reshape(2, 3)
    assert [ax.get_title() for ax in axes[0]] == ["x", "a", "b"] and axes[1, 0].get_title() == "y"
    for row in range(2):
        np.testing.assert_array_equal(axes[row, 0].images[0].get_array(), image_array(images[row]))
        for column, name in enumerate(maps, start=1):
            expected = overlay(maps[name][row : row + 1], images[row], colormap="magma")
            np.testing.assert_array_equal(axes[row, column].images[0].get_array(), expected)
        assert all(ax.collections for ax in axes[row]), "every cell outlines the object"
    (colorbar,) = [ax for ax in figure.axes if ax.get_label() == "<colorbar>"]
    assert "min-max" in colorbar.get_ylabel()
    (legend,) = figure.legends
    assert [t.get_text() for t in legend.get_texts()] == ["object outline"]
    assert not compare_methods(images, maps).legends, "no masks, no outline legend"
    figure.canvas.draw()


def test_compare_methods_takes_numpy_and_channels_last_as_overlay_does() -> None:
    images = torch.stack([_image(8, 8), _image(8, 8)])
    maps = {"a": torch.rand(2, 1, 4, 4)}
    reference = _grid(compare_methods(images, maps))
    other = _grid(compare_methods(images.permute(0, 2, 3, 1).numpy(), {"a": maps["a"].numpy()}))
    for mine, theirs in zip(reference, other, strict=True):
        np.testing.assert_array_equal(mine.images[0].get_array(), theirs.images[0].get_array())
    before = plt.get_fignums()
    compare_methods(images, maps, use_pyplot=False)
    assert plt.get_fignums() == before, "use_pyplot=False leaves pyplot alone"


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (dict(maps={"a": torch.rand(1, 1, 4, 4)}), ValueError, r"maps\['a'\] must hold one entry"),
        (dict(maps={"a": [1.0]}), TypeError, r"maps\['a'\] must be a tensor or a numpy"),
        (dict(maps={}), TypeError, "maps must be a non-empty mapping"),
        (dict(images=torch.rand(3, 8, 8)), ValueError, r"add a batch dimension: x\[None\]"),
        (dict(masks=torch.ones(2, 4, 4)), ValueError, r"masks must have the images' size"),
        (dict(masks=torch.ones(3, 8, 8)), ValueError, "masks must hold one entry per image"),
        (dict(row_titles=["x"]), ValueError, "row_titles must hold 2 titles"),
    ],
)
def test_compare_methods_checks_its_inputs_before_drawing(kwargs, error, message) -> None:
    arguments = dict(images=torch.rand(2, 3, 8, 8), maps={"a": torch.rand(2, 1, 4, 4)})
    arguments.update(kwargs)
    before = plt.get_fignums()
    with pytest.raises(error, match=message):
        compare_methods(**arguments)
    assert plt.get_fignums() == before, "nothing may be drawn for a bad argument"


def test_compare_methods_keeps_the_proportions_of_non_square_images() -> None:
    images = torch.stack([_image(10, 30), _image(10, 30)])  # three times as wide as high
    masks = torch.zeros(2, 10, 30, dtype=torch.bool)
    masks[:, 2:8, 20:26] = True
    figure = compare_methods(images, {"a": torch.rand(2, 1, 2, 6)}, masks, use_pyplot=False)
    figure.draw_without_rendering()  # lays the axes out as savefig does
    for ax in _grid(figure):
        assert ax.images[0].get_array().shape[:2] == (10, 30)
        # A pixel is drawn as a square on the canvas: the image is never stretched to the cell.
        (x0, y0), (x1, y1) = ax.transData.transform([[0, 0], [30, 10]])
        assert abs(x1 - x0) / abs(y1 - y0) == pytest.approx(3.0, rel=1e-6)
