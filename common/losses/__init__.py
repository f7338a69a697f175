"""Losses that MONAI does not provide."""

from common.losses.masked_reconstruction import (
    MaskedReconstructionLoss,
    masked_l1,
    pack_target,
    unpack_target,
)

__all__ = ["MaskedReconstructionLoss", "masked_l1", "pack_target", "unpack_target"]
