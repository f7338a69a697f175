"""Custom transforms (only what MONAI does not have)."""

from common.transforms.brats import (
    BRATS_REGION_LABELS,
    BRATS_REGIONS,
    BratsRegions,
    BratsRegionsd,
    BratsRegionsToLabel,
    BratsRegionsToLabeld,
)
from common.transforms.checks import CaseDataError, CheckSegmentationCased, source_name
from common.transforms.io import ImageReadError, LoadImageCheckedd
from common.transforms.save import SaveLabelMapd, case_name, output_path, pending_cases
from common.transforms.spacing import SpacingKeepExtrasd
from common.transforms.windows import CT_WINDOWS, CTWindowsd

__all__ = [
    "BRATS_REGIONS",
    "BRATS_REGION_LABELS",
    "BratsRegions",
    "BratsRegionsToLabel",
    "BratsRegionsToLabeld",
    "BratsRegionsd",
    "CTWindowsd",
    "CT_WINDOWS",
    "CaseDataError",
    "CheckSegmentationCased",
    "ImageReadError",
    "LoadImageCheckedd",
    "SaveLabelMapd",
    "SpacingKeepExtrasd",
    "case_name",
    "output_path",
    "pending_cases",
    "source_name",
]
