"""The compared methods, as a registry of factories.

A factory takes ``(model, layer)`` and, for InfoCAM, the fit's
:class:`~captum_infocam.DSIBSettings` (default: InfoCAM's defaults), and returns an explainer: a
function of a :class:`~captum_infocam.benchmark.items.Batch` that returns maps
``(N, 1, h, w)`` or ``(N, H, W)``. Adding a method is one entry in
:data:`METHODS`; a method too slow for the default run also goes in
:data:`SLOW_METHODS`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import math
import zlib
from dataclasses import replace
from typing import Callable, Optional, Sequence

import torch
from captum.attr import LayerGradCam
from torch import Tensor, nn

from captum_infocam import DSIBSettings, InfoCAM
from captum_infocam.benchmark.items import Batch

__all__ = [
    "DEFAULT_METHODS",
    "METHODS",
    "PYTORCH_GRAD_CAM_METHODS",
    "SLOW_METHODS",
    "Explainer",
    "check_methods",
    "key_seed",
    "pytorch_grad_cam_method",
]

Explainer = Callable[[Batch], Tensor]
Factory = Callable[[nn.Module, nn.Module, Optional[DSIBSettings]], Explainer]


def _infocam(
    model: nn.Module, layer: nn.Module, settings: Optional[DSIBSettings] = None
) -> Explainer:
    cam = InfoCAM(model, layer)
    return lambda batch: cam.attribute(batch.image, target=batch.target, settings=settings)


def _infocam_single_fit(
    model: nn.Module, layer: nn.Module, settings: Optional[DSIBSettings] = None
) -> Explainer:
    """InfoCAM with the first release's fit (``contrast="none"``): one bottleneck, for
    the target only."""
    return _infocam(model, layer, replace(settings or DSIBSettings(), contrast="none"))


def _grad_cam(
    model: nn.Module, layer: nn.Module, settings: Optional[DSIBSettings] = None
) -> Explainer:
    cam = LayerGradCam(model, layer)
    return lambda batch: cam.attribute(batch.image, target=batch.target, relu_attributions=True)


def pytorch_grad_cam_method(
    class_name: str,
    model: nn.Module,
    layer: nn.Module,
    reshape_transform: Optional[Callable[[Tensor], Tensor]] = None,
    batch_size: int = 128,
) -> Callable[[Tensor, Tensor], Tensor]:
    """A method of pytorch-grad-cam (the ``bench`` extra) as ``(images, targets) -> maps``.

    The method's hooks are held for one call only. The maps are ``(N, 1, H, W)``
    on the images' device.

    Args:
        class_name (str): the class in ``pytorch_grad_cam``, e.g. ``"GradCAMPlusPlus"``.
        model (nn.Module): the classifier.
        layer (nn.Module): its layer to explain.
        reshape_transform (Callable, optional): pytorch-grad-cam's one-way
            transform of the layer's value to ``(N, C, H, W)`` maps.
            Default: None (the value is already maps)
        batch_size (int, optional): masked images per forward pass of Score-CAM.
            Default: 128
    """
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    method = getattr(pytorch_grad_cam, class_name)

    def explain(images: Tensor, targets: Tensor) -> Tensor:
        classes = [ClassifierOutputTarget(int(t)) for t in targets]
        # Score-CAM draws a progress bar per image; keep the output readable.
        with (
            method(model=model, target_layers=[layer], reshape_transform=reshape_transform) as cam,
            contextlib.redirect_stderr(io.StringIO()),
        ):
            cam.batch_size = batch_size
            maps = cam(input_tensor=images, targets=classes)
        return torch.from_numpy(maps).to(images.device)[:, None]

    return explain


def _pytorch_grad_cam(class_name: str) -> Factory:
    """The benchmark's factory for a method of pytorch-grad-cam."""

    def factory(
        model: nn.Module, layer: nn.Module, settings: Optional[DSIBSettings] = None
    ) -> Explainer:
        explain = pytorch_grad_cam_method(class_name, model, layer)
        return lambda batch: explain(batch.image, batch.target)

    return factory


