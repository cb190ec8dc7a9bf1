"""Captum's own test configurations, with InfoCAM wherever they list ``LayerGradCam``.

The entries come from the installed Captum (``captum.testing.attr.helpers.test_config``);
the checks are those Captum's ``tests/attr/test_targets.py``, ``test_hook_removal.py`` and
``layer/test_grad_cam.py`` apply to ``LayerGradCam``: ``LayerGradCam``'s shapes, a batch
equal to its examples one by one, ``internal_batch_size`` and ``NoiseTunnel`` giving the
same, and the model left as it was, hooks included, even when its forward raises.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from captum.attr import LayerGradCam, NoiseTunnel
from captum.testing.attr.helpers.gen_test_utils import get_target_layer, parse_test_config
from captum.testing.attr.helpers.test_config import config
from captum.testing.helpers.basic_models import BasicModel_ConvNet_One_Conv
from torch import Tensor, nn

from captum_infocam import DSIBSettings, InfoCAM
from tests.conftest import ModelState

#: Captum's tolerance for batched against per-example attributions.
DELTA = 1e-5
FIT = DSIBSettings(n_samples=2, steps=4, lr=1.0)
#: The entries whose layer returns a tuple of tensors (LayerGradCam maps each).
TUPLE_LAYERS = {"basic_layer_multi_output"}
ENTRIES = [entry for entry in config if LayerGradCam in entry["algorithms"]]
pytestmark = pytest.mark.filterwarnings("ignore::captum_infocam.CollapsedFitWarning")


def _setup(entry: dict) -> tuple[nn.Module, nn.Module, dict[str, Any]]:
    _, model, args, layer_name, _, _ = parse_test_config(entry)
    model = copy.deepcopy(model).eval()  # the entries' models are shared by Captum's tests
    return model, get_target_layer(model, layer_name), dict(args)


def _example(args: dict[str, Any], index: int, count: int) -> dict[str, Any]:
    """Example ``index`` of a batch of ``count``: batched tensors and per-example targets
    sliced, everything else as it is (Captum's per-example check)."""

    def one(value: Any) -> Any:
        if isinstance(value, Tensor) and value.dim() > 0 and len(value) == count:
            return value[index : index + 1]
        if isinstance(value, tuple):
            return tuple(one(v) for v in value)
        return value

    example = {key: one(value) for key, value in args.items() if key != "target"}
    target = args.get("target")
    if isinstance(target, list) or (isinstance(target, Tensor) and target.dim() > 0):
        target = target[index]
    return example | {"target": target}


@pytest.mark.parametrize(
    "entry", [e for e in ENTRIES if e["name"] not in TUPLE_LAYERS], ids=lambda e: e["name"]
)
def test_captum_entry_runs_as_layer_grad_cam_and_batches_exactly(entry: dict) -> None:
    model, layer, args = _setup(entry)
    state = ModelState.of(model)
    expected = LayerGradCam(model, layer).attribute(**args)
    cam = InfoCAM(model, layer)
    attr = cam.attribute(**args, settings=FIT)
    assert attr.shape == expected.shape and torch.isfinite(attr).all() and (attr >= 0).all()
    unsummed = cam.attribute(**args, attr_dim_summation=False, settings=FIT)
    assert (
        unsummed.shape
        == LayerGradCam(model, layer).attribute(**args, attr_dim_summation=False).shape
    )
    count = len(args["inputs"][0] if isinstance(args["inputs"], tuple) else args["inputs"])
    one_by_one = torch.cat(
        [cam.attribute(**_example(args, i, count), settings=FIT) for i in range(count)]
    )
    torch.testing.assert_close(attr, one_by_one, rtol=0, atol=DELTA)
    chunked = cam.attribute(**args, internal_batch_size=3, settings=FIT)
    torch.testing.assert_close(chunked, attr, rtol=0, atol=DELTA)
    state.assert_unchanged(model)


@pytest.mark.parametrize(
    "entry", [e for e in ENTRIES if e["name"] not in TUPLE_LAYERS], ids=lambda e: e["name"]
)
def test_captum_entry_under_noise_tunnel(entry: dict) -> None:
    model, layer, args = _setup(entry)
    inputs = args.pop("inputs")
    expected = LayerGradCam(model, layer).attribute(inputs, **args)
    for nt_type in ("smoothgrad", "smoothgrad_sq", "vargrad"):
        tunnel = NoiseTunnel(InfoCAM(model, layer))
        attr = tunnel.attribute(
            inputs, nt_type=nt_type, nt_samples=2, stdevs=0.1, settings=FIT, **args
        )
        assert attr.shape == expected.shape and torch.isfinite(attr).all()


@pytest.mark.parametrize(
    "entry", [e for e in ENTRIES if e["name"] not in TUPLE_LAYERS], ids=lambda e: e["name"]
)
@pytest.mark.parametrize("after", [1, 2, 6], ids=["first-pass", "probing", "during-fit"])
def test_captum_entry_leaves_no_hook_when_the_forward_raises(entry: dict, after: int) -> None:
    # As Captum's test_hook_removal: a module raises on its n-th call. During the fit only
    # the network after the layer runs: there, its last module (the output layer in each of
    # these models) raises.
    model, layer, args = _setup(entry)
    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    module = leaves[-1] if after > 2 else layer
    calls = []

    def fail(module: nn.Module, inputs: tuple) -> None:
        calls.append(1)
        if len(calls) >= after:
            raise AssertionError("raised on purpose")

    handle = module.register_forward_pre_hook(fail)
    state = ModelState.of(model)
    try:
        with pytest.raises(AssertionError, match="raised on purpose"):
            InfoCAM(model, layer).attribute(**args, settings=FIT)
        state.assert_unchanged(model)
    finally:
        handle.remove()


@pytest.mark.parametrize("name", sorted(TUPLE_LAYERS))
def test_a_tuple_layer_is_refused_with_the_fix(name: str) -> None:
    (entry,) = [e for e in ENTRIES if e["name"] == name]
    model, layer, args = _setup(entry)
    state = ModelState.of(model)
    with pytest.raises(ValueError, match="pick a layer that returns one tensor, or wrap this one"):
        InfoCAM(model, layer).attribute(**args, settings=FIT)
    state.assert_unchanged(model)


def test_captum_grad_cam_cases_one_conv() -> None:
    # Captum's layer/test_grad_cam.py: its one-convolution model, whose forward branches on
    # an optional second input, at the layer's output and input, with and without the
    # channel sum and the ReLU, and under torch.no_grad().
    model = BasicModel_ConvNet_One_Conv().eval()
    x = torch.arange(16.0).view(1, 1, 4, 4).repeat(2, 1, 1, 1) + torch.randn(2, 1, 4, 4)
    cam = InfoCAM(model, model.conv1)
    for kwargs in (
        {},
        {"attribute_to_layer_input": True},
        {"attr_dim_summation": False},
        {"relu_attributions": False},
    ):
        expected = LayerGradCam(model, model.conv1).attribute(x, target=0, **kwargs)
        attr = cam.attribute(x, target=0, settings=FIT, **kwargs)
        assert attr.shape == expected.shape and torch.isfinite(attr).all()
    with torch.no_grad():
        frozen = cam.attribute(x, target=0, settings=FIT)
    torch.testing.assert_close(frozen, cam.attribute(x, target=0, settings=FIT))
    unclipped = cam.attribute(x, target=0, relu_attributions=False, settings=FIT)
    torch.testing.assert_close(cam.attribute(x, target=0, settings=FIT), unclipped.relu())


def test_the_map_depends_on_the_class_where_captums_classes_differ() -> None:
    # BasicModel_ConvNet's classes come from different weights of its last layer: two
    # targets give two different, non-zero maps (a collapsed fit would give zeros).
    (entry,) = [e for e in ENTRIES if e["name"] == "conv_layer_single_target"]
    model, layer, args = _setup(entry)
    cam = InfoCAM(model, layer)
    maps = [cam.attribute(args["inputs"], target=t, settings=FIT) for t in (0, 1)]
    assert all(bool((m > 0).any()) for m in maps)
    assert not torch.allclose(maps[0], maps[1])


class UnusedLayer(nn.Module):
    """A layer that runs but whose value the output does not use."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.unused = nn.Conv2d(1, 2, 3)
        self.fc = nn.Linear(2, 2)

    def forward(self, x: Tensor) -> Tensor:
        self.unused(x)
        return self.fc(self.conv(x).mean((2, 3)))


def test_grad_kwargs_materialise_the_gradients_of_an_unused_layer_as_captum_does() -> None:
    torch.manual_seed(0)
    model = UnusedLayer().eval()
    x = torch.randn(2, 1, 6, 6)
    cam, grad_cam = InfoCAM(model, model.unused), LayerGradCam(model, model.unused)
    for method in (cam, grad_cam):
        with pytest.raises(RuntimeError, match="not have been used in the graph"):
            method.attribute(x, target=0)
    materialize = {"materialize_grads": True}
    expected = grad_cam.attribute(x, target=0, grad_kwargs=materialize)
    attr = cam.attribute(x, target=0, grad_kwargs=materialize, settings=FIT)
    assert attr.shape == expected.shape and not attr.any() and not expected.any()
    with pytest.raises(TypeError, match="grad_kwargs must be a dict"):
        cam.attribute(x, target=0, grad_kwargs=[("materialize_grads", True)])
