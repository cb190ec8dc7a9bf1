"""The benchmark's small trained networks, shipped as package data.

Two convolutional families, each in a shallow and a deep form, and a small
vision transformer, all ending in global average pooling and a linear layer:

* ``"resnet"``: a compact ResNet of torchvision ``BasicBlock`` stages
  (64 -> 32 -> 16 -> 8 pixels), one block per stage;
* ``"resnet18"``: the ResNet-18 layout (four stages of two ``BasicBlock`` each,
  17 convolutions) at a quarter of its widths;
* ``"vgg"``: a VGG-style stack of convolution, batch norm, ReLU and max pooling,
  four convolutions;
* ``"vgg12"``: the same plain stack with three convolutions per block, 12 in all
  (no skip connection, where gradients shatter fastest with depth);
* ``"vit"``: a convolutional stem and four transformer blocks with global
  self-attention on an 8 x 8 grid of tokens (:class:`CompactViT`).

Each has a ``"last"`` layer (the last stage, 8 x 8 for 64-pixel images, followed
only by pooling, the ViT's layer norm, and the classifier) and a ``"middle"`` one (an
earlier stage whose suffix is itself a non-linear network); :data:`STAGES` lists
every stage in order of depth, for the depth study. Retrain with
``python -m captum_infocam.benchmark train --arch resnet --replace-shipped`` (see
``train.py``).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

from captum_infocam.benchmark.data import CLASSES

__all__ = [
    "ARCHITECTURES",
    "LAYERS",
    "QUOTED_ROLES",
    "ROLES",
    "STAGES",
    "CompactResNet",
    "CompactResNet18",
    "CompactVGG",
    "CompactVGG12",
    "CompactViT",
    "layer_name",
    "load_model",
    "weights_path",
]


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


class CompactResNet18(nn.Module):
    """ResNet-18's layout (stem, four stages of two ``BasicBlock`` each, the last three
    with stride 2), at a quarter of its widths, for 64-pixel images."""

    def __init__(
        self, classes: int = len(CLASSES), widths: tuple[int, ...] = (16, 32, 64, 128)
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        inplanes = widths[0]
        stages = []
        for index, planes in enumerate(widths):
            stride = 1 if index == 0 else 2
            downsample = _downsample(inplanes, planes) if stride != 1 else None
            first = BasicBlock(inplanes, planes, stride=stride, downsample=downsample)
            stages.append(nn.Sequential(first, BasicBlock(planes, planes)))
            inplanes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _vgg_block(inplanes: int, planes: int, pool: bool, convs: int = 1) -> nn.Sequential:
    layers: list[nn.Module] = []
    for index in range(convs):
        layers += [
            nn.Conv2d(inplanes if index == 0 else planes, planes, 3, padding=1, bias=False),
            nn.BatchNorm2d(planes),
            nn.ReLU(inplace=True),
        ]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class CompactVGG(nn.Module):
    """Four convolution blocks (the first three max-pooled), average pooling, linear."""

    def __init__(
        self,
        classes: int = len(CLASSES),
        widths: tuple[int, ...] = (32, 64, 128, 128),
        convs_per_block: int = 1,
    ):
        super().__init__()
        convs = convs_per_block
        self.block1 = _vgg_block(3, widths[0], pool=True, convs=convs)
        self.block2 = _vgg_block(widths[0], widths[1], pool=True, convs=convs)
        self.block3 = _vgg_block(widths[1], widths[2], pool=True, convs=convs)
        self.block4 = _vgg_block(widths[2], widths[3], pool=False, convs=convs)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block4(self.block3(self.block2(self.block1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class CompactVGG12(CompactVGG):
    """:class:`CompactVGG` with three convolutions per block: 12 convolutions, no skip."""

    def __init__(self, classes: int = len(CLASSES)):
        super().__init__(classes, widths=(32, 64, 128, 128), convs_per_block=3)


class _GridBlock(nn.Module):
    """A pre-norm transformer block (global self-attention, then an MLP) whose tokens
    come and go as a ``(N, C, H, W)`` grid, so that its output is a spatial map."""

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        normed = self.norm1(tokens)
        tokens = tokens + self.attn(normed, normed, normed, need_weights=False)[0]
        tokens = tokens + self.mlp(self.norm2(tokens))
        return tokens.transpose(1, 2).reshape(batch, channels, height, width)


class CompactViT(nn.Module):
    """A small vision transformer: a convolutional stem (three stride-2 convolutions, the
    "early convolutions" of Xiao et al., 2021) makes an 8 x 8 grid of tokens, with a
    learned position embedding; four transformer blocks with global self-attention;
    the tokens' mean, a layer norm and a linear classifier (no class token). Tokens stay
    a ``(N, C, 8, 8)`` grid between blocks, so every CAM method reads a block's output
    as a map without a layout. Larger images get a larger grid, with the position
    embedding resized to it."""

    def __init__(
        self, classes: int = len(CLASSES), dim: int = 96, depth: int = 4, heads: int = 3
    ) -> None:
        super().__init__()
        widths = (24, 48)
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
            nn.Conv2d(widths[0], widths[1], 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(widths[1]),
            nn.ReLU(inplace=True),
            nn.Conv2d(widths[1], dim, 3, stride=2, padding=1),
        )
        self.position = nn.Parameter(torch.zeros(1, dim, 8, 8))
        nn.init.trunc_normal_(self.position, std=0.02)
        for index in range(1, depth + 1):
            setattr(self, f"block{index}", _GridBlock(dim, heads, 2 * dim))
        self.depth = depth
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        position = self.position
        if x.shape[-2:] != position.shape[-2:]:
            # Larger images (the benchmark's 128-pixel grids): the embedding is resized to
            # the token grid, as timm and DeiT do.
            position = nn.functional.interpolate(
                position, size=x.shape[-2:], mode="bilinear", align_corners=False
            )
        x = x + position
        for index in range(1, self.depth + 1):
            x = getattr(self, f"block{index}")(x)
        return self.fc(self.norm(x.mean((2, 3))))


ARCHITECTURES: dict[str, type[nn.Module]] = {
    "resnet": CompactResNet,
    "resnet18": CompactResNet18,
    "vgg": CompactVGG,
    "vgg12": CompactVGG12,
    "vit": CompactViT,
}

#: The roles of the explained layers: the last stage, and a middle one.
ROLES = ("last", "middle")
#: The roles as the command lines' help and errors spell them: ``'last', 'middle'``.
QUOTED_ROLES = ", ".join(map(repr, ROLES))
#: The explained layers of each architecture, one per role of :data:`ROLES`.
LAYERS: dict[str, dict[str, str]] = {
    "resnet": {"last": "layer3", "middle": "layer2"},
    "resnet18": {"last": "layer4", "middle": "layer3"},
    "vgg": {"last": "block4", "middle": "block3"},
    "vgg12": {"last": "block4", "middle": "block3"},
    "vit": {"last": "block4", "middle": "block2"},
}

#: Every stage of each architecture whose output is a spatial map, in order of depth.
STAGES: dict[str, list[str]] = {
    "resnet": ["stem", "layer1", "layer2", "layer3"],
    "resnet18": ["stem", "layer1", "layer2", "layer3", "layer4"],
    "vgg": ["block1", "block2", "block3", "block4"],
    "vgg12": ["block1", "block2", "block3", "block4"],
    "vit": ["stem", "block1", "block2", "block3", "block4"],
}


def layer_name(arch: str, layer: str) -> str:
    """The module name of ``layer`` in ``arch``: a role of :data:`LAYERS` (``"last"``,
    ``"middle"``) or a module name (a stage of :data:`STAGES`, or any submodule, e.g.
    ``"layer2.0.conv1"``). Raises ``ValueError`` naming the stages otherwise."""
    name = LAYERS[arch].get(layer, layer)
    if name not in dict(ARCHITECTURES[arch]().named_modules()) or not name:
        raise ValueError(
            f"--layer must be {QUOTED_ROLES} or a module of {arch}, e.g. one of "
            f"its stages {STAGES[arch]}, got {layer!r}"
        )
    return name


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
