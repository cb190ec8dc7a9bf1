"""Running only the part of the network after the explained layer (the suffix).

A DSIB fit evaluates the network from the layer to the output ``T`` times on
``B * M`` substituted layer values (``M`` rows per example). Three strategies,
tried in this order and remembered per layer once one proves itself:

``"traced"``
    ``torch.fx`` splits the model at the layer into a prefix graph (inputs to
    the layer's value and any other value the rest needs, such as a skip
    connection) and a suffix graph. The prefix runs once per call; each fit step
    runs only the suffix.
``"hooked"``
    Each step runs ``forward_func`` on the ``B`` original inputs without
    autograd, and a forward hook on the layer swaps its value for the ``B * M``
    substituted rows (and turns autograd on from there). The prefix runs at
    every step, at batch ``B``, without building a graph.
``"rerun"``
    Each step runs ``forward_func`` on inputs repeated to ``B * M`` rows, with
    the same hook. Always correct for a model whose rows are independent.

A strategy is accepted when, fed the unchanged layer value repeated ``M``
times, it reproduces the model's own output repeated ``M`` times. No hook
outlives the call that registered it.

The model's outputs become score tensors through
:func:`captum_infocam.outputs.output_scores` (a Hugging Face output object's
``.logits``, say). The first pass on the caller's inputs checks that the layer
gives one tensor, and explains a failure that comes from the inputs' form (one
image without its batch dimension, integer images).
"""

from __future__ import annotations

import io
from contextlib import contextmanager, redirect_stderr
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import torch
from captum._utils.common import (
    ExpansionTypes,
    _expand_additional_forward_args,
    _reduce_list,
    _run_forward,
    _sort_key_list,
)
from captum._utils.gradient import _extract_device_ids, _forward_layer_distributed_eval
from torch import Tensor, fx, nn

from captum_infocam._validation import input_form_hint
from captum_infocam.outputs import output_scores

__all__ = ["STRATEGIES", "LayerSite", "Request", "Suffix", "open_suffix", "select_rows"]

STRATEGIES = ("traced", "hooked", "rerun")


class Untraceable(ValueError):
    """The model cannot be split at the layer with ``torch.fx``."""


class LayerValueError(ValueError):
    """The explained layer's value is not one tensor."""


def check_layer_value(value: Any, to_input: bool) -> None:
    """Raises :class:`LayerValueError` unless ``value`` (the layer's output, or
    first input) is a tensor."""
    if isinstance(value, Tensor):
        return
    if isinstance(value, (tuple, list)):
        found = f"a {type(value).__name__} of {len(value)} values"
    else:
        found = "nothing" if value is None else f"a {type(value).__name__}"
    side = "first input" if to_input else "output"
    raise LayerValueError(
        f"the layer's {side} is {found}, not a tensor (nn.LSTM, for one, returns "
        "(output, (h, c))); InfoCAM explains a layer whose value is one tensor: pick a "
        "layer that returns one tensor, or wrap this one so that it does"
    )


@contextmanager
def _first_pass(request: Request, check_layer: bool) -> Iterator[None]:
    """Runs the model's first pass on the caller's inputs.

    With ``check_layer``, a hook stops the pass at the layer if its value is not
    one tensor. A failure that the inputs' form explains (see
    :func:`~captum_infocam._validation.input_form_hint`) becomes a ``ValueError``
    saying what to change.
    """
    layer, to_input = request.site.layer, request.to_input
    handle = None
    if check_layer and to_input:
        handle = layer.register_forward_pre_hook(
            lambda module, args: check_layer_value(args[0] if args else None, True)
        )
    elif check_layer:
        handle = layer.register_forward_hook(
            lambda module, args, out: check_layer_value(out, False)
        )
    try:
        yield
    except (RuntimeError, ValueError) as error:
        hint = input_form_hint(request.inputs)
        if hint is None or isinstance(error, (LayerValueError, torch.cuda.OutOfMemoryError)):
            raise
        raise ValueError(f"forward_func failed on the inputs ({error}); {hint}") from error
    finally:
        if handle is not None:
            handle.remove()


