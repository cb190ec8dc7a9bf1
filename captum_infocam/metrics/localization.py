r"""Localisation: does the map fall on the object?

Both metrics take the object as a mask ``(N, H, W)`` or as boxes
``(x1, y1, x2, y2)`` in pixel coordinates (a pixel belongs to a box when its
centre does; several boxes of one image form their union). Maps are upsampled to
the mask (bilinear).

* Energy-based pointing game (Wang et al., Score-CAM, 2020):
  :math:`\sum_{p \in \text{object}} L^+_p / \sum_p L^+_p \in [0, 1]` on the raw
  map's positive part :math:`L^+`, as Score-CAM and Quantus define it
  (``normalization="minmax"`` uses the min-max normalised map instead). A
  constant or all-zero map spreads its energy evenly and scores the object's
  share of the image.
* Pointing game (Zhang et al., 2016): 1 if the map's maximum lies within
  ``tolerance`` pixels (Euclidean) of the object, else 0; by default 15 px at
  224 px (Zhang et al.'s ImageNet setting), scaled with the image's shorter side.
  Where several pixels share the maximum (a plateau), the score is the share of
  them within reach, so that a map that is flat near its top cannot win by
  covering everything; a constant map points nowhere and scores 0.
* Grid pointing game (Böhle et al., B-cos networks, 2022): on a grid of images
  of different classes, explained for the class of one cell, the share of the
  map's *positive* attribution inside that cell,
  :math:`\sum_{p \in \text{cell}} L_p^+ / \sum_p L_p^+ \in [0, 1]`: the energy
  pointing game with the cell as the object, on the raw map (a min-max floor
  would count as attribution everywhere); a map with no positive value scores
  the cell's share of the image, as a uniform map would.

An image whose object has no pixel (an empty mask, or boxes outside the image)
scores NaN, as in Quantus; average with ``torch.nanmean``.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from captum_infocam._validation import check_choice, check_int
from captum_infocam.metrics._common import higher_is_better, metric_maps

__all__ = [
    "TOLERANCE_AT_224",
    "boxes_to_mask",
    "default_tolerance",
    "energy_pointing_game",
    "grid_pointing_game",
    "pointing_game",
]

Boxes = Union[Tensor, Sequence[Tensor]]


def boxes_to_mask(boxes: Boxes, image_size: tuple[int, int]) -> Tensor:
    """Returns the union of each image's boxes as a mask ``(N, H, W)``.

    Args:
        boxes (Tensor or sequence of Tensor): ``(N, 4)`` (one box per image) or
            ``N`` tensors ``(k_i, 4)``, as ``(x1, y1, x2, y2)`` in pixels.
        image_size (tuple[int, int]): ``(H, W)``.
    """
    if isinstance(boxes, Tensor):
        if boxes.dim() == 2:
            boxes = boxes[:, None]
        if boxes.dim() != 3:
            raise ValueError(f"boxes must be (N, 4) or (N, k, 4), got shape {tuple(boxes.shape)}")
    height, width = image_size
    masks = []
    for image_boxes in boxes:
        if (
            not isinstance(image_boxes, Tensor)
            or image_boxes.dim() != 2
            or image_boxes.shape[1] != 4
        ):
            raise ValueError("each image's boxes must be a (k, 4) tensor of (x1, y1, x2, y2)")
        centres_y = torch.arange(height, device=image_boxes.device) + 0.5
        centres_x = torch.arange(width, device=image_boxes.device) + 0.5
        x1, y1, x2, y2 = image_boxes.float().unbind(1)
        rows = (centres_y >= y1[:, None]) & (centres_y <= y2[:, None])
        cols = (centres_x >= x1[:, None]) & (centres_x <= x2[:, None])
        masks.append((rows[:, :, None] & cols[:, None, :]).any(0))
    return torch.stack(masks)


def _object_mask(
    mask: Optional[Tensor], boxes: Optional[Boxes], image_size: Optional[tuple[int, int]]
) -> Tensor:
    if (mask is None) == (boxes is None):
        raise ValueError("give exactly one of mask and boxes")
    if mask is not None:
        if not isinstance(mask, Tensor) or mask.dim() not in (3, 4):
            raise ValueError("mask must be a (N, H, W) or (N, 1, H, W) tensor")
        if mask.is_floating_point() and not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError(
                "a floating-point mask must hold only 0 and 1, got values in "
                f"[{float(mask.min()):.3g}, {float(mask.max()):.3g}]: were attributions and "
                "mask swapped? The map comes first, then the mask"
            )
        return (mask[:, 0] if mask.dim() == 4 else mask) != 0
    if image_size is None:
        raise ValueError("image_size=(H, W) is needed with boxes")
    return boxes_to_mask(boxes, image_size)  # type: ignore[arg-type]


def _maps_and_object(
    attributions: Tensor,
    mask: Optional[Tensor],
    boxes: Optional[Boxes],
    image_size: Optional[tuple[int, int]],
) -> tuple[Tensor, Tensor]:
    """Normalised maps ``(N, H, W)`` at the object's resolution, and the object ``(N, H, W)``."""
    region = _object_mask(mask, boxes, image_size)
    maps = metric_maps(attributions, tuple(region.shape[-2:]), len(region), None)
    return maps, region.to(maps.device)


def _nan_where_empty(values: Tensor, region: Tensor) -> Tensor:
    return torch.where(region.flatten(1).any(1), values, torch.full_like(values, float("nan")))


