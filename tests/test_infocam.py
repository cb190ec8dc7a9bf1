"""InfoCAM's Captum API: values on hand-computable models, invariances, conventions."""

from __future__ import annotations

import re
import warnings
from dataclasses import FrozenInstanceError, replace

import matplotlib.pyplot as plt
import pytest
import torch
import torchvision
from captum.attr import LayerGradCam
from captum.attr import visualization as viz
from captum.metrics import sensitivity_max
from torch import Tensor, nn

from captum_infocam import (
    CollapsedFitWarning,
    DSIBSettings,
    InfoCAM,
    NoSpatialMapWarning,
    ZeroMapWarning,
)
from captum_infocam.benchmark.items import ShapesItems
from captum_infocam.benchmark.sanity import rank_correlation
from captum_infocam.benchmark.zoo import LAYERS, load_model
from captum_infocam.metrics import saliency_maps
from captum_infocam.visualization import overlay
from tests.conftest import LinearHead, SmallCNN, coloured_squares, trained_copy

FIT = DSIBSettings(n_samples=4, steps=5, lr=1.0)
FAST = dict(settings=FIT)
#: Mean Spearman correlation of a bfloat16 fit's maps with float32's on the shipped ResNet's
#: middle layer (measured 0.99995; two seeds of the float32 fit give 0.97).
AUTOCAST_MAP_CORRELATION = 0.99
# Random-weight models carry no evidence for any class, so their fits may close every
# gate; the tests that need a healthy fit use trained or hand-built models and say so.
pytestmark = pytest.mark.filterwarnings("ignore::captum_infocam.CollapsedFitWarning")


