"""Layer layouts: how a layer's value maps to channel maps ``(B, C, H, W)`` and back.

InfoCAM gates the channels of ``(B, C, H, W)`` maps and substitutes the gated
maps for the layer's value. A convolutional layer already has that layout. A
token layer does not, so it needs a layout with both directions, unlike
pytorch-grad-cam's one-way ``reshape_transform``.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from captum_infocam._validation import check_int

__all__ = ["ChannelsFirst", "ChannelsLast", "LayerLayout", "TokenGrid"]


@runtime_checkable
class LayerLayout(Protocol):
    """Converts a layer's value to channel maps and back."""

    def to_maps(self, value: Tensor) -> Tensor:
        """Returns the channel maps ``(B, C, H, W)`` of the layer's ``value``."""
        ...

    def from_maps(self, maps: Tensor, value: Tensor) -> Tensor:
        """Returns ``maps`` in the layout of ``value``; both have the same batch.

        ``value`` supplies whatever the maps drop (a class token, say).
        """
        ...


class ChannelsFirst:
    """The identity: the layer's value is already ``(B, C, H, W)``. A ``(B, C)`` vector
    (a linear layer's output, say) is taken as ``C`` maps of ``1 x 1``."""

    def to_maps(self, value: Tensor) -> Tensor:
        return value[:, :, None, None] if value.dim() == 2 else value

    def from_maps(self, maps: Tensor, value: Tensor) -> Tensor:
        return maps.flatten(1) if value.dim() == 2 else maps

    def __repr__(self) -> str:
        return "ChannelsFirst()"


class ChannelsLast:
    """A ``(B, H, W, C)`` value, as in torchvision's and timm's Swin Transformer stages.

    Hugging Face's Swin passes ``(B, N, C)`` token sequences between its stages (and out
    of its final ``layernorm``): those need ``TokenGrid(prefix_tokens=0)``.
    """

    def to_maps(self, value: Tensor) -> Tensor:
        if value.dim() != 4:
            hint = (
                ": a (B, N, C) token sequence, as Hugging Face's Swin passes, needs "
                "reshape_transform=TokenGrid(prefix_tokens=0)"
                if value.dim() == 3
                else ""
            )
            raise ValueError(
                f"ChannelsLast expects a (B, H, W, C) value, got shape {tuple(value.shape)}{hint}"
            )
        return value.permute(0, 3, 1, 2)

    def from_maps(self, maps: Tensor, value: Tensor) -> Tensor:
        return maps.permute(0, 2, 3, 1)

    def __repr__(self) -> str:
        return "ChannelsLast()"


class TokenGrid:
    """A ``(B, N, C)`` token sequence: ``prefix_tokens`` tokens, then a grid.

    For torchvision's ViT, ``TokenGrid(prefix_tokens=1)``: the class token is
    dropped from the maps and restored from the layer's own value on the way
    back. The grid is square unless ``grid_size=(h, w)`` is given.

    Args:
        prefix_tokens (int): leading tokens that are not grid positions
            (class, distillation or register tokens). Default: 1
        grid_size (tuple[int, int], optional): ``(h, w)`` of the grid.
            Default: square.
    """

    def __init__(self, prefix_tokens: int = 1, grid_size: tuple[int, int] | None = None):
        check_int("prefix_tokens", prefix_tokens, 0)
        self.prefix_tokens = prefix_tokens
        self.grid_size = grid_size

    def _grid(self, positions: int) -> tuple[int, int]:
        if self.grid_size is not None:
            height, width = self.grid_size
        else:
            height = width = math.isqrt(positions)
        if height * width != positions:
            raise ValueError(
                f"{positions} grid tokens do not form a grid of {height}x{width}; "
                "pass grid_size=(h, w)"
            )
        return height, width

    def to_maps(self, value: Tensor) -> Tensor:
        if value.dim() != 3:
            raise ValueError(f"TokenGrid expects (B, N, C) tokens, got {tuple(value.shape)}")
        tokens = value[:, self.prefix_tokens :]
        height, width = self._grid(tokens.shape[1])
        return tokens.transpose(1, 2).unflatten(2, (height, width))

    def from_maps(self, maps: Tensor, value: Tensor) -> Tensor:
        tokens = maps.flatten(2).transpose(1, 2)
        return torch.cat((value[:, : self.prefix_tokens], tokens), dim=1)

    def __repr__(self) -> str:
        return f"TokenGrid(prefix_tokens={self.prefix_tokens}, grid_size={self.grid_size})"
