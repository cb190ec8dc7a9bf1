"""Bad input raises before any work; the caller's model is left exactly as it was."""

from __future__ import annotations

import inspect
import warnings
from collections import OrderedDict
from dataclasses import replace

import numpy as np
import pytest
import torch
import torchvision
from torch import Tensor, nn

import captum_infocam.infocam as infocam_module
from captum_infocam import ChannelsFirst, ChannelsLast, DSIBSettings, InfoCAM, TrainModeWarning
from tests.conftest import ModelState, SmallCNN

FAST = dict(settings=DSIBSettings(n_samples=2, steps=2, lr=1.0))
pytestmark = pytest.mark.filterwarnings("ignore::captum_infocam.CollapsedFitWarning")


@pytest.fixture
def no_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("the DSIB fit started before the bad input was reported")

    monkeypatch.setattr(infocam_module, "fit_dsib", fail)


class ForwardCounter:
    def __init__(self, model: nn.Module) -> None:
        self.calls = 0
        self._handle = model.register_forward_pre_hook(self._count)

    def _count(self, module: nn.Module, args: tuple) -> None:
        self.calls += 1

    def remove(self) -> None:
        self._handle.remove()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (dict(target=[0, 1]), ValueError, "target list must have one entry per example"),
        (dict(target=torch.tensor([0, 1])), ValueError, "target tensor must hold 1 or 3"),
        (dict(target=1.5), TypeError, "target must be None, an int"),
        (dict(target=torch.tensor([0.0, 1.0, 2.0])), TypeError, "target must hold integers"),
        (dict(target=[0, (1,), 2]), ValueError, "target list must hold only integers"),
        (dict(target=0, relu_attributions=1), TypeError, "relu_attributions must be a bool"),
        (dict(target=0, internal_batch_size=0), ValueError, "internal_batch_size must be >= 1"),
        (dict(target=0, internal_batch_size=8.0), TypeError, "internal_batch_size must be an int"),
        (dict(target=0, show_progress=None), TypeError, "show_progress must be a bool"),
        (dict(target=0, beta=2.0), TypeError, r"settings=DSIBSettings\(beta=\.\.\.\)"),
        (dict(target=0, settings={"beta": 2.0}), TypeError, "settings must be a DSIBSettings"),
    ],
)
def test_bad_arguments_raise_before_the_model_runs(
    kwargs: dict, error: type, message: str, small_cnn: SmallCNN, images: Tensor, no_fit: None
) -> None:
    counter = ForwardCounter(small_cnn)
    try:
        with pytest.raises(error, match=message):
            InfoCAM(small_cnn, small_cnn.features).attribute(images, **kwargs)
        assert counter.calls == 0
    finally:
        counter.remove()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (dict(n_samples=0), ValueError, "n_samples must be >= 1"),
        (dict(steps=0), ValueError, "steps must be >= 1"),
        (dict(steps=2.0), TypeError, "steps must be an int"),
        (dict(lr=0.0), ValueError, "lr must be finite and > 0"),
        (dict(beta=-1.0), ValueError, "beta must be finite and >= 0"),
        (dict(gamma=float("nan")), ValueError, "gamma must be finite"),
        (dict(readout="max"), ValueError, "readout must be one of"),
        (dict(prior="sample"), ValueError, "prior must be one of"),
        (dict(likelihood="probit"), ValueError, "likelihood must be one of"),
        (dict(likelihood=3), TypeError, "likelihood must be a name or a callable"),
        (dict(seed=-1), ValueError, "seed must be >= 0"),
        (dict(contrast="competitor"), ValueError, "contrast must be one of"),
        (dict(evidence="logit"), ValueError, "evidence must be one of"),
        (dict(contrast=None), ValueError, "contrast must be one of"),
        (dict(autocast_dtype=torch.float32), TypeError, "autocast_dtype must be None"),
        (dict(autocast_dtype="bf16"), TypeError, "autocast_dtype must be None"),
    ],
)
def test_bad_settings_raise_when_the_settings_are_made(
    kwargs: dict, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        DSIBSettings(**kwargs)
    with pytest.raises(error, match=message):  # checked again on a changed copy
        replace(DSIBSettings(), **kwargs)


@pytest.mark.parametrize(
    ("targets", "kwargs", "error", "message"),
    [
        (0, {}, TypeError, "targets must be a list with one list of targets per example"),
        (torch.tensor([0, 1, 2]), {}, TypeError, "targets must be a list"),
        ([[0], [1]], {}, ValueError, "3 examples but 2 entries"),
        ([[0], 1, [2]], {}, TypeError, r"targets\[1\] must be a list"),
        ([[0], [], [2]], {}, ValueError, r"targets\[1\] is empty"),
        ([[0], [1.5], [2]], {}, ValueError, "targets: target list must hold only integers"),
        ([[0], torch.tensor([[1]]), [2]], {}, TypeError, r"targets\[1\] must be a 1-D"),
        ([[0], [1], [2]], dict(target=0), TypeError, "takes the targets as targets"),
        ([[0], [1], [2]], dict(steps=0), TypeError, "settings=DSIBSettings"),
    ],
)
def test_attribute_each_bad_targets_raise_before_the_model_runs(
    targets: object,
    kwargs: dict,
    error: type,
    message: str,
    small_cnn: SmallCNN,
    images: Tensor,
    no_fit: None,
) -> None:
    counter = ForwardCounter(small_cnn)
    try:
        with pytest.raises(error, match=message):
            InfoCAM(small_cnn, small_cnn.features).attribute_each(images, targets, **kwargs)
        assert counter.calls == 0
    finally:
        counter.remove()


@pytest.mark.parametrize(
    ("inputs", "error", "message"),
    [
        (torch.full((2, 3, 8, 8), float("nan")), ValueError, "inputs contains NaN"),
        ((torch.zeros(2, 3, 8, 8), torch.zeros(3, 3, 8, 8)), ValueError, "share their batch size"),
        (torch.zeros(0, 3, 8, 8), ValueError, "non-empty batch dimension"),
        ([torch.zeros(2, 3, 8, 8)], TypeError, "inputs must be a tensor"),
        (np.zeros((2, 8, 8, 3), np.float32), TypeError, r"numpy array; .*torch\.from_numpy"),
        (torch.rand(2, 8, 8, 3), ValueError, r"channels-last .* x\.permute\(0, 3, 1, 2\)"),
    ],
)
def test_bad_inputs_raise_before_the_model_runs(
    inputs, error: type, message: str, small_cnn: SmallCNN, no_fit: None
) -> None:
    with pytest.raises(error, match=message):
        InfoCAM(small_cnn, small_cnn.features).attribute(inputs, target=0)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (3, "target index out of range"),
        (-4, r"target index out of range .* must lie in \[-size, size\)"),
        ([0, 1, 7], "target index out of range"),
        ((0, 1), "give 1 index"),
        (None, r"target=None works for outputs with one score .* target=model\(x\)\.argmax\(1\)"),
    ],
)
def test_targets_the_output_cannot_hold_raise_before_the_fit(
    target, message: str, small_cnn: SmallCNN, images: Tensor, no_fit: None
) -> None:
    with pytest.raises(ValueError, match=message):
        InfoCAM(small_cnn, small_cnn.features).attribute(images, target=target)


