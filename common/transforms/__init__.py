"""Custom transforms (only what MONAI does not have)."""

from common.lazy import exports

#: name -> defining module, imported on first use (see :mod:`common.lazy`)
EXPORTS = {
    "SaveDicomSegd": "common.transforms.dicom_seg",
    "write_dicom_seg": "common.transforms.dicom_seg",
    "REGION_PRESETS": "common.transforms.brats",
    "label_regions": "common.transforms.brats",
    "region_label_values": "common.transforms.brats",
    "region_value_names": "common.transforms.brats",
    "BratsRegions": "common.transforms.brats",
    "BratsRegionsd": "common.transforms.brats",
    "BratsRegionsToLabel": "common.transforms.brats",
    "BratsRegionsToLabeld": "common.transforms.brats",
    "case_name": "common.transforms.save",
    "CaseDataError": "common.transforms.checks",
    "CheckSegmentationCased": "common.transforms.checks",
    "CT_WINDOWS": "common.transforms.windows",
    "CTWindowsd": "common.transforms.windows",
    "WindowsAlongDepthd": "common.transforms.windows",
    "ImageReadError": "common.transforms.io",
    "LoadImageCheckedd": "common.transforms.io",
    "nnunet_ct_normalized": "common.transforms.nnunet_ct",
    "nnunet_ct_settings": "common.transforms.nnunet_ct",
    "output_path": "common.transforms.save",
    "pending_cases": "common.transforms.save",
    "SaveLabelMapd": "common.transforms.save",
    "source_name": "common.transforms.checks",
    "SpacingKeepExtrasd": "common.transforms.spacing",
}

__all__ = sorted(EXPORTS)
__getattr__, __dir__ = exports(__name__, EXPORTS)
