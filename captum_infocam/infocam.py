"""InfoCAM as a Captum ``LayerAttribution``."""

from __future__ import annotations

import warnings
from contextlib import nullcontext
from dataclasses import replace
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from captum._utils.common import _format_additional_forward_args
from captum._utils.gradient import _forward_layer_eval
from captum._utils.typing import TargetType
from captum.attr._utils.attribution import GradientAttribution, LayerAttribution
from captum.log import log_usage
from torch import Tensor, nn
from torch.profiler import record_function
from tqdm import tqdm

from captum_infocam._context import preserved_buffers, seeded
from captum_infocam._suffix import (
    STRATEGIES,
    LayerSite,
    Request,
    expand_rows,
    open_suffix,
    select_rows,
)
from captum_infocam._targets import check_target, flatten_targets, target_index
from captum_infocam._validation import (
    check_bool,
    check_choice,
    check_finite_tensor,
    check_input_dtypes,
    check_int,
    check_output_rows,
    format_inputs,
)
from captum_infocam._warnings import caller_stacklevel, training_leaves
from captum_infocam.dsib import (
    DSIBFit,
    DSIBSettings,
    channel_maps,
    collapse_modes,
    fit_dsib,
    rows_per_example,
)
from captum_infocam.layouts import ChannelsFirst, LayerLayout
from captum_infocam.likelihood import check_output, choose_likelihood, resolve_likelihood
from captum_infocam.prior import PriorStatistics, PriorType, RunningMoments, prior_moments

__all__ = [
    "CollapsedFitWarning",
    "InfoCAM",
    "NoSpatialMapWarning",
    "TrainModeWarning",
    "ZeroMapWarning",
]

#: The prior used when neither ``prior`` nor :meth:`InfoCAM.fit_statistics` gives one.
DEFAULT_PRIOR = "zero"


class CollapsedFitWarning(UserWarning):
    """A DSIB fit closed every gate, moved none, or ended with every gate equal.

    See :attr:`DSIBFit.collapsed`.
    """


class ZeroMapWarning(UserWarning):
    """A map came back zero everywhere although its fit did not collapse: the weighted
    evidence is negative or zero at every position, and the ReLU removes it. See
    :attr:`DSIBFit.zero_map`; ``relu_attributions=False`` returns the signed map."""


class NoSpatialMapWarning(UserWarning):
    """The explained layer's maps are ``1 x 1`` (a pooled or linear layer) while the inputs
    are images: the map is one number per example. Explain a stage before the pooling."""


class TrainModeWarning(UserWarning):
    """The explained model is in training mode: dropout and batch normalisation
    change its output, and so the map, from call to call and with the batch.
    Call ``model.eval()`` first."""