def test_gates_order_channels_by_their_contribution() -> None:
    # logit_0 = 3 mean(A_0) + 2 mean(A_1) + 1 mean(A_2) + 0 mean(A_3); logit_1 = 0.
    model = LinearHead(torch.tensor([[3.0, 2.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])).eval()
    x = torch.ones(1, 4, 6, 6)
    cam = InfoCAM(model, model.layer)
    attr = cam.attribute(x, target=0)
    gates = cam.last_fit.gates[0]
    against = cam.last_fit.complement.gates[0]
    assert gates[0] > gates[1] > gates[2] > gates[3]
    assert gates[3] < 0.1, "a channel with no influence on the target must be switched off"
    assert (against < 0.1).all(), "no channel is evidence against the target"
    # The map is exactly ReLU(sum_c (λ+_c - λ-_c) A_c).
    torch.testing.assert_close(attr, torch.full((1, 1, 6, 6), float((gates - against).sum())))
    single = cam.attribute(x, target=0, settings=DSIBSettings(contrast="none"))
    torch.testing.assert_close(single, torch.full((1, 1, 6, 6), float(cam.last_fit.gates.sum())))
    assert cam.last_fit.complement is None


def test_evidence_against_the_target_gets_a_negative_weight() -> None:
    # logit_0 = 3 mean(A_0) + 2 mean(A_1) - 2 mean(A_2): channel 2 speaks against class 0.
    model = LinearHead(torch.tensor([[3.0, 2.0, -2.0, 0.0], [0.0, 0.0, 0.0, 0.0]])).eval()
    x = torch.ones(1, 4, 6, 6)
    x[:, 2, :, 3:] = 4.0  # channel 2 fires on the right half only
    cam = InfoCAM(model, model.layer)
    attr = cam.attribute(x, target=0, relu_attributions=False)
    weights = cam.last_fit.gates[0] - cam.last_fit.complement.gates[0]
    assert weights[0] > 0.8 and weights[1] > 0.8 and weights[2] < -0.8 and weights[3].abs() < 0.1
    torch.testing.assert_close(attr[0, 0], (weights[:, None, None] * x[0]).sum(0))
    assert (attr[0, 0, :, :3] > 0).all() and (attr[0, 0, :, 3:] < 0).all()
    # The single fit cannot give a negative weight: the right half stays positive.
    single = cam.attribute(
        x, target=0, relu_attributions=False, settings=DSIBSettings(contrast="none")
    )
    assert (single > 0).all()


@pytest.mark.parametrize("readout", ["gates", "bits", "standardized", "information"])
def test_per_channel_maps_sum_to_the_map(readout: str, small_cnn: SmallCNN, images: Tensor) -> None:
    cam = InfoCAM(small_cnn, small_cnn.features)
    fit = replace(FIT, readout=readout)
    summed = cam.attribute(images, target=1, relu_attributions=False, settings=fit)
    channels = cam.attribute(
        images, target=1, relu_attributions=False, attr_dim_summation=False, settings=fit
    )
    assert channels.shape == (3, 8, 16, 16)
    torch.testing.assert_close(channels.sum(1, keepdim=True), summed)
    with torch.no_grad():
        activations = small_cnn.features(images)
    fit = cam.last_fit
    if readout == "gates":
        weights = fit.gates - fit.complement.gates
        torch.testing.assert_close(channels, weights[..., None, None] * activations)
    if readout == "bits":
        weights = fit.bits - fit.complement.bits
        torch.testing.assert_close(channels, weights[..., None, None] * activations)


def test_a_shifted_object_moves_the_map(trained_cnn: SmallCNN) -> None:
    here, there = torch.zeros(2, 1, 3, 24, 24).unbind(0)
    here[:, 1, 4:7, 5:8] = 2.0
    there[:, 1, 13:16, 11:14] = 2.0  # the same green square, 9 rows down, 6 columns right
    cam = InfoCAM(trained_cnn, trained_cnn.features)
    maps = [cam.attribute(image, target=1)[0, 0] for image in (here, there)]
    rows, cols = torch.meshgrid(torch.arange(24.0), torch.arange(24.0), indexing="ij")
    peaks = [(m - m.median()).clamp_min(0) for m in maps]  # above the uniform background
    centres = [torch.stack([(p * rows).sum(), (p * cols).sum()]) / p.sum() for p in peaks]
    torch.testing.assert_close(centres[1] - centres[0], torch.tensor([9.0, 6.0]), atol=0.25, rtol=0)
    # Convolutions commute with the shift away from the border; the map follows up to
    # the different noise draws at the new positions.
    shifted = torch.roll(maps[0], shifts=(9, 6), dims=(0, 1))[8:20, 8:20]
    torch.testing.assert_close(
        shifted, maps[1][8:20, 8:20], rtol=0, atol=0.05 * float(maps[1].max())
    )


def test_batch_of_n_equals_n_batches_of_one(small_cnn: SmallCNN, images: Tensor) -> None:
    cam = InfoCAM(small_cnn, small_cnn.features)
    targets = [0, 2, 1]
    batch = cam.attribute(images, target=targets)
    batch_gates = cam.last_fit.gates
    for i, target in enumerate(targets):
        single = cam.attribute(images[i : i + 1], target=target)
        torch.testing.assert_close(single, batch[i : i + 1], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(cam.last_fit.gates, batch_gates[i : i + 1], rtol=1e-4, atol=1e-5)


def test_attribute_each_equals_one_call_per_example_and_target(trained_cnn: SmallCNN) -> None:
    x, _ = coloured_squares(3, generator=torch.Generator().manual_seed(4))
    cam = InfoCAM(trained_cnn, trained_cnn.features)
    targets = [[0, 2], torch.tensor([1]), [2, 1, 0]]
    maps, example = cam.attribute_each(x, targets, **FAST)
    gates = cam.last_fit.gates
    assert example.tolist() == [0, 0, 1, 2, 2, 2] and example.dtype == torch.int64
    assert maps.shape == (6, 1, 16, 16)
    rows = [(0, 0), (0, 2), (1, 1), (2, 2), (2, 1), (2, 0)]
    for row, (i, target) in enumerate(rows):
        alone = cam.attribute(x[i : i + 1], target=target, **FAST)
        torch.testing.assert_close(maps[row : row + 1], alone, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(gates[row : row + 1], cam.last_fit.gates, rtol=1e-4, atol=1e-5)
    # The contrast makes the maps of one image differ by the class explained.
    assert not torch.allclose(maps[3], maps[5], atol=1e-3)


def test_attribute_each_repeats_batched_forward_args_with_the_examples() -> None:
    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = SmallCNN()

        def forward(self, x: Tensor, scale: Tensor, shift: float) -> Tensor:
            return self.net(x) * scale + shift

    torch.manual_seed(0)
    model = Scaled().eval()
    x, scale = torch.randn(2, 3, 8, 8), torch.tensor([[1.0], [3.0]])
    cam = InfoCAM(model, model.net.features)
    maps, _ = cam.attribute_each(x, [[0], [1, 2]], additional_forward_args=(scale, 0.5), **FAST)
    for row, (i, target) in enumerate([(0, 0), (1, 1), (1, 2)]):
        alone = cam.attribute(
            x[i : i + 1], target=target, additional_forward_args=(scale[i : i + 1], 0.5), **FAST
        )
        torch.testing.assert_close(maps[row : row + 1], alone, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("name", "layer", "size"),
    [
        ("resnet18", lambda m: m.layer4, 2),
        ("vgg11", lambda m: m.features[-3], 4),
        ("mobilenet_v3_small", lambda m: m.features[-1], 2),
    ],
)
def test_torchvision_models_give_finite_non_negative_maps(name: str, layer, size: int) -> None:
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64)
    attr = InfoCAM(model, layer(model)).attribute(x, target=[1, 2], **FAST)
    assert attr.shape == (2, 1, size, size)
    assert torch.isfinite(attr).all() and (attr >= 0).all()


def test_output_feeds_captum_visualisation(small_cnn: SmallCNN, images: Tensor) -> None:
    attr = InfoCAM(small_cnn, small_cnn.features).attribute(images[:1], target=0, **FAST)
    up = InfoCAM.interpolate(attr, images.shape[-2:], "bilinear")
    assert up.shape == (1, 1, 16, 16)
    figure, _ = viz.visualize_image_attr(
        up[0].permute(1, 2, 0).numpy(),
        images[0].permute(1, 2, 0).numpy(),
        method="blended_heat_map",
        sign="positive",
        use_pyplot=False,
    )
    plt.close(figure)


@pytest.mark.parametrize(
    "target",
    # SmallCNN has three classes: -2 counts from the end, as in Captum, and names class 1.
    [
        1,
        [1, 1, 1],
        torch.tensor(1),
        torch.tensor([1, 1, 1]),
        (1,),
        [(1,), (1,), (1,)],
        -2,
        [-2, 1, -2],
    ],
    ids=["int", "list", "scalar-tensor", "tensor", "tuple", "list-of-tuples", "negative", "mixed"],
)
def test_every_target_form_gives_the_same_map(target, small_cnn: SmallCNN, images: Tensor) -> None:
    cam = InfoCAM(small_cnn, small_cnn.features)
    reference = cam.attribute(images, target=1, **FAST)
    torch.testing.assert_close(cam.attribute(images, target=target, **FAST), reference)


def test_works_under_no_grad_on_a_frozen_model(small_cnn: SmallCNN, images: Tensor) -> None:
    cam = InfoCAM(small_cnn, small_cnn.features)
    reference = cam.attribute(images, target=0, **FAST)
    for parameter in small_cnn.parameters():
        parameter.requires_grad_(False)
    with torch.no_grad():
        frozen = cam.attribute(images.requires_grad_(), target=0, **FAST)
    torch.testing.assert_close(frozen, reference)
    assert not frozen.requires_grad


def test_tuple_inputs_and_additional_forward_args() -> None:
    class TwoInputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = SmallCNN()

        def forward(self, a: Tensor, b: Tensor, scale: float) -> Tensor:
            return self.net(a + b) * scale

    torch.manual_seed(0)
    model = TwoInputs().eval()
    a, b = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    attr = InfoCAM(model, model.net.features).attribute(
        (a, b), target=[0, 1], additional_forward_args=(2.0,), **FAST
    )
    single = InfoCAM(model.net, model.net.features)
    # Doubling the logits is not the same model, so compare against the equivalent scaled head.
    with torch.no_grad():
        model.net.head[-1].weight.mul_(2.0)
        model.net.head[-1].bias.mul_(2.0)
    torch.testing.assert_close(attr, single.attribute(a + b, target=[0, 1], **FAST))


@pytest.mark.parametrize(
    ("layer", "to_input", "strategy"),
    [
        (lambda m: m.layer4, False, "traced"),
        (lambda m: m.layer4, False, "hooked"),
        (lambda m: m.layer4, False, "auto"),
        # Inside a residual block the rest of the network also needs the block's input,
        # which a hook cannot repeat: traced (with that input as a boundary) or rerun.
        (lambda m: m.layer4[0].conv2, False, "traced"),
        (lambda m: m.layer4[0].conv2, False, "auto"),
        (lambda m: m.layer4[1].conv1, True, "traced"),
        (lambda m: m.layer4[1].conv1, True, "auto"),
    ],
    ids=[
        "stage-traced",
        "stage-hooked",
        "stage-auto",
        "block-traced",
        "block-auto",
        "input-traced",
        "input-auto",
    ],
)
def test_suffix_strategies_give_the_same_maps(layer, to_input: bool, strategy: str) -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=5).eval()
    x = torch.randn(2, 3, 64, 64)
    reference = InfoCAM(model, layer(model), suffix_strategy="rerun").attribute(
        x, target=[0, 3], attribute_to_layer_input=to_input, **FAST
    )
    cam = InfoCAM(model, layer(model), suffix_strategy=strategy)
    attr = cam.attribute(x, target=[0, 3], attribute_to_layer_input=to_input, **FAST)
    torch.testing.assert_close(attr, reference, rtol=1e-4, atol=1e-5 * float(reference.max()))
    assert cam.suffix_strategy_used == ("traced" if strategy == "auto" else strategy)


@pytest.mark.filterwarnings("ignore::captum_infocam.CollapsedFitWarning")
def test_auto_strategy_falls_back_where_the_trace_takes_a_branch_the_model_does_not(
    capsys: pytest.CaptureFixture,
) -> None:
    # Captum's own test model: forward(x, x2=None) adds x2 `if x2 is not None`, which
    # torch.fx traces as taken; the traced prefix then computes x + None.
    from captum.testing.helpers.basic_models import BasicModel_ConvNet_One_Conv

    torch.manual_seed(0)
    model = BasicModel_ConvNet_One_Conv().eval()
    x = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    auto = InfoCAM(model, model.conv1)
    attr = auto.attribute(x, target=[0, 1, 3], settings=FIT)
    assert auto.suffix_strategy_used == "hooked"
    hooked = InfoCAM(model, model.conv1, suffix_strategy="hooked")
    torch.testing.assert_close(attr, hooked.attribute(x, target=[0, 1, 3], settings=FIT))
    assert capsys.readouterr().err == ""  # torch.fx's own traceback is not shown


def test_auto_strategy_traces_when_it_can_and_falls_back_when_not() -> None:
    class DataDependent(SmallCNN):
        def forward(self, x: Tensor) -> Tensor:
            features = self.features(x)
            if features.sum() > 0:  # control flow on a value: torch.fx cannot trace it
                features = features * 1.0
            return self.head(features)

    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8)
    plain, data_dependent = SmallCNN().eval(), DataDependent().eval()
    data_dependent.load_state_dict(plain.state_dict())
    traced = InfoCAM(plain, plain.features)
    hooked = InfoCAM(data_dependent, data_dependent.features)
    torch.testing.assert_close(
        traced.attribute(x, target=[0, 1], **FAST), hooked.attribute(x, target=[0, 1], **FAST)
    )
    assert traced.suffix_strategy_used == "traced"
    assert hooked.suffix_strategy_used == "hooked"


