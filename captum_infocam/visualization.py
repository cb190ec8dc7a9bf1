"""Class activation maps over images: an RGB overlay in one call, and a grid of methods.

:func:`overlay` turns a map, as :meth:`InfoCAM.attribute <captum_infocam.InfoCAM.attribute>`
returns it, and its image into an RGB array, as pytorch-grad-cam's ``show_cam_on_image``
does; :func:`show_overlay` draws that array with a colour bar, and :func:`compare_methods`
lays out a grid of methods over images. All three take

* images as tensors or numpy arrays, channels first ``(C, H, W)`` or last
  ``(H, W, C)`` with 1 or 3 channels, in any value range (see :func:`image_array`);
* maps of any resolution, as tensors or numpy arrays. A map is shown as the
  metrics see it (:func:`captum_infocam.metrics.saliency_maps`): summed over
  channels, upsampled bilinearly to the image, min-max normalised, with NaN and
  infinite values set to 0. A map with nothing to show (constant, all zeros) is
  drawn with a note instead of raising.

The image keeps its colours under the map, unlike the grey image of Captum's
``visualize_image_attr(..., method="blended_heat_map")``.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Union

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Colormap, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from torch import Tensor

from captum_infocam._validation import check_real
from captum_infocam.metrics import saliency_maps

__all__ = ["compare_methods", "image_array", "overlay", "show_overlay"]

ArrayLike = Union[Tensor, np.ndarray]

_COLORBAR_LABEL = "min-max normalised map"
_OUTLINE = {
    "colors": "white",
    "linewidths": 1.0,
    "path_effects": [patheffects.withStroke(linewidth=2.2, foreground="black")],
}


def _as_tensor(name: str, value: Any) -> Tensor:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a tensor or a numpy array, got {type(value).__name__}")
    return value.detach().cpu()


def image_array(image: ArrayLike) -> np.ndarray:
    """Returns ``image`` as an ``(H, W, 3)`` float32 array in ``[0, 1]``.

    Args:
        image (Tensor or numpy.ndarray): ``(C, H, W)`` or ``(H, W, C)`` with
            ``C`` 1 or 3, ``(1, C, H, W)``, or ``(H, W)``. Where both ends could
            be channels (``(3, H, 3)``), a tensor is read channels first and an
            array channels last, the conventions of torch and numpy. ``uint8``
            values are divided by 255; other values outside ``[0, 1]`` (a
            normalised tensor, say) are min-max scaled to it.

    Returns:
        ``numpy.ndarray`` ``(H, W, 3)``; a grey image has its channel repeated.

    Raises:
        TypeError: if ``image`` is neither a tensor nor an array.
        ValueError: for any other shape, or NaN or infinite values.
    """
    tensor = _as_tensor("image", image)
    shape = tuple(tensor.shape)
    if tensor.dim() == 4 and len(tensor) == 1:
        tensor = tensor[0]
    if tensor.dim() == 2:
        tensor = tensor[..., None]
    elif tensor.dim() == 3:
        first, last = tensor.shape[0] in (1, 3), tensor.shape[2] in (1, 3)
        if first and (not last or isinstance(image, Tensor)):
            tensor = tensor.permute(1, 2, 0)
        elif not last:
            tensor = tensor[None]  # no channel axis: rejected below
    if tensor.dim() != 3:
        raise ValueError(
            "image must be one image, (C, H, W) or (H, W, C) with 1 or 3 channels, "
            f"(1, C, H, W) or (H, W), got shape {shape}"
        )
    if tensor.dtype == torch.uint8:
        array = tensor.float() / 255
    else:
        array = tensor.double()
        if not bool(torch.isfinite(array).all()):
            raise ValueError("image contains NaN or infinite values")
        low, high = float(array.min()), float(array.max())
        if low < 0 or high > 1:
            array = (array - low) / (high - low) if high > low else torch.zeros_like(array)
    return array.float().expand(-1, -1, 3).contiguous().numpy()


def _one_map(attribution: ArrayLike) -> Tensor:
    """``attribution`` as a batch of one map ``(1, C, h, w)``."""
    tensor = _as_tensor("attribution", attribution)
    if tensor.dim() == 2:
        return tensor[None, None]
    if tensor.dim() in (3, 4) and len(tensor) == 1:
        return tensor if tensor.dim() == 4 else tensor[None]
    shape = tuple(tensor.shape)
    if tensor.dim() == 4:
        advice = f"it holds {shape[0]} maps: pass one, e.g. attribution[i]"
    elif tensor.dim() == 3:
        advice = "for maps of N images pass one, attribution[i]; sum channel maps with .sum(0)"
    else:
        advice = "pass a map of two spatial dimensions"
    raise ValueError(
        "attribution must be one map, (h, w), (1, h, w) or (1, C, h, w) as "
        f"attribute(x[i:i + 1]) returns it, got shape {shape}; {advice}"
    )


def _maps_over(attributions: Tensor, size: tuple[int, int]) -> np.ndarray:
    """Maps ``(N, C, h, w)`` or ``(N, h, w)`` as the metrics see them, ``(N, H, W)``."""
    return saliency_maps(attributions, size, len(attributions)).float().numpy()


def _colormap(colormap: Union[str, Colormap]) -> Colormap:
    if isinstance(colormap, Colormap):
        return colormap
    if not isinstance(colormap, str) or colormap not in matplotlib.colormaps:
        raise ValueError(f"colormap must be a matplotlib colormap or its name, got {colormap!r}")
    return matplotlib.colormaps[colormap]


def _check_alpha(alpha: Any) -> None:
    check_real("alpha", alpha, 0.0)
    if alpha > 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")


def _blend(
    picture: np.ndarray, saliency: np.ndarray, colormap: Union[str, Colormap], alpha: float
) -> np.ndarray:
    heat = _colormap(colormap)(saliency)[..., :3]
    return ((1 - alpha) * picture + alpha * heat).astype(np.float32)


def overlay(
    attribution: ArrayLike,
    image: ArrayLike,
    colormap: Union[str, Colormap] = "jet",
    alpha: float = 0.5,
) -> np.ndarray:
    """Returns one map over its image as an RGB array, in one call.

    Args:
        attribution (Tensor or numpy.ndarray): one map of any resolution:
            ``(h, w)``, ``(1, h, w)``, or ``(1, C, h, w)`` as
            ``cam.attribute(x[i:i + 1])`` returns it (channels are summed).
        image (Tensor or numpy.ndarray): the image, see :func:`image_array`.
        colormap (str or Colormap, optional): the map's colours.
            Default: ``"jet"``
        alpha (float, optional): the map's weight in the blend, in ``[0, 1]``.
            Default: 0.5

    Returns:
        ``numpy.ndarray`` ``(H, W, 3)`` of float32 in ``[0, 1]``:
        ``(1 - alpha) * image + alpha * colormap(map)``, with the map upsampled
        to the image and min-max normalised.

    Raises:
        TypeError: if the map or the image is neither a tensor nor an array.
        ValueError: if the map is not one map, or the image not one image.

    Examples::

        >>> attr = InfoCAM(model, model.layer4).attribute(x, target=y)  # (N, 1, 7, 7)
        >>> rgb = overlay(attr[0], x[0])  # (224, 224, 3)
        >>> plt.imshow(rgb)
    """
    _check_alpha(alpha)
    maps = _one_map(attribution)
    picture = image_array(image)
    return _blend(picture, _maps_over(maps, picture.shape[:2])[0], colormap, alpha)


def _note_if_empty(ax: Axes, saliency: np.ndarray) -> None:
    if not saliency.any():
        ax.text(
            0.5,
            0.04,
            "map is constant",
            color="white",
            ha="center",
            transform=ax.transAxes,
            fontsize=8,
            bbox={"facecolor": "black", "alpha": 0.6, "pad": 2},
        )


def _colorbar(figure: Figure, ax: Union[Axes, Sequence[Axes]], colormap: Colormap) -> None:
    mappable = ScalarMappable(Normalize(0, 1), colormap)
    colorbar = figure.colorbar(mappable, ax=ax)
    colorbar.set_label(_COLORBAR_LABEL, fontsize=8)
    colorbar.ax.tick_params(labelsize=8)


def show_overlay(
    attribution: ArrayLike,
    image: ArrayLike,
    ax: Optional[Axes] = None,
    title: Optional[str] = None,
    colormap: Union[str, Colormap] = "jet",
    alpha: float = 0.5,
    colorbar: bool = True,
) -> tuple[Figure, Axes]:
    """Draws :func:`overlay` with a colour bar.

    Args:
        attribution, image, colormap, alpha: as in :func:`overlay`.
        ax (Axes, optional): where to draw. Default: a new ``pyplot`` figure,
            which Jupyter shows.
        title (str, optional): the axes' title.
        colorbar (bool, optional): draw a colour bar beside the axes.
            Default: True

    Returns:
        ``(figure, axes)``.
    """
    rgb = overlay(attribution, image, colormap, alpha)
    saliency = _maps_over(_one_map(attribution), rgb.shape[:2])[0]
    if ax is None:
        ax = plt.figure(figsize=(4, 3.4), layout="constrained").add_subplot()
    figure = ax.figure
    ax.imshow(rgb)
    ax.axis("off")
    _note_if_empty(ax, saliency)
    if title is not None:
        ax.set_title(title, fontsize=9)
    if colorbar:
        _colorbar(figure, ax, _colormap(colormap))
    return figure, ax  # type: ignore[return-value]


def _batch(name: str, value: Any, num_examples: Optional[int], dims: Sequence[int]) -> Tensor:
    tensor = _as_tensor(name, value)
    if tensor.dim() not in dims:
        wanted = " or ".join(f"{d}-D" for d in dims)
        raise ValueError(
            f"{name} must be {wanted}, one entry per image along the first dimension, got "
            f"shape {tuple(tensor.shape)}; for one image add a batch dimension: x[None]"
        )
    if num_examples is not None and len(tensor) != num_examples:
        raise ValueError(
            f"{name} must hold one entry per image: {num_examples} images but "
            f"{len(tensor)} in {name} of shape {tuple(tensor.shape)}"
        )
    return tensor


def compare_methods(
    images: ArrayLike,
    maps: Mapping[str, ArrayLike],
    masks: Optional[ArrayLike] = None,
    row_titles: Optional[Sequence[str]] = None,
    cell_size: float = 1.6,
    colormap: Union[str, Colormap] = "jet",
    alpha: float = 0.5,
    use_pyplot: bool = True,
) -> Figure:
    """A grid: one row per image, its picture first, then each method's :func:`overlay`.

    A colour bar gives the maps' scale. With ``masks``, every cell outlines the
    object and a legend says so.

    Args:
        images (Tensor or numpy.ndarray): ``(N, C, H, W)`` or ``(N, H, W, C)``,
            each image read as in :func:`image_array`.
        maps (Mapping[str, Tensor or numpy.ndarray]): method name to its maps,
            ``(N, 1, h, w)`` as :meth:`InfoCAM.attribute` returns them,
            ``(N, C, h, w)`` (summed over channels) or ``(N, h, w)``.
        masks (Tensor or numpy.ndarray, optional): ``(N, H, W)`` object masks.
        row_titles (Sequence[str], optional): a title for each row's first cell.
        cell_size (float, optional): inches per cell. Default: 1.6
        colormap, alpha: as in :func:`overlay`.
        use_pyplot (bool, optional): create the figure with ``pyplot``, so that
            Jupyter shows it; ``False`` for a figure that only ``savefig`` uses.
            Default: True

    Returns:
        The matplotlib figure.

    Raises:
        TypeError, ValueError: before drawing anything, for inputs of another
        type or shape, or with another number of images.
    """
    images = _batch("images", images, None, (4,))
    num_examples = len(images)
    if not isinstance(maps, Mapping) or not maps:
        raise TypeError("maps must be a non-empty mapping of method names to maps")
    method_maps = {
        name: _batch(f"maps[{name!r}]", value, num_examples, (3, 4)) for name, value in maps.items()
    }
    pictures = [image_array(image) for image in images]
    if masks is not None:
        masks = _batch("masks", masks, num_examples, (3,))
        if tuple(masks.shape[1:]) != pictures[0].shape[:2]:
            raise ValueError(
                f"masks must have the images' size {pictures[0].shape[:2]}, got "
                f"{tuple(masks.shape[1:])}"
            )
    if row_titles is not None and len(row_titles) != num_examples:
        raise ValueError(f"row_titles must hold {num_examples} titles, got {len(row_titles)}")
    _check_alpha(alpha)
    cmap = _colormap(colormap)

    rows, columns = num_examples, 1 + len(method_maps)
    size = (cell_size * columns + 1.0, cell_size * rows + (0.4 if masks is not None else 0.0))
    figure = (plt.figure if use_pyplot else Figure)(figsize=size, layout="constrained")
    axes = np.asarray(figure.subplots(rows, columns, squeeze=False))
    for row, picture in enumerate(pictures):
        axes[row, 0].imshow(picture)
        axes[row, 0].set_title(row_titles[row] if row_titles else "image", fontsize=8)
        for ax, (name, maps_of_method) in zip(axes[row, 1:], method_maps.items(), strict=True):
            saliency = _maps_over(maps_of_method[row : row + 1], picture.shape[:2])[0]
            ax.imshow(_blend(picture, saliency, cmap, alpha))
            _note_if_empty(ax, saliency)
            if row == 0:
                ax.set_title(name, fontsize=8)
        for ax in axes[row]:
            if masks is not None:
                ax.contour(masks[row].float().numpy(), levels=[0.5], **_OUTLINE)
            ax.axis("off")
    _colorbar(figure, list(axes.flat), cmap)
    if masks is not None:
        outline = Line2D([], [], color="white", lw=1.0, path_effects=_OUTLINE["path_effects"])
        figure.legend([outline], ["object outline"], loc="outside lower center", fontsize=8)
    return figure