class InfoCAM(LayerAttribution, GradientAttribution):
    r"""Information-weighted Class Activation Mapping.

    InfoCAM weights the channels :math:`A_c` of a layer by what a Dual-Stream
    Information Bottleneck (DSIB, :mod:`captum_infocam.dsib`) fitted to each
    example lets through for the target, and returns

    .. math::
        \mathrm{InfoCAM} = \mathrm{ReLU}\Big(\sum_c w_c A_c\Big),
        \qquad w_c = \lambda^+_c - \lambda^-_c \text{ by default:}

    the gates of a bottleneck for the evidence for the target minus those of a
    bottleneck for the evidence against it (its complementary event), both
    fitted in one batched pass (``contrast="none"`` keeps the first only, the
    original single fit, :math:`w_c = \lambda_c`).

    The fit runs per example, batched over examples and noise draws, on the
    device of the inputs. It only evaluates the part of the network after the
    layer (traced with ``torch.fx`` where possible); no gradient of the output
    with respect to the activations enters the weights, only gradients with
    respect to the gate logits.

    The weights and the map are the paper's (InfoCAM, 2026, whose abstract is
    public); the loss, prior, read-outs and defaults are this package's choices,
    documented in :mod:`captum_infocam.dsib` and :mod:`captum_infocam.prior`.

    After each call, :attr:`last_fit` holds the fitted quantities
    (:class:`~captum_infocam.dsib.DSIBFit`: gates, bits per channel, the
    information map, the loss trace, the final loss terms and stream
    probabilities, and the complement's fit in ``last_fit.complement``)
    without a second fit, and :attr:`suffix_strategy_used` says how the fit
    ran the network after the layer.

    Args:
        forward_func (Callable): the model, or any function of the inputs that
            returns its scores: a tensor, or an output that
            :func:`~captum_infocam.outputs.output_scores` reads (a Hugging Face
            output's ``.logits``, a dict's ``"logits"`` or ``"out"``).
        layer (torch.nn.Module): the layer to explain; its output (or input, see
            ``attribute_to_layer_input``) must be ``(N, C, H, W)`` unless
            ``reshape_transform`` maps it there.
        device_ids (list[int], optional): device IDs, needed only if
            ``forward_func`` applies a DataParallel model without being one.
            Default: None
        reshape_transform (LayerLayout, optional): converts the layer's value
            to ``(N, C, H, W)`` maps and back, e.g.
            :class:`~captum_infocam.layouts.TokenGrid` for ViT blocks or
            :class:`~captum_infocam.layouts.ChannelsLast` for Swin blocks.
            Default: the identity, after a check that a 4-D value does not look
            channels-last (pass :class:`~captum_infocam.layouts.ChannelsFirst`
            to skip it).
        suffix_strategy (str, optional): how the fit runs the network after the
            layer: ``"auto"`` (try ``"traced"``, then ``"hooked"``, then
            ``"rerun"``, keeping the first that reproduces the model's output),
            or one of them. Default: ``"auto"``
    """

    def __init__(
        self,
        forward_func: Callable[..., Tensor],
        layer: nn.Module,
        device_ids: Optional[list[int]] = None,
        reshape_transform: Optional[LayerLayout] = None,
        suffix_strategy: str = "auto",
    ) -> None:
        if not callable(forward_func):
            raise TypeError(
                f"forward_func must be callable (the model, or a function of the inputs), "
                f"got {type(forward_func).__name__}"
            )
        if not isinstance(layer, nn.Module):
            raise TypeError(f"layer must be a torch.nn.Module, got {type(layer).__name__}")
        model = _owning_module(forward_func)
        if model is not None and not any(m is layer for m in model.modules()):
            raise ValueError(
                f"layer must be a submodule of forward_func; {type(layer).__name__} "
                f"is not among the modules of {type(model).__name__}"
            )
        if reshape_transform is not None and not isinstance(reshape_transform, LayerLayout):
            raise TypeError(
                "reshape_transform must have to_maps(value) and from_maps(maps, value) "
                "(see captum_infocam.layouts)"
            )
        check_choice("suffix_strategy", suffix_strategy, ("auto", *STRATEGIES))
        LayerAttribution.__init__(self, forward_func, layer, device_ids)
        GradientAttribution.__init__(self, forward_func)
        self.reshape_transform: LayerLayout = reshape_transform or ChannelsFirst()
        self._layout_given = reshape_transform is not None
        self.statistics: Optional[PriorStatistics] = None
        self.last_fit: Optional[DSIBFit] = None
        self._model = model
        self._site = LayerSite(forward_func, layer, device_ids, suffix_strategy)
        self._suffix_strategy_used: Optional[str] = None

    @property
    def suffix_strategy_used(self) -> Optional[str]:
        """The strategy (``"traced"``, ``"hooked"`` or ``"rerun"``) that the last
        :meth:`attribute` call ran; ``None`` before the first call. With
        ``suffix_strategy="auto"`` it is the one that proved itself."""
        return self._suffix_strategy_used

    @log_usage()
    def attribute(
        self,
        inputs: Union[Tensor, tuple[Tensor, ...]],
        target: TargetType = None,
        additional_forward_args: Optional[object] = None,
        attribute_to_layer_input: bool = False,
        relu_attributions: bool = True,
        attr_dim_summation: bool = True,
        grad_kwargs: Optional[dict[str, Any]] = None,
        settings: Optional[DSIBSettings] = None,
        internal_batch_size: Optional[int] = None,
        show_progress: bool = False,
        **fit_settings: Any,
    ) -> Tensor:
        r"""
        Args:
            inputs (Tensor or tuple[Tensor, ...]): input for which the map is
                computed; dimension 0 indexes examples.
            target (int, tuple, Tensor, or list, optional): output indices to
                explain, in Captum's ``TargetType`` forms; each must name one
                output element per example. ``None`` only for outputs with one
                element per example.
                Default: None
            additional_forward_args (Any, optional): further arguments of
                ``forward_func``, passed after the inputs.
                Default: None
            attribute_to_layer_input (bool, optional): explain the layer's
                (first) input instead of its output.
                Default: False
            relu_attributions (bool, optional): apply a ReLU to the result, as
                InfoCAM is defined.
                Default: True
            attr_dim_summation (bool, optional): sum the weighted maps over
                channels; ``False`` returns one map per channel.
                Default: True
            grad_kwargs (dict, optional): keyword arguments of
                ``torch.autograd.grad`` for the fit's backward through the
                network after the layer, as in Captum's ``LayerGradCam``
                (``{"materialize_grads": True}`` for a layer whose value the
                output does not use: a zero map instead of an error).
                Default: None
            settings (DSIBSettings, optional): every setting of the fit and
                its read-out (draws, steps, learning rate, beta, gamma, prior,
                read-out, likelihood, seed, contrast, evidence, precision),
                checked when the object is made; see
                :class:`~captum_infocam.dsib.DSIBSettings`.
                Default: ``DSIBSettings()``, the defaults
            internal_batch_size (int, optional): the most rows that go through
                the network after the layer at once. Each step of the fit passes
                ``N * F * 2K`` rows (``F`` = 2 bottlenecks with the complement,
                1 without; 8 rows per example by default); chunks of at most
                this many rows bound the memory, at some cost in speed, and give
                the same maps up to floating-point rounding. ``None`` passes all
                rows at once.
                Default: None
            show_progress (bool, optional): show a progress bar over the
                fit's steps.
                Default: False
            **fit_settings: none; a setting of the fit passed here (``beta=2``)
                raises a ``TypeError`` that names ``settings=DSIBSettings(...)``.

        Returns:
            *Tensor* of **attributions** with shape ``(N, 1, H, W)``, or
            ``(N, C, H, W)`` if ``attr_dim_summation=False``, on the inputs'
            device, in float32 (float64 for a float64 layer). Upsample with
            :meth:`interpolate`. A layer whose value is a ``(N, C)`` vector is
            fitted as ``1 x 1`` maps and gives ``(N, 1)`` or ``(N, C)``, as
            Captum's ``LayerGradCam`` does.

        Examples::

            >>> model = torchvision.models.resnet18().eval()
            >>> cam = InfoCAM(model, model.layer4)
            >>> x = torch.randn(2, 3, 224, 224)
            >>> attr = cam.attribute(x, target=[3, 7])  # (2, 1, 7, 7)
            >>> up = InfoCAM.interpolate(attr, x.shape[-2:], "bilinear")
            >>> cam.last_fit.bits.shape  # information per channel, in bits
            torch.Size([2, 512])
            >>> weights = cam.last_fit.gates - cam.last_fit.complement.gates
            >>> longer = cam.attribute(x, target=[3, 7], settings=DSIBSettings(steps=20))
        """
        inputs, num_examples = format_inputs(inputs)
        check_input_dtypes(inputs, self._model)
        additional_forward_args = _format_additional_forward_args(additional_forward_args)
        check_target(target, num_examples)
        for name, flag in (
            ("attribute_to_layer_input", attribute_to_layer_input),
            ("relu_attributions", relu_attributions),
            ("attr_dim_summation", attr_dim_summation),
            ("show_progress", show_progress),
        ):
            check_bool(name, flag)
        if fit_settings:
            name = next(iter(fit_settings))
            raise TypeError(
                f"attribute() got an unexpected keyword argument {name!r}; the fit's settings "
                f"go in one object: settings=DSIBSettings({name}=...) "
                "(from captum_infocam import DSIBSettings)"
            )
        if settings is None:
            settings = DSIBSettings()
        elif not isinstance(settings, DSIBSettings):
            raise TypeError(
                f"settings must be a DSIBSettings, got {type(settings).__name__}; "
                "e.g. settings=DSIBSettings(beta=2.0)"
            )
        settings = settings.resolved()
        complement = settings.contrast == "complement"
        if internal_batch_size is not None:
            check_int("internal_batch_size", internal_batch_size, 1)
        if grad_kwargs is not None and not isinstance(grad_kwargs, dict):
            raise TypeError(
                f"grad_kwargs must be a dict of torch.autograd.grad's keyword arguments, "
                f"got {type(grad_kwargs).__name__}"
            )
        prior = self._resolve_prior(settings.prior)
        training = training_leaves(self._model)
        if training:
            warnings.warn(
                f"the model is in training mode ({len(training)} module(s), e.g. "
                f"{training[0]!r}): dropout and batch normalisation then change the map "
                "from call to call and with the batch; call model.eval() first",
                TrainModeWarning,
                stacklevel=caller_stacklevel(),
            )

        rows = rows_per_example(settings.n_samples, complement)
        device = inputs[0].device
        autocast_dtype = settings.autocast_dtype
        with preserved_buffers(self._model), seeded(settings.seed, device) as generator:
            with record_function("InfoCAM: prefix"):
                suffix = open_suffix(
                    Request(
                        self._site, attribute_to_layer_input, inputs, additional_forward_args, rows
                    )
                )
            self._suffix_strategy_used = suffix.strategy
            check_output_rows(suffix.output, num_examples, inputs)
            check_finite_tensor("the output of forward_func", suffix.output)
            likelihood = choose_likelihood(settings.likelihood, suffix.output)
            check_output(likelihood, suffix.output)
            target_log_odds = resolve_likelihood(likelihood)
            index = target_index(target, num_examples, suffix.output.shape, device)
            if not self._layout_given and _looks_channels_last(suffix.value):
                raise ValueError(
                    f"the layer's value has shape {tuple(suffix.value.shape)}, which looks "
                    "channels-last, (N, H, W, C) as in Swin blocks: pass "
                    "reshape_transform=ChannelsLast(); if it is (N, C, H, W), pass "
                    "reshape_transform=ChannelsFirst() to say so"
                )
            maps = self.reshape_transform.to_maps(suffix.value)
            if maps.dim() != 4:
                raise ValueError(
                    f"the layer's value has shape {tuple(suffix.value.shape)}; InfoCAM needs "
                    "(N, C, H, W) maps: pass reshape_transform (see captum_infocam.layouts)"
                )
            images = [x for x in inputs if x.dim() == 4 and x.shape[-2] * x.shape[-1] > 1]
            if maps.shape[2:] == (1, 1) and images:
                warnings.warn(
                    f"the layer's value has shape {tuple(suffix.value.shape)}: no spatial "
                    f"extent, while the inputs are {tuple(images[0].shape[-2:])} images, so "
                    "the map is one number per example (as LayerGradCam's would be); to see "
                    "where the evidence lies, explain a stage before the global pooling "
                    "(e.g. model.layer4 of a ResNet)",
                    NoSpatialMapWarning,
                    stacklevel=caller_stacklevel(),
                )
            fit_dtype = torch.promote_types(maps.dtype, torch.float32)
            activations = maps.to(fit_dtype)
            mean, std = prior_moments(prior, activations)
            value_rows = expand_rows(suffix.value, rows, num_examples)
            index_rows = index.repeat_interleave(rows, dim=0)

            def log_odds(streams: Tensor, chunk: slice) -> Tensor:
                value, targets = select_rows((value_rows, index_rows), chunk, len(index_rows))
                value = self.reshape_transform.from_maps(streams.to(maps.dtype), value)
                # No context without autocast_dtype: a caller's own torch.autocast stays in force.
                with (
                    nullcontext()
                    if autocast_dtype is None
                    else torch.autocast(device.type, autocast_dtype)
                ):
                    output = suffix(value, chunk)
                return target_log_odds(output.to(fit_dtype), targets)

            with torch.enable_grad():
                fit = fit_dsib(
                    activations,
                    log_odds,
                    mean,
                    std,
                    n_samples=settings.n_samples,
                    steps=settings.steps,
                    lr=settings.lr,
                    beta=settings.beta,
                    gamma=settings.gamma,
                    alpha_init=settings.alpha_init,
                    evidence=settings.evidence,
                    complement=complement,
                    generator=generator,
                    internal_batch_size=internal_batch_size,
                    show_progress=show_progress,
                    grad_kwargs=grad_kwargs,
                )
        if not bool(torch.isfinite(fit.loss_trace).all()):
            raise ValueError(
                "the DSIB fit met NaN or infinite values: forward_func returned them for "
                "perturbed activations of the layer"
            )
        with record_function("InfoCAM: read-out"):
            attributions = channel_maps(fit, settings.readout, activations, mean, std)
            if attr_dim_summation:
                attributions = attributions.sum(1, keepdim=True)
            if relu_attributions:
                attributions = F.relu(attributions)
            if suffix.value.dim() == 2 and maps.shape[2:] == (1, 1):
                # A vector layer's 1 x 1 maps, returned as LayerGradCam does: (N, 1) or (N, C).
                attributions = attributions.flatten(1)
        zero_map = (attributions == 0).flatten(1).all(1)
        self.last_fit = replace(fit, zero_map=zero_map)
        if bool(fit.collapsed.any()):
            warnings.warn(
                _collapse_message(fit, settings, num_examples),
                CollapsedFitWarning,
                stacklevel=caller_stacklevel(),
            )
        zero_only = zero_map & ~fit.collapsed
        if bool(zero_only.any()):
            warnings.warn(
                f"the map is zero everywhere for {int(zero_only.sum())} of {num_examples} "
                "example(s) (see last_fit.zero_map): the weighted evidence is not positive "
                "at any position, and the ReLU removes it; relu_attributions=False returns "
                "the signed map. Captum's visualize_image_attr cannot draw an all-zero map "
                "(it raises); captum_infocam.visualization.overlay draws it with a note",
                ZeroMapWarning,
                stacklevel=caller_stacklevel(),
            )
        return attributions

    def attribute_each(
        self,
        inputs: Union[Tensor, tuple[Tensor, ...]],
        targets: Sequence[Union[Sequence[Union[int, tuple[int, ...]]], Tensor]],
        additional_forward_args: Optional[object] = None,
        **attribute_kwargs: Any,
    ) -> tuple[Tensor, Tensor]:
        r"""Explains several targets of each example (each object of a scene) in one call.

        Example ``i`` is explained once for each entry of ``targets[i]``; all
        of these maps come from one batched :meth:`attribute` call, and each
        equals the map of a separate call for that example and target. The
        maps are stacked example by example, in the order of ``targets``
        (``sum_i len(targets[i])`` rows), with the index of the example each
        row explains, as ``torchvision.ops.roi_align`` pairs boxes with their
        images. :meth:`attribute` itself keeps Captum's contract of one row per
        example, which ``captum.metrics`` and the visualisation rely on.
        :attr:`last_fit` has the rows of the returned maps.

        Args:
            inputs (Tensor or tuple[Tensor, ...]): as in :meth:`attribute`.
            targets (list): one entry per example: a non-empty list (or 1-D
                integer tensor) of that example's targets, each in the form
                :meth:`attribute` takes for one example (an int, or a tuple of
                ints for outputs with several dimensions after the batch).
            additional_forward_args (Any, optional): as in :meth:`attribute`;
                tensors whose first dimension is the number of examples are
                repeated with the examples, other values are passed unchanged.
                Default: None
            **attribute_kwargs: any other argument of :meth:`attribute`
                (``settings``, ``internal_batch_size``, ...).

        Returns:
            *tuple[Tensor, Tensor]* of **attributions**, ``(M, 1, H, W)`` as
            :meth:`attribute` returns them for ``M = sum_i len(targets[i])``
            rows, and **example_index**, ``(M,)`` int64 on the inputs' device:
            the example that each row explains.

        Examples::

            >>> cam = InfoCAM(model, model.layer4)
            >>> x = torch.randn(2, 3, 224, 224)
            >>> maps, image = cam.attribute_each(x, [[3, 7], [5]])  # (3, 1, 7, 7)
            >>> image
            tensor([0, 0, 1])
        """
        if "target" in attribute_kwargs:
            raise TypeError("attribute_each takes the targets as targets, not target")
        inputs, num_examples = format_inputs(inputs)
        flat, counts = flatten_targets(targets, num_examples)
        device = inputs[0].device
        example_index = torch.repeat_interleave(
            torch.arange(num_examples, device=device), torch.tensor(counts, device=device)
        )
        expanded = tuple(x.index_select(0, example_index) for x in inputs)
        extra = _format_additional_forward_args(additional_forward_args)
        if extra is not None:
            extra = tuple(
                a.index_select(0, example_index.to(a.device)) if _is_batched(a, num_examples) else a
                for a in extra
            )
        attributions = self.attribute(
            expanded if len(expanded) > 1 else expanded[0],
            target=flat,
            additional_forward_args=extra,
            **attribute_kwargs,
        )
        return attributions, example_index

    def fit_statistics(
        self,
        data: Iterable[Any],
        additional_forward_args: Optional[object] = None,
        attribute_to_layer_input: bool = False,
        max_batches: Optional[int] = None,
        show_progress: bool = False,
    ) -> PriorStatistics:
        r"""Estimates the prior's per-channel mean and standard deviation on a data set.

        The result is kept in :attr:`statistics` and used by :meth:`attribute`
        when it is given no ``prior``.

        Args:
            data (Iterable): batches: an input tensor, a tuple of input
                tensors, or a list ``[inputs, labels, ...]`` as a ``DataLoader``
                of a labelled data set yields (its first element is used).
            additional_forward_args (Any, optional): as in :meth:`attribute`.
                Default: None
            attribute_to_layer_input (bool, optional): as in :meth:`attribute`.
                Default: False
            max_batches (int, optional): stop after this many batches.
                Default: None (all)
            show_progress (bool, optional): show a progress bar.
                Default: False

        Returns:
            :class:`~captum_infocam.prior.PriorStatistics`.

        Examples::

            >>> cam = InfoCAM(model, model.layer4)
            >>> cam.fit_statistics(val_loader, max_batches=20)
            >>> attr = cam.attribute(x, target=y)  # uses the data-set prior
        """
        if max_batches is not None:
            check_int("max_batches", max_batches, 1)
        moments = RunningMoments()
        additional_forward_args = _format_additional_forward_args(additional_forward_args)
        with preserved_buffers(self._model), torch.no_grad():
            for batch_index, batch in enumerate(tqdm(data, disable=not show_progress)):
                if max_batches is not None and batch_index >= max_batches:
                    break
                inputs, _ = format_inputs(batch[0] if isinstance(batch, list) else batch)
                (value,) = _forward_layer_eval(
                    self.forward_func,
                    inputs,
                    self.layer,
                    additional_forward_args,
                    device_ids=self.device_ids,
                    attribute_to_layer_input=attribute_to_layer_input,
                )[:1]
                moments.update(self.reshape_transform.to_maps(value))
        self.statistics = moments.statistics()
        return self.statistics

    def _resolve_prior(self, prior: Optional[PriorType]) -> PriorType:
        if prior is None:
            return self.statistics if self.statistics is not None else DEFAULT_PRIOR
        return prior