class ScaledByInput(SmallCNN):
    # The suffix reads the raw input again: a hook substituting B*M rows meets B rows.
    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x)) * x.mean((1, 2, 3))[:, None]


class UntraceableScaledByInput(SmallCNN):
    def forward(self, x: Tensor) -> Tensor:
        features = self.features(x)
        if features.sum() > 0:  # control flow on a value: torch.fx cannot trace it
            features = features * 1.0
        return self.head(features) * x.mean((1, 2, 3))[:, None]


@pytest.mark.parametrize(
    ("model_class", "strategy"),
    [(ScaledByInput, "traced"), (UntraceableScaledByInput, "rerun")],
    # A traced split repeats the input's mean as a boundary value; without a trace,
    # the hook cannot, and only rerunning the whole model on repeated inputs is right.
    ids=["traceable", "untraceable"],
)
def test_batch_coupled_suffix_is_traced_or_falls_back_to_rerun(
    model_class: type[SmallCNN], strategy: str
) -> None:
    torch.manual_seed(0)
    model = model_class().eval()
    x = torch.rand(2, 3, 8, 8) + 0.5
    auto = InfoCAM(model, model.features)
    assert auto.suffix_strategy_used is None
    attr = auto.attribute(x, target=[0, 1], **FAST)
    assert auto.suffix_strategy_used == strategy
    rerun = InfoCAM(model, model.features, suffix_strategy="rerun").attribute(
        x, target=[0, 1], **FAST
    )
    torch.testing.assert_close(attr, rerun)
    with pytest.raises(AttributeError):
        auto.suffix_strategy_used = "hooked"


