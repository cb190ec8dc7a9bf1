"""The compared methods, as a registry of factories.

A factory takes ``(model, layer, infocam_settings)`` and returns an explainer: a
function of a :class:`~captum_infocam.benchmark.items.Batch` that returns maps
``(N, 1, h, w)`` or ``(N, H, W)``. Adding a method is one entry in
:data:`METHODS`.
"""

from __future__ import annotations

import contextlib
import io
import math
import zlib
from typing import Any, Callable

import torch
from captum.attr import LayerGradCam
from torch import Tensor, nn

from captum_infocam import InfoCAM
from captum_infocam.benchmark.items import Batch

__all__ = ["DEFAULT_METHODS", "METHODS", "Explainer"]

Explainer = Callable[[Batch], Tensor]
Factory = Callable[[nn.Module, nn.Module, dict[str, Any]], Explainer]


def _infocam(model: nn.Module, layer: nn.Module, settings: dict[str, Any]) -> Explainer:
    cam = InfoCAM(model, layer)
    return lambda batch: cam.attribute(batch.image, target=batch.target, **settings)


def _grad_cam(model: nn.Module, layer: nn.Module, settings: dict[str, Any]) -> Explainer:
    cam = LayerGradCam(model, layer)
    return lambda batch: cam.attribute(batch.image, target=batch.target, relu_attributions=True)


def _pytorch_grad_cam(class_name: str) -> Factory:
    """A method of pytorch-grad-cam (the ``bench`` extra), hooks held for one call only."""

    def factory(model: nn.Module, layer: nn.Module, settings: dict[str, Any]) -> Explainer:
        import pytorch_grad_cam
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        method = getattr(pytorch_grad_cam, class_name)

        def explain(batch: Batch) -> Tensor:
            targets = [ClassifierOutputTarget(int(t)) for t in batch.target]
            # Score-CAM draws a progress bar per image; keep the benchmark's output readable.
            with (
                method(model=model, target_layers=[layer]) as cam,
                contextlib.redirect_stderr(io.StringIO()),
            ):
                cam.batch_size = 128
                maps = cam(input_tensor=batch.image, targets=targets)
            return torch.from_numpy(maps).to(batch.image.device)[:, None]

        return explain

    return factory


def _centre(model: nn.Module, layer: nn.Module, settings: dict[str, Any]) -> Explainer:
    """A Gaussian at the image centre (sigma a quarter of the side): the trivial baseline."""

    def explain(batch: Batch) -> Tensor:
        height, width = batch.image.shape[-2:]
        rows = torch.arange(height, device=batch.image.device) - (height - 1) / 2
        cols = torch.arange(width, device=batch.image.device) - (width - 1) / 2
        sigma = min(height, width) / 4
        blob = torch.exp(-(rows[:, None] ** 2 + cols[None, :] ** 2) / (2 * sigma**2))
        return blob.expand(len(batch.image), 1, height, width)

    return explain


def _random(model: nn.Module, layer: nn.Module, settings: dict[str, Any]) -> Explainer:
    """Uniform noise at the layer's resolution, seeded by each item's key."""

    def explain(batch: Batch) -> Tensor:
        height, width = batch.image.shape[-2:]
        side = max(1, math.ceil(min(height, width) / 8))
        maps = [
            torch.rand(1, side, side, generator=torch.Generator().manual_seed(_seed(key)))
            for key in batch.keys
        ]
        return torch.stack(maps).to(batch.image.device)

    return explain


def _seed(key: str) -> int:
    return zlib.crc32(key.encode())  # stable across processes, unlike hash()


#: Every method the benchmark knows, by display name.
METHODS: dict[str, Factory] = {
    "InfoCAM": _infocam,
    "Grad-CAM": _grad_cam,
    "Grad-CAM++": _pytorch_grad_cam("GradCAMPlusPlus"),
    "Score-CAM": _pytorch_grad_cam("ScoreCAM"),
    "Layer-CAM": _pytorch_grad_cam("LayerCAM"),
    "XGrad-CAM": _pytorch_grad_cam("XGradCAM"),
    "Centre": _centre,
    "Random": _random,
}
DEFAULT_METHODS = list(METHODS)
