"""The architecture and task matrix: torchvision families with random weights, small inputs.

Most tests here check shapes and plumbing with a two-step fit (``FAST``). Two Adam
steps of about ``lr`` each cannot take a gate from sigmoid(5) = 0.993 below 0.9, so such
a fit is always flagged as collapsed, and those tests expect the warning.
``test_default_fit_does_not_collapse`` checks each family with the default settings.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.segmentation.fcn import FCNHead
from torchvision.ops import MultiScaleRoIAlign

from captum_infocam import (
    ChannelsLast,
    CollapsedFitWarning,
    DetectionBoxScore,
    DSIBSettings,
    InfoCAM,
    SegmentationRegion,
    TokenGrid,
)
from captum_infocam.benchmark.items import ShapesItems
from captum_infocam.benchmark.zoo import load_model

FAST = dict(settings=DSIBSettings(n_samples=2, steps=2, lr=1.0))
#: For the tests of shapes and plumbing, whose FAST fits are flagged as collapsed.
fast_fit = pytest.mark.filterwarnings("ignore::captum_infocam.CollapsedFitWarning")

models = torchvision.models


def _classifier(name: str) -> Callable[[], nn.Module]:
    return lambda: getattr(models, name)(weights=None, num_classes=10)


# (model factory, layer getter, input side, expected map side, reshape_transform)
CLASSIFIERS = {
    "resnet18": (_classifier("resnet18"), lambda m: m.layer4, 64, 2, None),
    "vgg11": (_classifier("vgg11"), lambda m: m.features[-3], 64, 4, None),
    "densenet121": (_classifier("densenet121"), lambda m: m.features.denseblock4, 64, 2, None),
    "mobilenet_v3_small": (
        _classifier("mobilenet_v3_small"),
        lambda m: m.features[-1],
        64,
        2,
        None,
    ),
    "efficientnet_b0": (_classifier("efficientnet_b0"), lambda m: m.features[-1], 64, 2, None),
    "convnext_tiny": (_classifier("convnext_tiny"), lambda m: m.features[-1], 64, 2, None),
    # The last block's first LayerNorm: its grid tokens reach the class token through
    # the block's attention (after the last block only the class token is read).
    "vit_b_16": (
        _classifier("vit_b_16"),
        lambda m: m.encoder.layers[-1].ln_1,
        224,
        14,
        TokenGrid(1),
    ),
    "swin_t": (_classifier("swin_t"), lambda m: m.features[-1], 64, 2, ChannelsLast()),
}


@pytest.mark.parametrize("name", list(CLASSIFIERS))
def test_classifier_families_give_finite_non_negative_maps(name: str) -> None:
    make, layer, side, map_side, layout = CLASSIFIERS[name]
    torch.manual_seed(0)
    model = make().eval()
    x = torch.randn(2, 3, side, side)
    cam = InfoCAM(model, layer(model), reshape_transform=layout)
    with pytest.warns(CollapsedFitWarning):
        attr = cam.attribute(x, target=[1, 7], **FAST)
    assert attr.shape == (2, 1, map_side, map_side)
    assert torch.isfinite(attr).all() and (attr >= 0).all()
    assert cam.suffix_strategy_used == "traced", "torchvision classifiers trace with torch.fx"
    assert cam.last_fit.collapsed.all(), "two steps cannot move a gate below 0.9"


def test_token_layouts_round_trip() -> None:
    tokens = torch.randn(2, 1 + 12, 5)
    layout = TokenGrid(1, grid_size=(3, 4))
    maps = layout.to_maps(tokens)
    assert maps.shape == (2, 5, 3, 4)
    assert torch.equal(maps[:, :, 1, 2], tokens[:, 1 + 1 * 4 + 2])
    assert torch.equal(layout.from_maps(maps, tokens), tokens)
    channels_last = torch.randn(2, 3, 4, 5)
    assert torch.equal(
        ChannelsLast().from_maps(ChannelsLast().to_maps(channels_last), channels_last),
        channels_last,
    )
    with pytest.raises(ValueError, match="grid_size"):
        TokenGrid(1).to_maps(torch.randn(1, 1 + 12, 5))
    with pytest.raises(ValueError, match="prefix_tokens must be >= 0"):
        TokenGrid(-1)
    with pytest.raises(TypeError, match="prefix_tokens must be an int"):
        TokenGrid(1.0)


def _tiny_vit(num_layers: int) -> nn.Module:
    """torchvision's VisionTransformer, small: 32 px images, 4 x 4 patches of 8 px."""
    torch.manual_seed(0)
    return models.VisionTransformer(
        image_size=32,
        patch_size=8,
        num_layers=num_layers,
        num_heads=2,
        hidden_dim=16,
        mlp_dim=32,
        num_classes=4,
    ).eval()