class ScaledByArgument(SmallCNN):
    # The suffix reads a per-example argument: traced, it is a boundary value; rerun,
    # it is repeated with the inputs; a chunk of rows must take its own rows of it.
    def forward(self, x: Tensor, scale: Tensor | None = None) -> Tensor:
        scores = self.head(self.features(x))
        return scores if scale is None else scores * scale[:, None]


@pytest.mark.parametrize("internal_batch_size", [1, 5, 16, 47, 48, 1000])
@pytest.mark.parametrize(
    ("strategy", "with_argument"), [("traced", True), ("rerun", True), ("hooked", False)]
)
def test_chunked_rows_give_the_unchunked_fit(
    internal_batch_size: int, strategy: str, with_argument: bool
) -> None:
    # 3 examples x 16 rows (2 fits x 2 streams x K=4): chunks of 5 and 47 cut
    # through examples and streams, 16 is one example, 48 and 1000 are all rows.
    torch.manual_seed(0)
    model = ScaledByArgument().eval()
    x = torch.rand(3, 3, 8, 8) + 0.5
    scale = torch.tensor([1.0, 2.0, 0.5]) if with_argument else None
    cam = InfoCAM(model, model.features, suffix_strategy=strategy)
    settings = dict(target=[0, 1, 2], additional_forward_args=scale, relu_attributions=False)
    whole = cam.attribute(x, **settings, **FAST)
    whole_fit = cam.last_fit
    rows_seen = []
    handle = model.head[0].register_forward_pre_hook(
        lambda module, args: rows_seen.append(len(args[0])) if torch.is_grad_enabled() else None
    )
    try:
        chunked = cam.attribute(x, **settings, internal_batch_size=internal_batch_size, **FAST)
    finally:
        handle.remove()
    assert max(rows_seen) <= internal_batch_size and sum(rows_seen) == 48 * FIT.steps
    scale_of = float(whole.abs().max())
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-6 * scale_of)
    for got, expected in (
        (cam.last_fit, whole_fit),
        (cam.last_fit.complement, whole_fit.complement),
    ):
        torch.testing.assert_close(got.gates, expected.gates, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got.loss_trace, expected.loss_trace, rtol=1e-5, atol=1e-6)