def test_layer_outside_the_model_is_rejected_at_construction(small_cnn: SmallCNN) -> None:
    with pytest.raises(ValueError, match="layer must be a submodule of forward_func"):
        InfoCAM(small_cnn, nn.Conv2d(3, 3, 1))
    with pytest.raises(TypeError, match=r"layer must be a torch\.nn\.Module"):
        InfoCAM(small_cnn, "features")
    with pytest.raises(ValueError, match="suffix_strategy must be one of"):
        InfoCAM(small_cnn, small_cnn.features, suffix_strategy="fast")


def test_layer_never_called_by_a_forward_function_is_reported(
    small_cnn: SmallCNN, images: Tensor
) -> None:
    unused = nn.Conv2d(3, 3, 1)
    with pytest.raises(ValueError, match="layer was not called during forward_func"):
        InfoCAM(lambda x: small_cnn(x), unused).attribute(images, target=0)


def test_non_4d_layer_needs_a_reshape_transform(
    small_cnn: SmallCNN, images: Tensor, no_fit: None
) -> None:
    # (N, C, H * W) positions in a row: neither maps nor a vector of channels.
    model = nn.Sequential(
        small_cnn.features, nn.Flatten(2), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(8, 3)
    ).eval()
    with pytest.raises(ValueError, match="pass reshape_transform"):
        InfoCAM(model, model[1]).attribute(images, target=0)


