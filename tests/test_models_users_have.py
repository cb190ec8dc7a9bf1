"""The models people have: Hugging Face and timm classifiers (random weights, tiny configs,
nothing downloaded), outputs that are not tensors, and Captum's NoiseTunnel around InfoCAM."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Callable, Optional

import pytest
import timm
import torch
import transformers
from captum.attr import NoiseTunnel
from torch import Tensor, nn

from captum_infocam import ChannelsLast, InfoCAM, TokenGrid
from captum_infocam.layouts import LayerLayout
from captum_infocam.metrics import deletion_auc, insertion_auc
from captum_infocam.outputs import output_scores
from tests.conftest import SmallCNN


def test_output_scores_reads_tensors_logits_and_documented_keys() -> None:
    scores = torch.randn(2, 3)
    assert output_scores(scores) is scores
    assert output_scores({"loss": torch.zeros(()), "logits": scores}) is scores
    assert output_scores({"out": scores, "aux": torch.zeros(2, 3)}) is scores
    assert output_scores(SimpleNamespace(logits=scores)) is scores
    output = transformers.modeling_outputs.ImageClassifierOutput(logits=scores)
    assert output_scores(output) is scores


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ((torch.zeros(2, 3),), r"a tuple of 1 values.*lambda x: model\(x\)\[0\]"),
        ({"scores": torch.zeros(2, 3)}, r"a dict with keys \['scores'\].*\['logits', 'out'\]"),
        (SimpleNamespace(logits=[1.0]), r"a SimpleNamespace"),
        (None, r"a NoneType"),
    ],
)
def test_other_outputs_are_refused_with_what_to_return(output, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        output_scores(output)


class _DictOutput(nn.Module):
    """:class:`SmallCNN`'s logits under ``"logits"``, as many model zoos return them."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {"logits": self.model(x), "features": x.mean((2, 3))}


def test_a_dict_output_explains_as_its_logits(trained_cnn: SmallCNN, images: Tensor) -> None:
    wrapped = _DictOutput(trained_cnn)
    cam = InfoCAM(wrapped, trained_cnn.features)
    attr = cam.attribute(images, target=[0, 1, 2])
    assert cam.suffix_strategy_used == "traced", "a dict output traces with torch.fx"
    plain = InfoCAM(trained_cnn, trained_cnn.features).attribute(images, target=[0, 1, 2])
    torch.testing.assert_close(attr, plain, rtol=0, atol=0)


#: A model, its explained layer and layout, its input side and its map side.
ModelCase = tuple[nn.Module, nn.Module, Optional[LayerLayout], int, int]


def _normal_head(linear: nn.Linear) -> None:
    # Random classifiers start their head near zero, so every class scores alike and a
    # fit has no evidence to find (it collapses); a N(0, 1) head gives it some.
    nn.init.normal_(linear.weight, generator=torch.Generator().manual_seed(0))


def _hf_vit() -> ModelCase:
    config = transformers.ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=4,
    )
    model = transformers.ViTForImageClassification(config).eval()
    _normal_head(model.classifier)
    return model, model.vit.layers[-1].layernorm_before, TokenGrid(1), 32, 4


def _hf_swin() -> ModelCase:
    config = transformers.SwinConfig(
        image_size=32,
        patch_size=4,
        embed_dim=16,
        depths=[1, 1],
        num_heads=[1, 2],
        window_size=4,
        num_labels=4,
    )
    model = transformers.SwinForImageClassification(config).eval()
    _normal_head(model.classifier)
    # The final norm's tokens (a 4 x 4 grid, no class token) are pooled for the classifier.
    return model, model.swin.layernorm, TokenGrid(0), 32, 4


def _timm_vit() -> ModelCase:
    model = timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        img_size=32,
        patch_size=8,
        depth=2,
        embed_dim=32,
        num_heads=2,
        num_classes=4,
    ).eval()
    _normal_head(model.head)
    return model, model.blocks[-1].norm1, TokenGrid(model.num_prefix_tokens), 32, 4


def _timm_convnext() -> ModelCase:
    model = timm.create_model("convnext_atto", pretrained=False, num_classes=4).eval()
    return model, model.stages[-1], None, 64, 2  # a stride of 32


def _timm_swin() -> ModelCase:
    model = timm.create_model(
        "swin_tiny_patch4_window7_224",
        pretrained=False,
        img_size=32,
        window_size=4,
        embed_dim=16,
        depths=(1, 1),
        num_heads=(1, 2),
        num_classes=4,
    ).eval()
    _normal_head(model.head.fc)
    return model, model.layers[-1], ChannelsLast(), 32, 4  # timm's stages: (N, H, W, C)


