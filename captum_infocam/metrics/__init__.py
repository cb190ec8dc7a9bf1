"""Faithfulness metrics in the style of ``captum.metrics``: one value per example.

Every metric returns a tensor ``(N,)`` on the inputs' device and carries a
``higher_is_better`` attribute. Attributions of layer size are upsampled to the
input size (bilinear) and min-max normalised per example; ``(N, C, H, W)``
attributions are summed over channels: :func:`saliency_maps` returns the maps as
the metrics see them (the energy pointing game reads the raw map by default).
See ``docs/metrics.md``.
"""

from captum_infocam.metrics._common import saliency_maps
from captum_infocam.metrics.confidence import (
    ConfidenceScores,
    average_drop,
    average_gain,
    average_increase,
    confidence_metrics,
    confidence_scores,
    improved_average_drop,
    improved_average_increase,
)
from captum_infocam.metrics.localization import (
    boxes_to_mask,
    energy_pointing_game,
    grid_pointing_game,
    pointing_game,
)
from captum_infocam.metrics.perturbation import deletion_auc, insertion_auc, rise_blur
from captum_infocam.metrics.road import (
    noisy_linear_imputation,
    road_least_relevant_first,
    road_most_relevant_first,
)

__all__ = [
    "ConfidenceScores",
    "average_drop",
    "average_gain",
    "average_increase",
    "boxes_to_mask",
    "confidence_metrics",
    "confidence_scores",
    "deletion_auc",
    "energy_pointing_game",
    "grid_pointing_game",
    "improved_average_drop",
    "improved_average_increase",
    "insertion_auc",
    "noisy_linear_imputation",
    "pointing_game",
    "rise_blur",
    "road_least_relevant_first",
    "road_most_relevant_first",
    "saliency_maps",
]