@pytest.mark.parametrize("squeeze", [True, False], ids=["(N,)", "(N, 1)"])
def test_one_score_per_example_takes_the_sigmoid_by_default(
    squeeze: bool, small_cnn: SmallCNN, images: Tensor
) -> None:
    def score(x: Tensor) -> Tensor:
        logit = small_cnn(x)[:, :1]
        return logit[:, 0] if squeeze else logit

    cam = InfoCAM(score, small_cnn.features)
    settings = FAST["settings"]
    auto = cam.attribute(images, settings=settings)  # Captum's usual call: no target
    sigmoid = cam.attribute(images, settings=replace(settings, likelihood="sigmoid"))
    torch.testing.assert_close(auto, sigmoid, rtol=0, atol=0)
    assert auto.shape == (3, 1, 16, 16)
    with pytest.raises(ValueError, match="use 'sigmoid'"):
        cam.attribute(images, settings=replace(settings, likelihood="softmax"))


def test_auto_likelihood_keeps_the_softmax_for_classes(small_cnn: SmallCNN, images: Tensor) -> None:
    cam = InfoCAM(small_cnn, small_cnn.features)
    softmax = replace(FAST["settings"], likelihood="softmax")
    torch.testing.assert_close(
        cam.attribute(images, target=1, **FAST),
        cam.attribute(images, target=1, settings=softmax),
        rtol=0,
        atol=0,
    )


def _train_mode_resnet() -> nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=4)
    model.fc.weight.grad = torch.ones_like(model.fc.weight)  # a caller's pending gradient
    model.layer1.requires_grad_(False)
    model.train()
    model.layer2.eval()
    return model


def test_a_call_leaves_the_model_bitwise_unchanged() -> None:
    model = _train_mode_resnet()
    state = ModelState.of(model)
    with pytest.warns(TrainModeWarning):
        attr = InfoCAM(model, model.layer3).attribute(
            torch.randn(2, 3, 32, 32), target=[0, 1], **FAST
        )
    assert torch.isfinite(attr).all()
    state.assert_unchanged(model)


def _raise_on_call(module: nn.Module, error: BaseException, after: int):
    """Makes ``module`` raise ``error`` the ``after``-th time it runs (a leaf, so a traced
    suffix calls it too); returns the hook handle."""
    calls = []

    def hook(module: nn.Module, args: tuple) -> None:
        calls.append(1)
        if len(calls) >= after:
            raise error

    return module.register_forward_pre_hook(hook)


@pytest.mark.filterwarnings("ignore::captum_infocam.TrainModeWarning")  # on purpose
@pytest.mark.parametrize(
    "error", [RuntimeError("boom"), KeyboardInterrupt()], ids=["error", "interrupt"]
)
@pytest.mark.parametrize("after", [1, 3, 5], ids=["first-pass", "probing", "during-fit"])
@pytest.mark.parametrize("strategy", ["auto", "hooked", "rerun"])
def test_the_model_is_restored_when_the_forward_raises(
    error: BaseException, after: int, strategy: str
) -> None:
    model = _train_mode_resnet()
    handle = _raise_on_call(model.fc, error, after)
    state = ModelState.of(model)
    cam = InfoCAM(model, model.layer3, suffix_strategy=strategy)
    try:
        with pytest.raises(type(error)):
            cam.attribute(
                torch.randn(2, 3, 32, 32),
                target=[0, 1],
                settings=DSIBSettings(n_samples=2, steps=5),
            )
        state.assert_unchanged(model)
    finally:
        handle.remove()


