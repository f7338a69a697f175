"""Masking strategies: SubFore's foreground subvolumes, MedContext's tube masks, AnatoMask's
reconstruction-guided masks."""

from common.masking.anatomask import (
    anatomical_mask,
    count_for_ratio,
    random_patch_mask,
    significance_ratio,
)
from common.masking.subvolume import (
    SubvolumeForegroundMasker,
    SubvolumeMask,
    expand_grid,
    hu_to_intensity,
    subvolume_means,
)
from common.masking.tube import masked_fraction, tube_mask

__all__ = [
    "SubvolumeForegroundMasker",
    "SubvolumeMask",
    "anatomical_mask",
    "count_for_ratio",
    "expand_grid",
    "hu_to_intensity",
    "masked_fraction",
    "random_patch_mask",
    "significance_ratio",
    "subvolume_means",
    "tube_mask",
]
