r"""Explaining more than a class: forward wrappers for segmentation and detection.

Captum explains a ``forward_func`` and a ``target`` index into its output. For a
segmentation or detection model, a small wrapper turns the model's output into
scores of the thing to explain, so InfoCAM, Captum's methods and the metrics all
work unchanged.

* :class:`SegmentationRegion`: the class logits of a segmentation model averaged
  over a region of the output mask, shape ``(N, classes)``; explain a class with
  ``target=c`` (the default likelihood reads the classes with a softmax). The region comes with the
  wrapper (shared by the batch) or per example through
  ``additional_forward_args``.
* :class:`DetectionBoxScore`: the score of the detection that best matches a
  reference box (same label, largest IoU above a threshold), as a logit of shape
  ``(N, 1)``; explain it without ``target``: the default ``likelihood="auto"``
  reads one score per example with a sigmoid, so that :math:`\log p(y)` is the
  log of the detection score. Where no detection matches, the score is a floor of
  :math:`10^{-6}`.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn
from torchvision.ops import box_iou

__all__ = ["DetectionBoxScore", "SegmentationRegion"]

_SCORE_FLOOR = 1e-6


class SegmentationRegion(nn.Module):
    """Class logits of a segmentation model averaged over a region.

    Args:
        model (nn.Module): returns ``(N, classes, H, W)`` logits, or a dict
            holding them under ``output_key`` (torchvision's segmentation models).
        region (Tensor, optional): ``(H, W)`` mask (bool or weights) shared by
            every example; ``torch.ones(H, W)`` scores the whole image. Without
            it, each call takes a per-example region.
        output_key (str, optional): the dict key of the logits. Default: ``"out"``

    ``forward(x, region=None)``: without a shared region, ``region`` ``(N, H, W)``
    is required; pass it through ``additional_forward_args``. The forward has no
    branch on tensor values, so ``torch.fx`` traces it and InfoCAM runs only the
    network after the explained layer.

    Examples::

        >>> model = torchvision.models.segmentation.fcn_resnet50(num_classes=21).eval()
        >>> scores = SegmentationRegion(model)
        >>> cam = InfoCAM(scores, model.backbone.layer4)
        >>> attr = cam.attribute(x, target=15, additional_forward_args=(person_mask,))
    """

    def __init__(
        self, model: nn.Module, region: Optional[Tensor] = None, output_key: str = "out"
    ) -> None:
        super().__init__()
        if region is not None and region.dim() != 2:
            raise ValueError(f"region must be (H, W), got shape {tuple(region.shape)}")
        self.model = model
        self.output_key = output_key
        shared = None if region is None else region.float()[None]
        self.register_buffer("region", shared, persistent=False)

    def forward(self, x: Tensor, region: Optional[Tensor] = None) -> Tensor:
        if self.region is None and region is None:
            raise ValueError("give a region (N, H, W), or a shared one to SegmentationRegion")
        output = self.model(x)
        if isinstance(output, dict):
            output = output[self.output_key]
        weights = (self.region if self.region is not None else region).to(output.dtype)[:, None]
        return (output * weights).sum((2, 3)) / weights.sum((2, 3)).clamp_min(1e-12)


class DetectionBoxScore(nn.Module):
    """The score of the detection that matches a reference box, as a logit ``(N, 1)``.

    Args:
        model (nn.Module): a torchvision detection model in eval mode (returns a
            list of dicts with ``boxes``, ``labels``, ``scores``).
        box (Tensor): the reference box ``(4,)`` as ``(x1, y1, x2, y2)`` in input pixels.
        label (int): its class.
        iou_threshold (float, optional): least IoU of a match. Default: 0.5

    Examples::

        >>> detector = torchvision.models.detection.fasterrcnn_resnet50_fpn(...).eval()
        >>> score = DetectionBoxScore(detector, box=torch.tensor([10., 20, 120, 200]), label=1)
        >>> cam = InfoCAM(score, detector.backbone.body.layer4)
        >>> attr = cam.attribute(image[None])  # likelihood "auto": the sigmoid
    """

    def __init__(self, model: nn.Module, box: Tensor, label: int, iou_threshold: float = 0.5):
        super().__init__()
        self.model = model
        self.register_buffer("box", box.float().view(1, 4), persistent=False)
        self.label = label
        self.iou_threshold = iou_threshold

    def forward(self, x: Tensor) -> Tensor:
        scores = []
        for detection in self.model(list(x)):
            same_label = detection["labels"] == self.label
            overlap = box_iou(self.box.to(detection["boxes"]), detection["boxes"])[0]
            matched = same_label & (overlap >= self.iou_threshold)
            candidates = torch.where(
                matched, detection["scores"], torch.zeros_like(detection["scores"])
            )
            best = candidates.max() if len(candidates) else x.new_zeros(())
            scores.append(best)
        probability = torch.stack(scores).clamp(_SCORE_FLOOR, 1 - _SCORE_FLOOR)
        return torch.logit(probability)[:, None]