class LayerSite:
    """Where InfoCAM substitutes values: ``layer``'s output (or input) in ``forward_func``.

    Remembers, per side of the layer, which strategy proved itself and the
    traced split, so later calls skip the probing.
    """

    def __init__(
        self,
        forward_func: Callable[..., Tensor],
        layer: nn.Module,
        device_ids: list[int] | None,
        strategy: str,
    ) -> None:
        self.forward_func = forward_func
        self.layer = layer
        self.device_ids = device_ids
        self.strategy = strategy
        self.chosen: dict[bool, str] = {}
        self._splits: dict[bool, _GraphSplit | None] = {}

    def traceable_model(self) -> nn.Module | None:
        model = self.forward_func
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            return None
        if self.device_ids is not None or not isinstance(model, nn.Module):
            return None
        return model

    def split(self, to_input: bool) -> _GraphSplit:
        if to_input not in self._splits:
            model = self.traceable_model()
            try:
                split = None if model is None else _GraphSplit(model, self.layer, to_input)
            except Exception:  # noqa: BLE001 - any tracing failure means "use hooks"
                split = None
            self._splits[to_input] = split
        split = self._splits[to_input]
        if split is None:
            raise Untraceable("the model could not be split at the layer with torch.fx")
        return split


def _batched(value: Any, num_examples: int) -> bool:
    return isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] == num_examples


def expand_rows(value: Any, rows_per_example: int, num_examples: int) -> Any:
    """Repeats each example's row ``rows_per_example`` times if ``value`` is batched."""
    if _batched(value, num_examples):
        return value.repeat_interleave(rows_per_example, dim=0)
    return value


def select_rows(values: Sequence[Any], rows: slice, total: int) -> list[Any]:
    """The rows ``rows`` of each value expanded to ``total`` rows; other values as they are."""
    return [v[rows] if _batched(v, total) else v for v in values]


@dataclass(frozen=True)
class Request:
    """One call's substitution: where, for which inputs, and how many rows per example."""

    site: LayerSite
    to_input: bool
    inputs: tuple[Tensor, ...]
    additional_forward_args: tuple[Any, ...] | None
    rows_per_example: int


class Suffix:
    """Runs the network from the layer to the output for substituted values.

    Attributes:
        strategy (str): one of :data:`STRATEGIES`.
        value (Tensor): the layer's own value (output, or first input), batch ``B``.
        output (Tensor): the model's output on the inputs, batch ``B``.
    """

    strategy = ""

    def __init__(self, value: Tensor, output: Tensor) -> None:
        self.value = value
        self.output = output

    def __call__(self, value: Tensor, rows: slice) -> Tensor:
        """Returns the output for ``value``: the rows ``rows`` of the ``B * M``
        substituted rows (``M`` per example, in order)."""
        raise NotImplementedError


