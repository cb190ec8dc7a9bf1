"""The benchmark's small trained networks, shipped as package data.

Two families, both ending in global average pooling and a linear layer:

* ``"resnet"``: a compact ResNet of torchvision ``BasicBlock`` stages
  (64 -> 32 -> 16 -> 8 pixels);
* ``"vgg"``: a VGG-style stack of convolution, batch norm, ReLU and max pooling.

Each has a ``"last"`` layer (the last convolutional stage, 8 x 8 for 64-pixel
images, followed only by pooling and the classifier) and a ``"middle"`` one (an
earlier stage whose suffix is itself a non-linear network). Retrain with
``python -m captum_infocam.benchmark train --arch resnet`` (see ``train.py``).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

from captum_infocam.benchmark.data import CLASSES

__all__ = ["ARCHITECTURES", "LAYERS", "CompactResNet", "CompactVGG", "load_model", "weights_path"]


def _downsample(inplanes: int, planes: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(inplanes, planes, 1, stride=2, bias=False), nn.BatchNorm2d(planes)
    )


class CompactResNet(nn.Module):
    """Stem, three single-block stages (stride 2 each), average pooling, linear."""

    def __init__(self, classes: int = len(CLASSES), widths: tuple[int, int, int] = (32, 64, 128)):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        stages = []
        inplanes = widths[0]
        for planes in widths:
            stages.append(
                BasicBlock(inplanes, planes, stride=2, downsample=_downsample(inplanes, planes))
            )
            inplanes = planes
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _vgg_block(inplanes: int, planes: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(inplanes, planes, 3, padding=1, bias=False),
        nn.BatchNorm2d(planes),
        nn.ReLU(inplace=True),
    ]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class CompactVGG(nn.Module):
    """Four convolution blocks (the first three max-pooled), average pooling, linear."""

    def __init__(self, classes: int = len(CLASSES), widths: tuple[int, ...] = (32, 64, 128, 128)):
        super().__init__()
        self.block1 = _vgg_block(3, widths[0], pool=True)
        self.block2 = _vgg_block(widths[0], widths[1], pool=True)
        self.block3 = _vgg_block(widths[1], widths[2], pool=True)
        self.block4 = _vgg_block(widths[2], widths[3], pool=False)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block4(self.block3(self.block2(self.block1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


ARCHITECTURES: dict[str, type[nn.Module]] = {"resnet": CompactResNet, "vgg": CompactVGG}

#: The explained layers of each architecture, by role.
LAYERS: dict[str, dict[str, str]] = {
    "resnet": {"last": "layer3", "middle": "layer2"},
    "vgg": {"last": "block4", "middle": "block3"},
}


def weights_path(arch: str) -> Path:
    """Where the shipped weights of ``arch`` live: ``weights/<arch>.pt`` beside this module."""
    return Path(str(resources.files("captum_infocam.benchmark") / "weights" / f"{arch}.pt"))


def load_model(arch: str, path: Path | None = None) -> nn.Module:
    """Returns the trained ``arch`` network in eval mode (shipped weights by default)."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {sorted(ARCHITECTURES)}, got {arch!r}")
    model = ARCHITECTURES[arch]()
    state = torch.load(path or weights_path(arch), map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()
