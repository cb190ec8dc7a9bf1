"""InfoCAM (Information-weighted Class Activation Mapping) as a Captum plugin."""

from captum_infocam.dsib import DSIBFit, DSIBSettings
from captum_infocam.guided import GuidedInfoCAM
from captum_infocam.infocam import (
    CollapsedFitWarning,
    InfoCAM,
    NoSpatialMapWarning,
    TrainModeWarning,
    ZeroMapWarning,
)
from captum_infocam.layouts import ChannelsFirst, ChannelsLast, TokenGrid
from captum_infocam.prior import PriorStatistics
from captum_infocam.wrappers import DetectionBoxScore, SegmentationRegion

__all__ = [
    "ChannelsFirst",
    "ChannelsLast",
    "CollapsedFitWarning",
    "DSIBFit",
    "DSIBSettings",
    "DetectionBoxScore",
    "GuidedInfoCAM",
    "InfoCAM",
    "NoSpatialMapWarning",
    "PriorStatistics",
    "SegmentationRegion",
    "TokenGrid",
    "TrainModeWarning",
    "ZeroMapWarning",
]

__version__ = "0.1.0"