def _resnet(**to: object) -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=4).to(**to).eval()  # type: ignore[arg-type]


@pytest.mark.parametrize("make", [_resnet, lambda: SmallCNN().eval()], ids=["batchnorm", "plain"])
def test_one_image_without_its_batch_dimension_is_named(make, no_fit: None) -> None:
    # With batch norm the forward raises; without, convolutions take the image as unbatched
    # and the output has no row per example. Both name the fix.
    model = make()
    with pytest.raises(ValueError, match=r"add a batch dimension: x\.unsqueeze\(0\)"):
        InfoCAM(model, model.layer4 if hasattr(model, "layer4") else model.features).attribute(
            torch.rand(3, 32, 32), target=0
        )


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ((torch.rand(2, 3, 16, 16) * 255).to(torch.uint8), r"x\.float\(\) / 255"),
        (torch.rand(2, 3, 16, 16) > 0.5, r"x\.float\(\) / 255"),
        (torch.rand(2, 3, 16, 16, dtype=torch.float64), r"convert the inputs with x\.to"),
        (torch.rand(2, 3, 16, 16).half(), r"convert the inputs with x\.to"),
    ],
    ids=["uint8", "bool", "float64", "float16"],
)
def test_inputs_of_another_dtype_than_the_model_are_named_before_it_runs(
    inputs: Tensor, message: str, small_cnn: SmallCNN, no_fit: None
) -> None:
    counter = ForwardCounter(small_cnn)
    try:
        with pytest.raises(TypeError, match=message):
            InfoCAM(small_cnn, small_cnn.features).attribute(inputs, target=0)
        assert counter.calls == 0
    finally:
        counter.remove()


def test_inputs_of_the_models_dtype_or_under_autocast_are_accepted(small_cnn: SmallCNN) -> None:
    x = torch.rand(2, 3, 16, 16)
    double = SmallCNN().double().eval()
    assert InfoCAM(double, double.features).attribute(x.double(), target=0, **FAST).dtype == (
        torch.float64
    )
    with torch.autocast("cpu", dtype=torch.bfloat16):
        attr = InfoCAM(small_cnn, small_cnn.features).attribute(x.bfloat16(), target=0, **FAST)
    assert attr.shape == (2, 1, 16, 16)


class _LSTMClassifier(nn.Module):
    """Rows of an image as a sequence; its LSTM returns ``(output, (h, c))``."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(3 * 8, 4, batch_first=True)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        sequence = self.lstm(x.permute(0, 2, 1, 3).flatten(2))  # fx traces indexing, not unpacking
        return self.fc(sequence[0][:, -1])


@pytest.mark.parametrize("strategy", ["auto", "traced", "hooked", "rerun"])
def test_a_layer_returning_a_tuple_is_named_and_left_without_hooks(
    strategy: str, no_fit: None
) -> None:
    model = _LSTMClassifier().eval()
    state = ModelState.of(model)
    cam = InfoCAM(model, model.lstm, suffix_strategy=strategy)
    with pytest.raises(ValueError, match=r"a tuple of 2 values.*pick a layer that returns one"):
        cam.attribute(torch.rand(2, 3, 8, 8), target=0)
    state.assert_unchanged(model)


def test_an_output_without_one_row_per_example_is_named(
    small_cnn: SmallCNN, images: Tensor, no_fit: None
) -> None:
    pooled = InfoCAM(lambda x: small_cnn(x).mean(0, keepdim=True), small_cnn.features)
    with pytest.raises(ValueError, match=r"one row of scores per example: 3 example\(s\)"):
        pooled.attribute(images, target=0)


def test_swapped_map_and_mask_are_refused() -> None:
    from captum_infocam.metrics import energy_pointing_game, pointing_game

    attr = torch.rand(2, 1, 4, 4) + 0.1
    mask = torch.zeros(2, 16, 16)
    mask[:, 4:8, 4:8] = 1
    for metric in (energy_pointing_game, pointing_game):
        with pytest.raises(ValueError, match=r"floating-point mask must hold only 0 and 1"):
            metric(mask, attr)
        assert metric(attr, mask).shape == (2,)
        assert torch.equal(metric(attr, mask), metric(attr, mask.bool()))


class ReadsTraining(nn.Module):
    """A user's module whose forward depends on ``self.training`` (no dropout inside)."""

    def forward(self, x: Tensor) -> Tensor:
        return x * 0.5 if self.training else x