def _centre(
    model: nn.Module, layer: nn.Module, settings: Optional[DSIBSettings] = None
) -> Explainer:
    """A Gaussian at the image centre (sigma a quarter of the side): the trivial baseline."""

    def explain(batch: Batch) -> Tensor:
        height, width = batch.image.shape[-2:]
        rows = torch.arange(height, device=batch.image.device) - (height - 1) / 2
        cols = torch.arange(width, device=batch.image.device) - (width - 1) / 2
        sigma = min(height, width) / 4
        blob = torch.exp(-(rows[:, None] ** 2 + cols[None, :] ** 2) / (2 * sigma**2))
        return blob.expand(len(batch.image), 1, height, width)

    return explain


def _random(
    model: nn.Module, layer: nn.Module, settings: Optional[DSIBSettings] = None
) -> Explainer:
    """Uniform noise at the layer's resolution, seeded by each item's key."""

    def explain(batch: Batch) -> Tensor:
        height, width = batch.image.shape[-2:]
        side = max(1, math.ceil(min(height, width) / 8))
        maps = [
            torch.rand(1, side, side, generator=torch.Generator().manual_seed(key_seed(key)))
            for key in batch.keys
        ]
        return torch.stack(maps).to(batch.image.device)

    return explain


def key_seed(key: str) -> int:
    """A seed for the item ``key``, the same in every process (unlike ``hash``)."""
    return zlib.crc32(key.encode())


#: pytorch-grad-cam's methods that the benchmark compares: display name to class name.
_PYTORCH_GRAD_CAM_CLASSES = {
    "Grad-CAM++": "GradCAMPlusPlus",
    "Score-CAM": "ScoreCAM",
    "Layer-CAM": "LayerCAM",
    "XGrad-CAM": "XGradCAM",
    "Ablation-CAM": "AblationCAM",
}
#: Every method the benchmark knows, by display name.
METHODS: dict[str, Factory] = {
    "InfoCAM": _infocam,
    "InfoCAM (single fit)": _infocam_single_fit,
    "Grad-CAM": _grad_cam,
    **{name: _pytorch_grad_cam(cls) for name, cls in _PYTORCH_GRAD_CAM_CLASSES.items()},
    "Centre": _centre,
    "Random": _random,
}
#: The methods that come from pytorch-grad-cam (the ``bench`` extra).
PYTORCH_GRAD_CAM_METHODS = tuple(_PYTORCH_GRAD_CAM_CLASSES)


def check_methods(names: Sequence[str]) -> None:
    """Raises ``ValueError`` for a name not in :data:`METHODS`, or for pytorch-grad-cam's
    methods where it is not installed, saying what to do; before any work."""
    unknown = [name for name in names if name not in METHODS]
    if unknown:
        raise ValueError(f"--methods: unknown {unknown}; choose from {list(METHODS)}")
    needs = [name for name in names if name in PYTORCH_GRAD_CAM_METHODS]
    if needs and importlib.util.find_spec("pytorch_grad_cam") is None:
        others = ",".join(name for name in names if name not in needs) or "InfoCAM,Grad-CAM"
        raise ValueError(
            f"--methods: {', '.join(needs)} come from pytorch-grad-cam, which is not "
            f"installed: pip install 'captum-infocam[bench]', or leave them out "
            f"(--methods {others})"
        )


#: Methods that cost far more than the others on a CPU, run only when ``--methods`` names
#: them. Score-CAM scores one masked image per channel of the layer, Ablation-CAM one
#: image with that channel zeroed: on the shipped ResNet's last layer, 128 forward passes
#: per map (Score-CAM: about 0.27 s per image on 2 CPU cores against Grad-CAM's 0.001 s;
#: docs/benchmark.md).
SLOW_METHODS = ("Score-CAM", "Ablation-CAM")
#: What ``run`` compares unless ``--methods`` says otherwise: all but the slow methods
#: and InfoCAM's first-release fit, which is compared on request only.
DEFAULT_METHODS = [
    name for name in METHODS if name not in SLOW_METHODS and name != "InfoCAM (single fit)"
]