@higher_is_better(True)
def energy_pointing_game(
    attributions: Tensor,
    mask: Optional[Tensor] = None,
    *,
    boxes: Optional[Boxes] = None,
    image_size: Optional[tuple[int, int]] = None,
    normalization: str = "none",
) -> Tensor:
    """Share of the map's energy inside the object, per example, in ``[0, 1]``.

    Score-CAM's definition: the positive part of the map as it is, upsampled to
    the mask. Quantus' ``AttributionLocalisation`` takes absolute values instead
    (the same for non-negative maps) and scores an all-zero map 0.

    Args:
        attributions (Tensor): maps ``(N, 1, h, w)``, ``(N, C, h, w)`` or ``(N, h, w)``.
        mask (Tensor, optional): object mask ``(N, H, W)``: boolean, integer
            (any non-zero value inside) or floating-point 0/1.
        boxes (Tensor or sequence of Tensor, optional): instead of ``mask``; see
            :func:`boxes_to_mask`.
        image_size (tuple[int, int], optional): ``(H, W)``, needed with ``boxes``.
        normalization (str, optional): ``"none"`` (the raw map's positive part)
            or ``"minmax"`` (each map min-max normalised first, as the other
            metrics see it). Default: ``"none"``

    Returns:
        Tensor ``(N,)`` on the attributions' device; NaN where the object is empty.

    Examples::

        >>> energy_pointing_game(cam.attribute(x, target=y), masks)
    """
    check_choice("normalization", normalization, ("none", "minmax"))
    if normalization == "minmax":
        maps, region = _maps_and_object(attributions, mask, boxes, image_size)
    else:
        region = _object_mask(mask, boxes, image_size)
        maps = metric_maps(
            attributions, tuple(region.shape[-2:]), len(region), None, False
        ).clamp_min(0)
        region = region.to(maps.device)
    total = maps.sum((1, 2))
    inside = (maps * region).sum((1, 2))
    uniform = region.to(maps.dtype).mean((1, 2))
    share = torch.where(total > 0, inside / total.clamp_min(torch.finfo(total.dtype).tiny), uniform)
    return _nan_where_empty(share, region)


#: The pointing game's tolerance at 224 px (Zhang et al., 2016); other sizes scale it.
TOLERANCE_AT_224 = 15


def default_tolerance(image_size: Sequence[int]) -> int:
    """The pointing game's default tolerance for images of ``(H, W)``: 15 px at 224 px,
    scaled with the shorter side (4 px at 64 px)."""
    return round(TOLERANCE_AT_224 * min(image_size) / 224)


@higher_is_better(True)
def pointing_game(
    attributions: Tensor,
    mask: Optional[Tensor] = None,
    *,
    boxes: Optional[Boxes] = None,
    image_size: Optional[tuple[int, int]] = None,
    tolerance: Optional[int] = None,
) -> Tensor:
    """Whether the map's maximum lies within ``tolerance`` pixels of the object.

    A single maximum scores 1 (a hit) or 0; a plateau of tied maxima scores the share of
    its pixels within reach, so a map that is flat at its top scores what a random pick
    among its maxima would.

    Args:
        attributions (Tensor): maps ``(N, 1, h, w)``, ``(N, C, h, w)`` or ``(N, h, w)``.
        mask (Tensor, optional): object mask ``(N, H, W)``.
        boxes (Tensor or sequence of Tensor, optional): instead of ``mask``.
        image_size (tuple[int, int], optional): ``(H, W)``, needed with ``boxes``.
        tolerance (int, optional): radius in pixels. Default: 15 px at 224 px, scaled
            with the mask's shorter side (:func:`default_tolerance`)

    Returns:
        Tensor ``(N,)`` in ``[0, 1]`` on the attributions' device; NaN where the
        object is empty.
    """
    if tolerance is not None:
        check_int("tolerance", tolerance, 0)
    maps, region = _maps_and_object(attributions, mask, boxes, image_size)
    if tolerance is None:
        tolerance = default_tolerance(maps.shape[-2:])
    peak = maps.amax((1, 2), keepdim=True)
    maxima = (maps == peak) & (peak > 0)  # a constant map normalises to zeros: no maximum
    reach = region
    if tolerance:
        offsets = torch.arange(-tolerance, tolerance + 1, device=maps.device, dtype=maps.dtype)
        disk = (offsets[:, None].square() + offsets[None, :].square() <= tolerance**2).to(
            maps.dtype
        )
        near = F.conv2d(region[:, None].to(maps.dtype), disk[None, None], padding=tolerance)
        reach = near[:, 0] > 0.5
    count = maxima.flatten(1).sum(1)
    hits = (maxima & reach).flatten(1).sum(1)
    share = hits.to(maps.dtype) / count.clamp_min(1).to(maps.dtype)
    return _nan_where_empty(share, region)


@higher_is_better(True)
def grid_pointing_game(attributions: Tensor, mask: Tensor) -> Tensor:
    """Share of the positive attribution inside the explained cell of a grid, per example.

    :func:`energy_pointing_game` on the raw map, with the cell as the object.

    Args:
        attributions (Tensor): maps ``(N, 1, h, w)``, ``(N, C, h, w)`` (summed over
            channels) or ``(N, h, w)``, upsampled bilinearly to the mask's size.
        mask (Tensor): the cell of the explained class, ``(N, H, W)``, non-zero
            inside.

    Returns:
        Tensor ``(N,)`` in ``[0, 1]`` on the attributions' device; NaN where the
        cell is empty.

    Examples::

        >>> cell = torch.zeros(1, 128, 128, dtype=torch.bool)
        >>> cell[:, :64, :64] = True  # the top-left cell of a 2 x 2 grid
        >>> grid_pointing_game(torch.ones(1, 1, 8, 8), cell)
        tensor([0.2500])
    """
    if not isinstance(mask, Tensor) or mask.dim() != 3:
        raise ValueError("mask must be a (N, H, W) tensor marking each example's cell")
    return energy_pointing_game(attributions, mask)
