"""Masking strategies for masked image modelling."""

from common.masking.subvolume import (
    SubvolumeForegroundMasker,
    SubvolumeMask,
    expand_grid,
    hu_to_intensity,
    subvolume_means,
)

__all__ = ["SubvolumeForegroundMasker", "SubvolumeMask", "expand_grid", "hu_to_intensity", "subvolume_means"]
