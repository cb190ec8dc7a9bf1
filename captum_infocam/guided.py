"""Guided InfoCAM: guided backpropagation times the upsampled InfoCAM map, as Captum's
``GuidedGradCam`` is for Grad-CAM."""

from __future__ import annotations

from typing import Optional, Union

from captum._utils.common import _format_output, _format_tensor_into_tuples, _is_tuple
from captum._utils.typing import TargetType
from captum.attr import GuidedBackprop
from captum.attr._utils.attribution import GradientAttribution, LayerAttribution
from captum.log import log_usage
from torch import Tensor, nn

from captum_infocam.dsib import DSIBSettings
from captum_infocam.infocam import InfoCAM
from captum_infocam.layouts import LayerLayout

__all__ = ["GuidedInfoCAM"]


class GuidedInfoCAM(GradientAttribution):
    r"""Guided InfoCAM: the element-wise product of guided backpropagation's attribution
    and the InfoCAM map upsampled to each input, for fine-grained, class-dependent maps,
    as Captum's :class:`~captum.attr.GuidedGradCam` combines guided backpropagation with
    Grad-CAM (Selvaraju et al., 2017).

    Guided backpropagation overrides the gradients of ReLU modules (``nn.ReLU``), as in
    Captum; ReLUs applied as functions are left as they are.

    Args:
        model (nn.Module): the model.
        layer (nn.Module): the layer InfoCAM explains.
        device_ids (list[int], optional): as in :class:`~captum_infocam.InfoCAM`.
        reshape_transform (LayerLayout, optional): as in :class:`~captum_infocam.InfoCAM`.
        suffix_strategy (str, optional): as in :class:`~captum_infocam.InfoCAM`.
            Default: ``"auto"``
    """

    def __init__(
        self,
        model: nn.Module,
        layer: nn.Module,
        device_ids: Optional[list[int]] = None,
        reshape_transform: Optional[LayerLayout] = None,
        suffix_strategy: str = "auto",
    ) -> None:
        GradientAttribution.__init__(self, model)
        self.infocam = InfoCAM(model, layer, device_ids, reshape_transform, suffix_strategy)
        self.guided_backprop = GuidedBackprop(model)

    @log_usage()
    def attribute(
        self,
        inputs: Union[Tensor, tuple[Tensor, ...]],
        target: TargetType = None,
        additional_forward_args: Optional[object] = None,
        interpolate_mode: str = "nearest",
        attribute_to_layer_input: bool = False,
        settings: Optional[DSIBSettings] = None,
    ) -> Union[Tensor, tuple[Tensor, ...]]:
        r"""
        Args:
            inputs (Tensor or tuple[Tensor, ...]): images ``(N, C, H, W)`` (or
                other inputs with spatial dimensions after the channels).
            target, additional_forward_args, attribute_to_layer_input: as in
                :meth:`InfoCAM.attribute <captum_infocam.InfoCAM.attribute>`.
            interpolate_mode (str, optional): how the map is upsampled to each
                input (``torch.nn.functional.interpolate``'s modes).
                Default: ``"nearest"``, as Captum's ``GuidedGradCam``
            settings (DSIBSettings, optional): the fit's settings.
                Default: ``DSIBSettings()``

        Returns:
            *Tensor* or *tuple[Tensor, ...]* of **attributions**, shaped like
            ``inputs``. :attr:`infocam`'s ``last_fit`` holds the fit.

        Examples::

            >>> guided = GuidedInfoCAM(model, model.layer4)
            >>> attr = guided.attribute(x, target=3)  # (N, 3, 224, 224)
        """
        is_tuple = _is_tuple(inputs)
        for position, value in enumerate(_format_tensor_into_tuples(inputs)):
            if isinstance(value, Tensor) and value.dim() < 3:
                raise ValueError(
                    f"inputs[{position}] has shape {tuple(value.shape)}; GuidedInfoCAM "
                    "upsamples the map to inputs with spatial dimensions, (N, C, H, W)"
                )
        maps = self.infocam.attribute(
            inputs,
            target,
            additional_forward_args,
            attribute_to_layer_input=attribute_to_layer_input,
            relu_attributions=True,
            settings=settings,
        )
        guided = _format_tensor_into_tuples(
            self.guided_backprop.attribute(inputs, target, additional_forward_args)
        )
        return _format_output(
            is_tuple,
            tuple(
                g * LayerAttribution.interpolate(maps, tuple(g.shape[2:]), interpolate_mode)
                for g in guided
            ),
        )