def _is_batched(value: Any, num_examples: int) -> bool:
    return isinstance(value, Tensor) and value.dim() > 0 and len(value) == num_examples


def _looks_channels_last(value: Tensor) -> bool:
    """A 4-D value whose dimensions 1 and 2 are equal and differ from the last: a square
    grid of positions with its channels last, ``(N, H, H, C)``. A channels-first value
    ``(N, C, H, W)`` looks so only where ``C == H != W``."""
    return value.dim() == 4 and value.shape[1] == value.shape[2] != value.shape[3]


def _collapse_message(fit: DSIBFit, settings: DSIBSettings, num_examples: int) -> str:
    """What :class:`CollapsedFitWarning` says: how many fits collapsed, and for each way
    they collapsed its likely cause and what to change."""
    closed, unmoved, equal = collapse_modes(fit.gates)
    causes = []
    if bool(closed.any()):
        causes.append(
            f"every gate closed for {int(closed.sum())}: the compression outweighed the "
            f"evidence (or there was none: a classifier that ignores the layer); lower beta "
            f"(now {settings.beta:g})"
        )
    if bool(unmoved.any()):
        causes.append(
            f"no gate moved for {int(unmoved.sum())}: the gate logits travel lr * steps = "
            f"{settings.lr * settings.steps:g}; raise lr or steps"
        )
    if bool(equal.any()):
        causes.append(
            f"every gate ended equal for {int(equal.sum())}: the output barely depends on "
            "which channels pass; likely a random or untrained classifier, classes whose "
            "scores move together (likelihood='sigmoid' reads the target's score alone), or "
            "a token or channels-last layer explained without its layout (reshape_transform)"
        )
    return (
        f"the DSIB fit collapsed for {int(fit.collapsed.sum())} of {num_examples} example(s) "
        f"(see last_fit.collapsed): " + "; ".join(causes)
    )


def _owning_module(forward_func: Callable[..., Any]) -> Optional[nn.Module]:
    """The module whose state a call may touch: the model, or a bound method's owner."""
    if isinstance(forward_func, nn.Module):
        return forward_func
    owner = getattr(forward_func, "__self__", None)
    return owner if isinstance(owner, nn.Module) else None
