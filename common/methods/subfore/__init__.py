"""SubFore (seed 000): only foreground subvolumes of a CT ROI are masked and reconstructed."""

from common.methods.subfore.batch import MaskedImageBatch
from common.methods.subfore.loss import MaskedReconstructionLoss, masked_l1
from common.methods.subfore.model import SubForeModel
from common.methods.subfore.masking import SubvolumeForegroundMasker, SubvolumeMask, hu_to_intensity, subvolume_means

__all__ = [
    "MaskedImageBatch",
    "MaskedReconstructionLoss",
    "SubvolumeForegroundMasker",
    "SubvolumeMask",
    "SubForeModel",
    "hu_to_intensity",
    "masked_l1",
    "subvolume_means",
]
