"""Masking strategies: SubFore's foreground subvolumes, MedContext's tube masks."""

from common.masking.subvolume import (
    SubvolumeForegroundMasker,
    SubvolumeMask,
    expand_grid,
    hu_to_intensity,
    subvolume_means,
)
from common.masking.tube import masked_fraction, tube_mask

__all__ = ["SubvolumeForegroundMasker", "SubvolumeMask", "expand_grid", "hu_to_intensity", "masked_fraction", "subvolume_means", "tube_mask"]