@fast_fit
def test_vit_gates_act_on_grid_channels_and_keep_the_class_token() -> None:
    model = _tiny_vit(num_layers=2)
    layer = model.encoder.layers[-1].ln_1
    x = torch.randn(3, 3, 32, 32)
    cam = InfoCAM(model, layer, reshape_transform=TokenGrid(1))
    attr = cam.attribute(
        x, target=[0, 1, 2], attr_dim_summation=False, relu_attributions=False, **FAST
    )
    assert attr.shape == (3, 16, 4, 4)
    with torch.no_grad():
        tokens = []
        handle = layer.register_forward_hook(lambda m, a, out: tokens.append(out))
        model(x)
        handle.remove()
    grid = TokenGrid(1).to_maps(tokens[0])
    weights = cam.last_fit.gates - cam.last_fit.complement.gates
    torch.testing.assert_close(attr, weights[..., None, None] * grid)
    rerun = InfoCAM(model, layer, reshape_transform=TokenGrid(1), suffix_strategy="rerun")
    torch.testing.assert_close(
        rerun.attribute(x, target=[0, 1, 2], **FAST), cam.attribute(x, target=[0, 1, 2], **FAST)
    )


def test_token_layer_without_layout_is_rejected() -> None:
    model = _tiny_vit(num_layers=1)
    with pytest.raises(ValueError, match="pass reshape_transform"):
        InfoCAM(model, model.encoder.layers[-1].ln_1).attribute(torch.randn(1, 3, 32, 32), target=0)


@pytest.mark.parametrize(
    ("make", "layer", "map_side"),
    [
        (
            lambda: models.segmentation.fcn_resnet50(
                weights=None, weights_backbone=None, num_classes=5
            ),
            lambda m: m.backbone.layer4,
            8,
        ),
        (
            lambda: models.segmentation.deeplabv3_mobilenet_v3_large(
                weights=None, weights_backbone=None, num_classes=5
            ),
            lambda m: m.backbone["16"],
            4,
        ),
    ],
    ids=["fcn_resnet50", "deeplabv3_mobilenet_v3_large"],
)
@fast_fit
def test_segmentation_region_target(make, layer, map_side: int) -> None:
    torch.manual_seed(0)
    model = make().eval()
    x = torch.randn(2, 3, 64, 64)
    region = torch.zeros(2, 64, 64)
    region[0, :32] = 1
    region[1, :, 32:] = 1
    scores = SegmentationRegion(model)
    with torch.no_grad():
        logits = model(x)["out"]
        expected = torch.stack([logits[0, :, :32].mean((1, 2)), logits[1, :, :, 32:].mean((1, 2))])
        torch.testing.assert_close(scores(x, region), expected)
    cam = InfoCAM(scores, layer(model))
    attr = cam.attribute(x, target=[3, 1], additional_forward_args=(region,), **FAST)
    assert attr.shape == (2, 1, map_side, map_side)
    assert torch.isfinite(attr).all() and (attr >= 0).all()
    assert cam.suffix_strategy_used == "traced"
    shared = SegmentationRegion(model, region=region[0])
    with torch.no_grad():
        torch.testing.assert_close(shared(x)[0], expected[0])
    with pytest.raises(ValueError, match="give a region"):
        scores(x)
    with pytest.raises(ValueError, match=r"region must be \(H, W\)"):
        SegmentationRegion(model, region=region)


@fast_fit
def test_detection_box_score_target() -> None:
    torch.manual_seed(0)
    detector = models.detection.fasterrcnn_mobilenet_v3_large_fpn(
        weights=None,
        weights_backbone=None,
        num_classes=3,
        min_size=96,
        max_size=96,
        box_score_thresh=0.0,
    ).eval()
    x = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        detections = detector(list(x))[0]
    box, label = detections["boxes"][0], int(detections["labels"][0])
    score = DetectionBoxScore(detector, box, label)
    with torch.no_grad():
        expected = torch.logit(detections["scores"][0].clamp(1e-6, 1 - 1e-6))
        torch.testing.assert_close(score(x)[0, 0], expected)
    layer = detector.backbone.body["16"]
    sigmoid = replace(FAST["settings"], likelihood="sigmoid")
    attr = InfoCAM(score, layer).attribute(x, settings=sigmoid)
    assert attr.shape[:2] == (1, 1) and torch.isfinite(attr).all() and (attr >= 0).all()