def test_show_progress_shows_the_fit_steps(
    small_cnn: SmallCNN, images: Tensor, capsys: pytest.CaptureFixture
) -> None:
    cam = InfoCAM(small_cnn, small_cnn.features)
    cam.attribute(images, target=[0, 1, 2], **FAST)
    assert capsys.readouterr().err == ""
    cam.attribute(images, target=[0, 1, 2], show_progress=True, **FAST)
    shown = capsys.readouterr().err
    assert "InfoCAM fit" in shown and f"{FIT.steps}/{FIT.steps}" in shown


def test_fit_statistics_match_the_data_set_and_become_the_default(small_cnn: SmallCNN) -> None:
    data = [torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    cam = InfoCAM(small_cnn, small_cnn.features)
    x = data[0][:2]
    before = cam.attribute(x, target=0, **FAST)
    labelled = [[batch, torch.zeros(len(batch))] for batch in data]
    statistics = cam.fit_statistics(labelled)
    with torch.no_grad():
        activations = torch.cat([small_cnn.features(batch) for batch in data])
    std, mean = torch.std_mean(activations, dim=(0, 2, 3), correction=0)
    torch.testing.assert_close(statistics.mean, mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(statistics.std, std, rtol=1e-5, atol=1e-6)
    assert statistics.count == 12 * 8 * 8
    after = cam.attribute(x, target=0, **FAST)
    given = cam.attribute(x, target=0, settings=replace(FIT, prior=statistics))
    torch.testing.assert_close(after, given)
    assert not torch.allclose(after, before)
    zero = cam.attribute(x, target=0, settings=replace(FIT, prior="zero"))
    torch.testing.assert_close(zero, before)


def test_seed_gives_identical_maps_and_leaves_the_global_rng(
    small_cnn: SmallCNN, images: Tensor
) -> None:
    cam = InfoCAM(small_cnn, small_cnn.features)
    state = torch.random.get_rng_state()
    first = cam.attribute(images, target=0, settings=replace(FIT, seed=3))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(cam.attribute(images, target=0, settings=replace(FIT, seed=3)), first)
    assert not torch.equal(cam.attribute(images, target=0, settings=replace(FIT, seed=4)), first)


def test_works_under_captum_sensitivity_max(small_cnn: SmallCNN, images: Tensor) -> None:
    cam = InfoCAM(small_cnn, small_cnn.features)

    # sensitivity_max wants explanations shaped like its (tuple) inputs; a layer method
    # returns one tensor (Captum's LayerGradCam too), so it is wrapped in a tuple.
    def explain(inputs, **kwargs):
        return (cam.attribute(inputs, **kwargs),)

    sensitivity = sensitivity_max(explain, images, target=[0, 1, 2], n_perturb_samples=2, **FAST)
    assert (
        sensitivity.shape == (3,) and torch.isfinite(sensitivity).all() and (sensitivity > 0).all()
    )


def test_fit_does_not_collapse_on_a_trained_model(trained_cnn: SmallCNN) -> None:
    x, y = coloured_squares(16, generator=torch.Generator().manual_seed(5))
    assert (trained_cnn(x).argmax(1) == y).float().mean() > 0.9, "the toy model did not learn"
    cam = InfoCAM(trained_cnn, trained_cnn.features)
    cam.attribute(x, target=y)
    fit = cam.last_fit
    assert not fit.collapsed.any()
    assert (fit.p_discriminative > 0.5).float().mean() > 0.8, "the kept channels must still predict"
    assert (fit.p_noise < fit.p_discriminative).all(), "the noise stream must carry less evidence"


@pytest.mark.parametrize(
    ("weight", "settings", "cause"),
    [
        # Compression alone closes every gate.
        (
            [[3.0, 2.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]],
            dict(beta=10.0, gamma=0.0),
            r"every gate closed for 1: the compression outweighed the evidence .*; lower beta "
            r"\(now 10\)",
        ),
        # One step of 1 leaves every gate above 0.9.
        (
            [[3.0, 2.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]],
            dict(steps=1, lr=1.0),
            r"no gate moved for 1: the gate logits travel lr \* steps = 1; raise lr or steps",
        ),
        # A head that ignores the layer gives no evidence: Adam moves every gate by the
        # same step, and after 5 steps they all sit at sigmoid(0) = 0.5, neither closed
        # nor unmoved (random torchvision MobileNetV3s end like this).
        (
            [[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]],
            dict(steps=5, lr=1.0),
            r"every gate ended equal for 1: .* random or untrained classifier, classes whose "
            r"scores move together \(likelihood='sigmoid' .*\), or a token or channels-last",
        ),
    ],
    ids=["every-gate-closed", "no-gate-moved", "every-gate-equal"],
)
def test_collapse_is_reported_with_its_likely_cause(
    weight: list, settings: dict, cause: str
) -> None:
    model = LinearHead(torch.tensor(weight)).eval()
    cam = InfoCAM(model, model.layer)
    x = torch.ones(1, 4, 6, 6) * torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 4, 1, 1)
    with pytest.warns(CollapsedFitWarning, match="collapsed for 1 of 1 example") as caught:
        cam.attribute(x, target=0, settings=DSIBSettings(**settings))
    assert cam.last_fit.collapsed.all()
    (message,) = [str(w.message) for w in caught if w.category is CollapsedFitWarning]
    assert re.search(cause, message), message


def test_a_zero_map_of_a_fit_that_did_not_collapse_is_warned_about() -> None:
    # Channel 0 is evidence for class 0, channels 1-3 against it; equal activations make
    # the weighted sum negative everywhere, and the ReLU leaves nothing.
    model = LinearHead(torch.tensor([[1.0, -3.0, -3.0, -3.0], [0.0, 0.0, 0.0, 0.0]])).eval()
    cam = InfoCAM(model, model.layer)
    x = torch.ones(2, 4, 6, 6)
    with pytest.warns(ZeroMapWarning, match=r"zero everywhere for 2 of 2 example\(s\)"):
        attr = cam.attribute(x, target=0)
    assert not attr.any() and cam.last_fit.zero_map.all() and not cam.last_fit.collapsed.any()
    signed = cam.attribute(x, target=0, relu_attributions=False)
    assert (signed < 0).all()
    # What the warning says of the drawing functions holds.
    image = torch.rand(6, 6, 3).numpy()
    with pytest.raises(AssertionError, match="Cannot normalize by scale factor = 0"):
        viz.visualize_image_attr(
            attr[0].permute(1, 2, 0).numpy(), image, "blended_heat_map", use_pyplot=False
        )
    assert overlay(attr[0], image).shape == (6, 6, 3)


def test_settings_fill_their_defaults_from_the_contrast_and_the_steps() -> None:
    assert DSIBSettings().resolved() == DSIBSettings(
        n_samples=1, steps=7, lr=10 / 7, evidence="log_odds"
    )
    assert DSIBSettings(contrast="none").resolved() == DSIBSettings(
        contrast="none", n_samples=4, steps=10, lr=1.0, evidence="log_likelihood"
    )
    # Filled in when the fit runs, not when the object is made: a changed copy follows.
    longer = replace(DSIBSettings(), steps=20)
    assert longer.lr is None and longer.resolved().lr == 0.5
    assert replace(DSIBSettings(), contrast="none").resolved().n_samples == 4
    with pytest.raises(FrozenInstanceError):
        DSIBSettings().beta = 2.0  # type: ignore[misc]


@pytest.mark.parametrize(
    "change",
    [
        dict(contrast="none"),
        dict(n_samples=2),
        dict(steps=3),
        dict(lr=0.3),
        dict(beta=5.0),
        dict(gamma=0.0),
        dict(alpha_init=2.0),
        dict(evidence="log_likelihood"),
        dict(prior="batch"),
        dict(readout="bits"),
        dict(likelihood="sigmoid"),
        dict(seed=1),
    ],
)
def test_every_setting_reaches_the_fit(change: dict, trained_cnn: SmallCNN) -> None:
    x, y = coloured_squares(4, generator=torch.Generator().manual_seed(2))
    cam = InfoCAM(trained_cnn, trained_cnn.features)
    default = cam.attribute(x, target=y, relu_attributions=False)
    same = cam.attribute(x, target=y, relu_attributions=False, settings=DSIBSettings())
    assert torch.equal(same, default)
    changed = cam.attribute(x, target=y, relu_attributions=False, settings=DSIBSettings(**change))
    assert not torch.allclose(changed, default)


class VectorHead(nn.Module):
    """``layer`` (identity) on ``(N, 3)`` vectors, then a linear head without bias."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Identity()
        self.fc = nn.Linear(3, 2, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[2.0, -2.0, 1.0], [0.0, 0.0, 0.0]]))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.layer(x))


def test_a_vector_layer_is_explained_as_one_by_one_maps_with_layer_grad_cams_shapes() -> None:
    model = VectorHead().eval()
    x = torch.tensor([[1.0, 1.0, 1.0], [2.0, 0.5, 1.0]])
    cam = InfoCAM(model, model.layer)
    per_channel = cam.attribute(x, target=0, relu_attributions=False, attr_dim_summation=False)
    assert (
        per_channel.shape
        == LayerGradCam(model, model.layer).attribute(x, target=0, attr_dim_summation=False).shape
        == (2, 3)
    )
    weights = cam.last_fit.gates - cam.last_fit.complement.gates
    torch.testing.assert_close(per_channel, weights * x)  # w_c A_c on 1 x 1 maps
    # Channels 0 and 2 are evidence for class 0, channel 1 against it.
    assert (per_channel[:, [0, 2]] > 0).all() and (per_channel[:, 1] < 0).all()
    summed = cam.attribute(x, target=0)
    assert summed.shape == (2, 1)
    torch.testing.assert_close(summed, per_channel.sum(1, keepdim=True).relu())


def test_interpolate_upsamples_nearest_and_bilinear() -> None:
    attr = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    nearest = InfoCAM.interpolate(attr, (4, 4), "nearest")
    assert torch.equal(nearest, attr.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3))
    # Half-pixel centres (align_corners=False): 2 -> 4 samples at 0, 1/4, 3/4, 1 of the way.
    weights = torch.tensor([0.0, 0.25, 0.75, 1.0])
    expected = (2 * weights[:, None] + weights[None, :])[None, None]
    torch.testing.assert_close(InfoCAM.interpolate(attr, (4, 4), "bilinear"), expected)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fit_matches_cpu_and_never_synchronises_per_step(trained_cnn: SmallCNN) -> None:
    import warnings

    x, y = coloured_squares(4, generator=torch.Generator().manual_seed(3))
    model = trained_copy(trained_cnn, device="cuda")
    cam = InfoCAM(model, model.features)
    attr = cam.attribute(x.cuda(), target=y.cuda())
    assert attr.device.type == "cuda" and torch.isfinite(attr).all()

    def synchronisations(steps: int) -> int:
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as record:
                warnings.simplefilter("always")
                cam.attribute(x.cuda(), target=y.cuda(), settings=DSIBSettings(steps=steps))
        finally:
            torch.cuda.set_sync_debug_mode("default")
        return sum("synchroniz" in str(w.message) for w in record)

    # Argument checks and the final report synchronise a fixed number of times; the steps do not.
    assert synchronisations(2) == synchronisations(12)


def test_a_profile_names_each_phase_of_the_call(small_cnn: SmallCNN, images: Tensor) -> None:
    # timing/phases.py splits a call's time by these labels (docs: README's Speed section).
    cam = InfoCAM(small_cnn, small_cnn.features)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        cam.attribute(images, target=[0, 1, 2], **FAST)
    counts = {event.key: event.count for event in profile.key_averages()}
    per_step = ("streams", "suffix forward", "suffix backward", "gate gradient", "optimizer")
    for phase in per_step:
        assert counts.get(f"InfoCAM: {phase}") == FIT.steps, phase
    assert counts.get("InfoCAM: prefix") == 1 and counts.get("InfoCAM: read-out") == 1


def test_autocast_dtype_rounds_only_the_fit() -> None:
    # The shipped ResNet at its middle layer, two-object images: the network after the layer
    # runs in bfloat16 during the fit; the layer, the gates and the map stay in float32.
    model = load_model("resnet")
    layer = model.get_submodule(LAYERS["resnet"]["middle"])
    batch = ShapesItems("pair", 8, seed=0).load(range(16))
    cam = InfoCAM(model, layer)
    full = cam.attribute(batch.image, target=batch.target)
    full_gates = cam.last_fit.gates
    dtypes = {"layer": [], "classifier": []}
    hooks = [
        layer.register_forward_hook(lambda m, args, out: dtypes["layer"].append(out.dtype)),
        model.fc.register_forward_hook(
            lambda m, args, out: (
                dtypes["classifier"].append(out.dtype) if torch.is_grad_enabled() else None
            )
        ),
    ]
    try:
        rounded = cam.attribute(
            batch.image,
            target=batch.target,
            settings=DSIBSettings(autocast_dtype=torch.bfloat16),
        )
    finally:
        for hook in hooks:
            hook.remove()
    assert set(dtypes["layer"]) == {torch.float32}
    assert set(dtypes["classifier"]) == {torch.bfloat16}
    assert rounded.dtype == cam.last_fit.gates.dtype == torch.float32
    assert not torch.equal(cam.last_fit.gates, full_gates)
    correlation = rank_correlation(
        saliency_maps(full, (64, 64), len(full)).flatten(1),
        saliency_maps(rounded, (64, 64), len(full)).flatten(1),
    )
    assert float(correlation.nanmean()) > AUTOCAST_MAP_CORRELATION


def test_a_layer_without_spatial_extent_on_images_is_warned_about() -> None:
    model = load_model("resnet")
    x = ShapesItems("single", 2).load(range(2)).image
    with pytest.warns(
        NoSpatialMapWarning, match=r"no spatial extent, while the inputs are \(64, 64\) images"
    ) as caught:
        attr = InfoCAM(model, model.get_submodule(_pooling(model))).attribute(x, target=[0, 1])
    assert attr.shape == (2, 1, 1, 1)
    assert caught[0].filename == __file__
    # A vector layer of a model whose inputs are not images: nothing to warn about.
    model = LinearHead(torch.tensor([[1.0, -1.0], [0.5, 0.5]])).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error", NoSpatialMapWarning)
        InfoCAM(model, model.layer).attribute(torch.ones(3, 2, 1, 1), target=0)


def _pooling(model: nn.Module) -> str:
    """The name of the global pooling module of a shipped network."""
    (name,) = [n for n, m in model.named_modules() if isinstance(m, nn.AdaptiveAvgPool2d)]
    return name
