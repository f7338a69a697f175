"""Losses that MONAI does not provide."""

from common.losses.masked_reconstruction import (
    MaskedReconstructionLoss,
    masked_l1,
    pack_target,
    unpack_target,
)
from common.losses.medcontext import MedContextLoss, context_loss

__all__ = ["MaskedReconstructionLoss", "MedContextLoss", "context_loss", "masked_l1", "pack_target", "unpack_target"]