def _trained_backbone() -> nn.Sequential:
    """The shipped ResNet's stages (64 px in, 128 channels of 8 x 8 out), trained on shapes."""
    network = load_model("resnet")
    backbone = nn.Sequential(network.stem, network.layer1, network.layer2, network.layer3)
    backbone.out_channels = 128  # what torchvision's detection models read
    return backbone


def _cnn() -> tuple[nn.Module, nn.Module, dict]:
    model = models.resnet18(weights=None, num_classes=10).eval()
    return model, model.layer4, dict(inputs=torch.randn(2, 3, 64, 64), target=[1, 7])


def _vit() -> tuple[nn.Module, nn.Module, dict]:
    model = _tiny_vit(num_layers=2)
    nn.init.normal_(model.heads.head.weight)  # torchvision's zero head scores every class alike
    layer = model.encoder.layers[-1].ln_1
    return model, layer, dict(inputs=torch.randn(3, 3, 32, 32), target=[0, 1, 2])


def _swin() -> tuple[nn.Module, nn.Module, dict]:
    model = models.swin_t(weights=None, num_classes=10).eval()
    return model, model.features[-1], dict(inputs=torch.randn(2, 3, 64, 64), target=[1, 7])


class _OutDict(nn.Module):
    """A backbone as torchvision's segmentation models read it: ``{"out": features}``."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.body(x)}


def _segmentation() -> tuple[nn.Module, nn.Module, dict]:
    backbone = _trained_backbone()
    segmenter = models.segmentation.FCN(_OutDict(backbone), FCNHead(128, 5)).eval()
    region = torch.zeros(2, 64, 64)
    region[0, :32] = 1
    region[1, :, 32:] = 1
    batch = ShapesItems("single", images=2).load(range(2))
    kwargs = dict(inputs=batch.image, target=[3, 1], additional_forward_args=(region,))
    return SegmentationRegion(segmenter), backbone[3], kwargs


def _detection() -> tuple[nn.Module, nn.Module, dict]:
    backbone = _trained_backbone()
    detector = models.detection.FasterRCNN(
        backbone,
        num_classes=3,
        min_size=64,
        max_size=64,
        box_score_thresh=0.0,
        rpn_anchor_generator=AnchorGenerator(sizes=((16, 32),), aspect_ratios=((1.0,),)),
        box_roi_pool=MultiScaleRoIAlign(["0"], output_size=7, sampling_ratio=2),
    ).eval()
    image = ShapesItems("single", images=1).load([0]).image
    with torch.no_grad():
        detection = detector(list(image))[0]
    score = DetectionBoxScore(detector, detection["boxes"][0], int(detection["labels"][0]))
    return score, backbone[3], dict(inputs=image, settings=DSIBSettings(likelihood="sigmoid"))


# Random torchvision weights leave some families without evidence: ViT's head starts at
# zero, and a random MobileNetV3 backbone (DeepLabV3's, the small detector's) gives
# near-constant outputs, so any fit of them must collapse. These families get a random
# head (ViT) or the shipped network's trained stages as backbone (segmentation, detection).
FAMILIES = {
    "cnn": _cnn,
    "vit": _vit,
    "swin": _swin,
    "segmentation": _segmentation,
    "detection": _detection,
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_default_fit_does_not_collapse(family: str) -> None:
    torch.manual_seed(0)
    forward_func, layer, kwargs = FAMILIES[family]()
    layout = {"vit": TokenGrid(1), "swin": ChannelsLast()}.get(family)
    cam = InfoCAM(forward_func, layer, reshape_transform=layout)
    attr = cam.attribute(**kwargs)  # a CollapsedFitWarning fails the test (setup.cfg)
    assert torch.isfinite(attr).all() and (attr >= 0).all()
    assert not cam.last_fit.collapsed.any()


@fast_fit
@pytest.mark.cuda
@pytest.mark.skipif(torch.cuda.device_count() < 1, reason="needs a CUDA device")
def test_data_parallel_with_device_ids_matches_the_plain_model() -> None:
    torch.manual_seed(0)
    model = models.resnet18(num_classes=10).eval().cuda()
    x = torch.randn(4, 3, 64, 64, device="cuda")
    ids = list(range(torch.cuda.device_count()))
    parallel = nn.DataParallel(model, device_ids=ids)
    plain = InfoCAM(model, model.layer4).attribute(x, target=[0, 1, 2, 3], **FAST)
    wrapped = InfoCAM(parallel, model.layer4).attribute(x, target=[0, 1, 2, 3], **FAST)
    function = InfoCAM(lambda z: parallel(z), model.layer4, device_ids=ids)
    torch.testing.assert_close(wrapped, plain, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(
        function.attribute(x, target=[0, 1, 2, 3], **FAST), plain, rtol=1e-4, atol=1e-5
    )