class _GraphSplit:
    """The model's ``torch.fx`` graph cut at the layer into prefix and suffix modules."""

    def __init__(self, model: nn.Module, layer: nn.Module, to_input: bool) -> None:
        # InfoCAM checks at construction that layer is a submodule of model.
        names = [name for name, module in model.named_modules() if module is layer]
        graph = _LeafTracer(layer).trace(model)
        calls = [n for n in graph.nodes if n.op == "call_module" and n.target in names]
        if len(calls) != 1:
            raise Untraceable(f"the layer is called {len(calls)} times in the graph")
        (layer_node,) = calls
        if to_input and not (layer_node.args and isinstance(layer_node.args[0], fx.Node)):
            raise Untraceable("the layer's first input is not a traced value")
        cut = layer_node.args[0] if to_input else layer_node

        # The suffix: nodes whose value depends on the substituted value.
        suffix_nodes: list[fx.Node] = []
        depends: set[fx.Node] = set()
        for node in graph.nodes:
            if (to_input and node is layer_node) or any(
                arg in depends or (arg is cut and not to_input) for arg in node.all_input_nodes
            ):
                depends.add(node)
                suffix_nodes.append(node)
        output_node = next(n for n in graph.nodes if n.op == "output")
        if output_node not in depends:
            raise Untraceable("the model's output does not depend on the layer")

        boundary: list[fx.Node] = []
        for node in suffix_nodes:
            for arg in node.all_input_nodes:
                if arg not in depends and arg is not cut and arg.op != "get_attr":
                    if arg not in boundary:
                        boundary.append(arg)
        if to_input and any(cut in n.all_input_nodes for n in suffix_nodes if n is not layer_node):
            boundary.append(cut)  # other users of the layer's input keep its own value

        suffix_graph = fx.Graph()
        env: dict[fx.Node, fx.Node] = {}
        substituted = suffix_graph.placeholder("layer_value")
        for index, node in enumerate(boundary):
            env[node] = suffix_graph.placeholder(f"boundary_{index}")
        for node in graph.nodes:
            if node.op == "get_attr":
                env[node] = suffix_graph.node_copy(node)
        if not to_input:
            env[cut] = substituted
        for node in suffix_nodes:
            if node is layer_node and to_input:
                env[node] = suffix_graph.node_copy(
                    node, lambda arg: substituted if arg is cut else env[arg]
                )
            else:
                env[node] = suffix_graph.node_copy(node, lambda arg: env[arg])

        prefix_graph = fx.Graph()
        prefix_env: dict[fx.Node, fx.Node] = {}
        for node in graph.nodes:
            if node not in depends and node.op != "output":
                prefix_env[node] = prefix_graph.node_copy(node, lambda arg: prefix_env[arg])
        prefix_graph.output(tuple(prefix_env[n] for n in (cut, *boundary)))

        self.prefix = _pruned(fx.GraphModule(model, prefix_graph))
        self.suffix = _pruned(fx.GraphModule(model, suffix_graph))

    def run_prefix(
        self, inputs: tuple[Tensor, ...], additional_forward_args: tuple[Any, ...] | None
    ) -> tuple[Tensor, list[Any]]:
        """Runs the prefix without autograd: the layer's value and the boundary values."""
        with torch.no_grad():
            value, *boundary = self.prefix(*inputs, *(additional_forward_args or ()))
        return value, boundary


def _pruned(module: fx.GraphModule) -> fx.GraphModule:
    module.graph.eliminate_dead_code()
    module.recompile()
    return module


class _LeafTracer(fx.Tracer):
    """A ``torch.fx`` tracer that keeps ``layer`` as one call."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self._layer = layer

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return m is self._layer or super().is_leaf_module(m, module_qualified_name)


class _TracedSuffix(Suffix):
    strategy = "traced"

    def __init__(self, request: Request) -> None:
        split = request.site.split(request.to_input)
        with _first_pass(request, check_layer=False):
            value, boundary = split.run_prefix(request.inputs, request.additional_forward_args)
        check_layer_value(value, request.to_input)
        with torch.no_grad():
            # Clones: the suffix may start with an in-place op (ReLU(inplace=True)).
            output = output_scores(split.suffix(value.clone(), *_clones(boundary)))
        super().__init__(value, output)
        self._suffix = split.suffix
        self._total = request.rows_per_example * len(value)
        self._boundary = [expand_rows(b, request.rows_per_example, len(value)) for b in boundary]

    def __call__(self, value: Tensor, rows: slice) -> Tensor:
        boundary = select_rows(self._boundary, rows, self._total)
        return output_scores(self._suffix(value, *_clones(boundary)))


def _clones(values: list[Any]) -> list[Any]:
    return [v.clone() if isinstance(v, Tensor) else v for v in values]


class _HookedSuffix(Suffix):
    """Substitutes the layer's value with a hook; see the module docstring."""

    strategy = "hooked"

    def __init__(self, request: Request) -> None:
        value, output, devices, rows = _capture(request)
        super().__init__(value, output)
        self._request = request
        self._devices = devices
        self._rows = [r * request.rows_per_example for r in rows]

    def __call__(self, value: Tensor, rows: slice) -> Tensor:
        # The rows of the other examples take no part after the layer (else this
        # strategy would not have reproduced the output), so a chunk of rows runs
        # as it is. One device takes the value whole: split views break in-place
        # ops after the layer. Several split it as the examples, or, for a chunk
        # of rows (internal_batch_size), evenly.
        if len(self._devices) == 1:
            parts = (value,)
        elif len(value) == sum(self._rows):
            parts = value.split(self._rows)
        else:
            parts = value.tensor_split(len(self._devices))
        chunks = dict(zip(self._devices, parts, strict=True))
        request = self._request
        return _substituted_forward(
            request.site.forward_func,
            request.site.layer,
            request.to_input,
            lambda device: chunks[device].to(device),
            request.inputs,
            request.additional_forward_args,
            # A graph through DataParallel's gather needs autograd on in every replica.
            prefix_grad=len(self._devices) > 1,
        )