MODELS: dict[str, Callable[[], ModelCase]] = {
    "hf-vit": _hf_vit,
    "hf-swin": _hf_swin,
    "timm-vit": _timm_vit,
    "timm-convnext": _timm_convnext,
    "timm-swin": _timm_swin,
}


@pytest.mark.parametrize("name", list(MODELS))
def test_hugging_face_and_timm_models_give_the_weighted_sum_of_their_layer(name: str) -> None:
    torch.manual_seed(0)
    model, layer, layout, input_side, side = MODELS[name]()
    x = torch.randn(2, 3, input_side, input_side)
    cam = InfoCAM(model, layer, reshape_transform=layout)
    attr = cam.attribute(x, target=[1, 3])  # a CollapsedFitWarning fails the test (setup.cfg)
    assert attr.shape == (2, 1, side, side)
    assert not cam.last_fit.collapsed.any()
    # The map is ReLU(sum_c (gate_c - complement gate_c) * A_c) of the layer's value, read here
    # with a plain hook.
    values = []
    handle = layer.register_forward_hook(lambda module, args, out: values.append(out))
    with torch.no_grad():
        model(x)
    handle.remove()
    maps = layout.to_maps(values[0]) if layout else values[0]
    weights = cam.last_fit.gates - cam.last_fit.complement.gates
    expected = (weights[..., None, None] * maps).sum(1, keepdim=True).relu()
    torch.testing.assert_close(attr, expected)


def test_a_hugging_face_model_is_explained_and_scored_as_its_logits() -> None:
    torch.manual_seed(0)
    model, layer, layout, _, _ = _hf_vit()
    x = torch.randn(2, 3, 32, 32)

    def logits(inputs: Tensor) -> Tensor:
        return model(inputs).logits

    attr = InfoCAM(model, layer, reshape_transform=layout).attribute(x, target=[1, 3])
    by_hand = InfoCAM(logits, layer, reshape_transform=layout).attribute(x, target=[1, 3])
    torch.testing.assert_close(attr, by_hand, rtol=0, atol=0)
    for metric in (insertion_auc, deletion_auc):
        direct = metric(model, x, attr, target=[1, 3], n_steps=4)
        torch.testing.assert_close(direct, metric(logits, x, attr, target=[1, 3], n_steps=4))


def test_noise_tunnel_averages_infocam_over_noisy_copies(
    trained_cnn: SmallCNN, images: Tensor
) -> None:
    cam = InfoCAM(trained_cnn, trained_cnn.features)
    noisy: list[Tensor] = []
    handle = trained_cnn.register_forward_pre_hook(lambda module, args: noisy.append(args[0]))
    torch.manual_seed(0)
    try:
        smooth = NoiseTunnel(cam).attribute(
            images, nt_type="smoothgrad", nt_samples=3, stdevs=0.2, target=[0, 1, 2]
        )
    finally:
        handle.remove()
    copies = noisy[0]  # the first pass of InfoCAM's one call runs on every noisy copy
    assert copies.shape == (9, 3, 16, 16)
    assert not torch.allclose(copies, images.repeat_interleave(3, dim=0))
    each = cam.attribute(copies, target=torch.tensor([0, 1, 2]).repeat_interleave(3))
    torch.testing.assert_close(smooth, each.view(3, 3, 1, 16, 16).mean(1))
    assert not torch.allclose(smooth, cam.attribute(images, target=[0, 1, 2]))


def test_channels_last_on_hugging_face_swin_tokens_names_token_grid() -> None:
    model, layer, _, input_side, _ = _hf_swin()
    cam = InfoCAM(model, layer, reshape_transform=ChannelsLast())
    message = (
        r"ChannelsLast expects a \(B, H, W, C\) value, got shape \(1, 16, \d+\): a \(B, N, C\) "
        r"token sequence, as Hugging Face's Swin passes, needs "
        r"reshape_transform=TokenGrid\(prefix_tokens=0\)"
    )
    with pytest.raises(ValueError, match=message):
        cam.attribute(torch.randn(1, 3, input_side, input_side), target=0)
    with pytest.raises(ValueError, match=r"\(B, H, W, C\) value, got shape \(2, 5\)$"):
        ChannelsLast().to_maps(torch.zeros(2, 5))