@pytest.mark.parametrize(
    "module",
    [nn.Dropout(0.2), nn.BatchNorm2d(8), ReadsTraining()],
    ids=["dropout", "batch-norm", "own-module"],
)
def test_a_module_whose_output_depends_on_training_mode_is_warned_about_at_the_callers_line(
    module: nn.Module, small_cnn: SmallCNN, images: Tensor
) -> None:
    model = nn.Sequential(
        OrderedDict(features=small_cnn.features, mode=module, head=small_cnn.head)
    ).eval()
    cam = InfoCAM(model, model.features)
    module.train()  # one layer left in training mode is enough
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = inspect.currentframe().f_lineno + 1
        cam.attribute(images, target=0, **FAST)
    (warning,) = [w for w in caught if w.category is TrainModeWarning]
    assert "call model.eval() first" in str(warning.message) and "'mode'" in str(warning.message)
    assert (warning.filename, warning.lineno) == (__file__, line)


def test_training_mode_that_changes_nothing_is_not_warned_about(
    small_cnn: SmallCNN, images: Tensor
) -> None:
    # Convolutions, ReLUs, pooling and linear layers run the same in both modes (Captum's
    # LayerGradCam warns on none); a wrapper's own flag does not count either.
    small_cnn.train()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        InfoCAM(small_cnn, small_cnn.features).attribute(images, target=0, **FAST)
        InfoCAM(nn.Sequential(small_cnn), small_cnn.features).attribute(images, target=0, **FAST)
    assert not [w for w in caught if w.category is TrainModeWarning]


def test_collapsed_fit_warning_points_at_the_callers_line(
    small_cnn: SmallCNN, images: Tensor
) -> None:
    from captum.attr import NoiseTunnel

    from captum_infocam import CollapsedFitWarning

    cam = InfoCAM(small_cnn, small_cnn.features)
    one_step = DSIBSettings(steps=1, lr=1.0)  # a step of 1 leaves the gates > 0.9
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        direct = inspect.currentframe().f_lineno + 1
        cam.attribute(images, target=0, settings=one_step)
        tunnel = inspect.currentframe().f_lineno + 1
        NoiseTunnel(cam).attribute(images, nt_samples=2, target=0, settings=one_step)
    locations = [(w.filename, w.lineno) for w in caught if w.category is CollapsedFitWarning]
    assert locations == [(__file__, direct), (__file__, tunnel)]


def test_a_channels_last_layer_without_its_layout_is_refused_naming_it() -> None:
    torch.manual_seed(0)
    swin = torchvision.models.swin_t(num_classes=4).eval()
    x = torch.randn(1, 3, 64, 64)
    with pytest.raises(
        ValueError,
        match=r"\(1, 2, 2, 768\), which looks channels-last, .* "
        r"reshape_transform=ChannelsLast\(\)",
    ):
        InfoCAM(swin, swin.features[-1]).attribute(x, target=0, **FAST)
    attr = InfoCAM(swin, swin.features[-1], reshape_transform=ChannelsLast()).attribute(
        x, target=0, **FAST
    )
    assert attr.shape == (1, 1, 2, 2)


def test_channels_first_maps_that_look_channels_last_pass_when_said_so() -> None:
    # 16 channels of 16 x 32: dimensions 1 and 2 are equal, the last differs.
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 2)
    ).eval()
    x = torch.randn(2, 3, 16, 32)
    with pytest.raises(ValueError, match="looks channels-last"):
        InfoCAM(model, model[0]).attribute(x, target=0, **FAST)
    attr = InfoCAM(model, model[0], reshape_transform=ChannelsFirst()).attribute(
        x, target=0, **FAST
    )
    assert attr.shape == (2, 1, 16, 32)