class _RerunSuffix(Suffix):
    """Runs the whole model on repeated inputs; see the module docstring."""

    strategy = "rerun"

    def __init__(self, request: Request, captured: tuple[Tensor, Tensor] | None = None) -> None:
        value, output = captured or _capture(request)[:2]
        super().__init__(value, output)
        forward_func = request.site.forward_func
        if isinstance(forward_func, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            forward_func = forward_func.module
        rows = request.rows_per_example
        self._forward_func = forward_func
        self._layer = request.site.layer
        self._to_input = request.to_input
        self._inputs = tuple(x.repeat_interleave(rows, dim=0) for x in request.inputs)
        self._additional_forward_args = _expand_additional_forward_args(
            request.additional_forward_args, rows, ExpansionTypes.repeat_interleave
        )
        self._total = rows * len(value)

    def __call__(self, value: Tensor, rows: slice) -> Tensor:
        args = self._additional_forward_args
        return _substituted_forward(
            self._forward_func,
            self._layer,
            self._to_input,
            lambda device: value.to(device),
            tuple(select_rows(self._inputs, rows, self._total)),
            None if args is None else tuple(select_rows(args, rows, self._total)),
            prefix_grad=False,
        )


def _capture(request: Request) -> tuple[Tensor, Tensor, list[torch.device], list[int]]:
    """Runs the model once; returns the layer value, the output, and per-device rows."""
    site, to_input = request.site, request.to_input
    try:
        with torch.no_grad(), _first_pass(request, check_layer=True):
            saved, output = _forward_layer_distributed_eval(
                site.forward_func,
                request.inputs,
                site.layer,
                additional_forward_args=request.additional_forward_args,
                attribute_to_layer_input=to_input,
                forward_hook_with_return=True,
            )
    except AssertionError as error:
        if "did not obtain any outputs" in str(error):
            raise ValueError(
                "layer was not called during forward_func: it must be a module "
                "that forward_func runs"
            ) from error
        raise
    per_device = saved[site.layer]
    device_ids = _extract_device_ids(site.forward_func, saved, site.device_ids)
    devices = _sort_key_list(list(per_device), device_ids)
    first = [per_device[device][0] for device in devices]
    value = _reduce_list([(v,) for v in first])[0]
    output = output_scores(output)
    return value.detach(), output.detach(), devices, [len(v) for v in first]


def _substituted_forward(
    forward_func: Callable[..., Tensor],
    layer: nn.Module,
    to_input: bool,
    substitute: Callable[[torch.device], Tensor],
    inputs: tuple[Tensor, ...],
    additional_forward_args: tuple[Any, ...] | None,
    prefix_grad: bool,
) -> Tensor:
    """Runs ``forward_func`` with the layer's value replaced by ``substitute(device)``.

    Unless ``prefix_grad``, everything before the layer runs without autograd,
    which the hook turns back on for the rest of the pass.
    """
    grad_enabled = torch.is_grad_enabled()
    seen: set[torch.device] = set()

    def enter(device: torch.device) -> Tensor:
        if device in seen:
            raise ValueError(
                "layer runs more than once per forward pass, so its value is ambiguous; "
                "explain a module that runs once"
            )
        seen.add(device)
        if not prefix_grad:
            torch.set_grad_enabled(grad_enabled)
        return substitute(device)

    if to_input:

        def pre_hook(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
            return (enter(args[0].device), *args[1:])

        handle = layer.register_forward_pre_hook(pre_hook)
    else:

        def hook(module: nn.Module, args: tuple[Any, ...], out: Tensor) -> Tensor:
            return enter(out.device)

        handle = layer.register_forward_hook(hook)
    try:
        with torch.set_grad_enabled(grad_enabled and prefix_grad):
            output = _run_forward(forward_func, inputs, None, additional_forward_args)
    finally:
        handle.remove()
    return output_scores(output)


def _tolerances(reference: Tensor) -> tuple[float, float]:
    eps = torch.finfo(reference.dtype).eps if reference.is_floating_point() else 0.0
    rtol = max(1e-4, 10 * eps)
    scale = float(reference.abs().max()) if reference.numel() else 1.0
    return rtol, rtol * max(scale, 1.0)


def _close(got: Any, reference: Tensor) -> bool:
    if not isinstance(got, Tensor) or got.shape != reference.shape:
        return False
    rtol, atol = _tolerances(reference)
    return bool(torch.allclose(got.to(reference.dtype), reference, rtol=rtol, atol=atol))


def _reproduces(suffix: Suffix, expected_value: Tensor, expected: Tensor, rows: int) -> bool:
    """Whether ``suffix`` fed the unchanged value repeated ``rows`` times reproduces the output."""
    try:
        with torch.no_grad():
            got = suffix(
                expand_rows(expected_value, rows, len(expected_value)),
                slice(0, rows * len(expected_value)),
            )
    except Exception:  # noqa: BLE001 - a strategy that fails to run is not accepted
        return False
    return _close(got, expand_rows(expected, rows, len(expected)))


_SUFFIXES: dict[str, Callable[[Request], Suffix]] = {
    "traced": _TracedSuffix,
    "hooked": _HookedSuffix,
    "rerun": _RerunSuffix,
}


def open_suffix(request: Request) -> Suffix:
    """Prepares the suffix for ``request``, running the model once.

    With ``site.strategy == "auto"`` the first call per side of the layer tries
    the strategies in order and keeps the first that reproduces the model's own
    output; a named strategy is used as is.
    """
    site, to_input = request.site, request.to_input
    strategy = site.strategy if site.strategy != "auto" else site.chosen.get(to_input)
    if strategy is not None:
        return _SUFFIXES[strategy](request)

    hooked = _HookedSuffix(request)
    candidates: Sequence[Callable[[], Suffix]] = (lambda: _TracedSuffix(request), lambda: hooked)
    for make in candidates:
        try:
            # torch.fx prints the traceback of a failing traced call itself; the failure is
            # this loop's to handle.
            with redirect_stderr(io.StringIO()):
                suffix = make()
                same_start = _close(suffix.value, hooked.value) and _close(
                    suffix.output, hooked.output
                )
                works = same_start and _reproduces(
                    suffix, hooked.value, hooked.output, request.rows_per_example
                )
        except Exception:  # noqa: BLE001
            # The model itself ran (the hooked pass above): a strategy that raises where
            # it does not (a trace of data-dependent control flow, e.g. `if x2 is not
            # None` traced as taken) does not reproduce it.
            continue
        if works:
            site.chosen[to_input] = suffix.strategy
            return suffix
    site.chosen[to_input] = "rerun"
    return _RerunSuffix(request, captured=(hooked.value, hooked.output))
