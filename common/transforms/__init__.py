"""Custom transforms (only what MONAI does not have)."""

from common.transforms.io import ImageReadError, LoadImageCheckedd

__all__ = ["ImageReadError", "LoadImageCheckedd"]
