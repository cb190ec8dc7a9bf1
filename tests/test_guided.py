"""GuidedInfoCAM: guided backpropagation times the upsampled InfoCAM map."""

from __future__ import annotations

import pytest
import torch
from captum.attr import GuidedBackprop, GuidedGradCam, LayerAttribution
from torch import Tensor

from captum_infocam import DSIBSettings, GuidedInfoCAM, InfoCAM
from tests.conftest import ModelState, SmallCNN, coloured_squares


def test_guided_infocam_is_guided_backprop_times_the_upsampled_map(
    trained_cnn: SmallCNN,
) -> None:
    x, y = coloured_squares(4, generator=torch.Generator().manual_seed(3))
    state = ModelState.of(trained_cnn)
    guided = GuidedInfoCAM(trained_cnn, trained_cnn.features)
    attr = guided.attribute(x, target=y, interpolate_mode="bilinear")
    state.assert_unchanged(trained_cnn)
    infocam = InfoCAM(trained_cnn, trained_cnn.features).attribute(x, target=y)
    expected = GuidedBackprop(trained_cnn).attribute(x, target=y) * LayerAttribution.interpolate(
        infocam, x.shape[2:], "bilinear"
    )
    torch.testing.assert_close(attr, expected)
    assert (
        attr.shape == GuidedGradCam(trained_cnn, trained_cnn.features).attribute(x, target=y).shape
    )


def test_guided_infocam_depends_on_the_class_and_takes_the_settings(trained_cnn: SmallCNN) -> None:
    x, _ = coloured_squares(2, generator=torch.Generator().manual_seed(4))
    guided = GuidedInfoCAM(trained_cnn, trained_cnn.features)
    first, second = (guided.attribute(x, target=t) for t in (0, 1))
    assert first.abs().sum() > 0 and not torch.allclose(first, second)
    longer = guided.attribute(x, target=0, settings=DSIBSettings(steps=3))
    assert guided.infocam.last_fit.loss_trace.shape[0] == 3 and not torch.equal(longer, first)


def test_guided_infocam_refuses_inputs_without_spatial_dimensions(
    small_cnn: SmallCNN, images: Tensor
) -> None:
    guided = GuidedInfoCAM(small_cnn, small_cnn.features)
    calls = []
    handle = small_cnn.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        with pytest.raises(ValueError, match=r"inputs\[0\] has shape \(3, 768\); GuidedInfoCAM"):
            guided.attribute(images.flatten(1), target=0)
    finally:
        handle.remove()
    assert not calls  # refused before the model ran
