"""A thin layer over ``captum.attr.visualization`` for class activation maps.

It upsamples maps to the image, turns ``(C, H, W)`` tensors into the ``(H, W, C)``
arrays Captum draws, overlays maps on images, and lays out a grid comparing
methods over images. A map with nothing to show (all zeros, or no value of the
requested sign) is drawn as the plain image with a note, where Captum's
``visualize_image_attr`` raises.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np
from captum.attr import LayerAttribution
from captum.attr import visualization as viz
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from captum_infocam._validation import check_choice

__all__ = ["compare_methods", "overlay", "to_hwc", "upsample"]

_SIGN_FILTERS = {
    "positive": lambda a: np.maximum(a, 0),
    "negative": lambda a: np.minimum(a, 0),
    "absolute_value": np.abs,
    "all": lambda a: a,
}


def to_hwc(tensor: Tensor) -> np.ndarray:
    """``(C, H, W)`` (or ``(1, C, H, W)``, or ``(H, W)``) tensor to an ``(H, W, C)`` float array."""
    array = tensor.detach().float().cpu()
    if array.dim() == 4 and len(array) == 1:
        array = array[0]
    if array.dim() == 2:
        array = array[None]
    if array.dim() != 3:
        raise ValueError(f"expected (C, H, W), (1, C, H, W) or (H, W), got {tuple(tensor.shape)}")
    return array.permute(1, 2, 0).numpy()


def upsample(attributions: Tensor, size: Sequence[int], mode: str = "bilinear") -> Tensor:
    """Upsamples ``(N, C, h, w)`` maps to ``size`` with Captum's ``interpolate``."""
    return LayerAttribution.interpolate(attributions, tuple(size), mode)


def _show_image(
    picture: np.ndarray, plt_fig_axis: Optional[tuple[Figure, Axes]]
) -> tuple[Figure, Axes]:
    # Captum normalises the attribution even to show the plain image; give it ones.
    return viz.visualize_image_attr(
        np.ones(picture.shape[:2]),
        picture,
        method="original_image",
        plt_fig_axis=plt_fig_axis,
        use_pyplot=False,
    )


def overlay(
    attribution: Tensor,
    image: Tensor,
    ax: Optional[Axes] = None,
    method: str = "blended_heat_map",
    sign: str = "positive",
    title: Optional[str] = None,
    **kwargs: object,
) -> tuple[Figure, Axes]:
    """Draws one map over its image with Captum's ``visualize_image_attr``.

    Args:
        attribution (Tensor): ``(1, h, w)``, ``(h, w)`` or ``(C, h, w)`` map of
            any resolution; upsampled to the image.
        image (Tensor): ``(3, H, W)`` in ``[0, 1]``.
        ax (Axes, optional): where to draw; a new figure if ``None``.
        method (str, optional): Captum's ``method``. Default: ``"blended_heat_map"``
        sign (str, optional): Captum's ``sign``. Default: ``"positive"``
        title (str, optional): axis title.
        **kwargs: passed to ``visualize_image_attr`` (``cmap``, ``alpha_overlay``...).

    Returns:
        ``(figure, axes)``.
    """
    check_choice("sign", sign, _SIGN_FILTERS)
    if attribution.dim() == 2:
        attribution = attribution[None]
    up = upsample(attribution[None].float(), image.shape[-2:])[0]
    attr, picture = to_hwc(up), to_hwc(image)
    shown = _SIGN_FILTERS[sign](attr.sum(2))
    empty = not np.isfinite(shown).all() or not np.abs(shown).max() > 0
    plt_fig_axis = None if ax is None else (ax.figure, ax)
    if empty:
        figure, axes = _show_image(picture, plt_fig_axis)
        axes.text(
            0.5,
            0.04,
            "map is zero",
            color="white",
            ha="center",
            transform=axes.transAxes,
            fontsize=8,
            bbox={"facecolor": "black", "alpha": 0.6, "pad": 2},
        )
    else:
        figure, axes = viz.visualize_image_attr(
            attr,
            picture,
            method=method,
            sign=sign,
            plt_fig_axis=plt_fig_axis,
            use_pyplot=False,
            **kwargs,  # type: ignore[arg-type]
        )
    if title is not None:
        axes.set_title(title, fontsize=9)
    return figure, axes


def compare_methods(
    images: Tensor,
    maps: Mapping[str, Tensor],
    masks: Optional[Tensor] = None,
    row_titles: Optional[Sequence[str]] = None,
    cell_size: float = 1.6,
) -> Figure:
    """A grid: one row per image, its picture first, then each method's map.

    Args:
        images (Tensor): ``(N, 3, H, W)`` in ``[0, 1]``.
        maps (Mapping[str, Tensor]): method name to maps ``(N, 1, h, w)`` or ``(N, h, w)``.
        masks (Tensor, optional): ``(N, H, W)`` object masks, outlined on every cell.
        row_titles (Sequence[str], optional): a title for each row's first cell.
        cell_size (float, optional): inches per cell. Default: 1.6

    Returns:
        The matplotlib figure.
    """
    rows, columns = len(images), 1 + len(maps)
    figure = Figure(figsize=(cell_size * columns, cell_size * rows))
    axes = np.asarray(figure.subplots(rows, columns, squeeze=False))
    for row in range(rows):
        _show_image(to_hwc(images[row]), (figure, axes[row, 0]))
        axes[row, 0].set_title(row_titles[row] if row_titles else "image", fontsize=8)
        for column, (name, method_maps) in enumerate(maps.items(), start=1):
            single = method_maps[row]
            overlay(
                single if single.dim() == 3 else single[None],
                images[row],
                ax=axes[row, column],
                title=name if row == 0 else None,
            )
        if masks is not None:
            for ax in axes[row]:
                ax.contour(
                    masks[row].cpu().numpy().astype(float),
                    levels=[0.5],
                    colors="white",
                    linewidths=0.8,
                )
    figure.tight_layout()
    return figure
