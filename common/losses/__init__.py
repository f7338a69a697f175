"""Losses that MONAI does not provide."""

from common.losses.anatomask import AnatoMaskLoss
from common.losses.contrastive import NTXentLoss, nt_xent
from common.losses.masked_reconstruction import (
    MaskedReconstructionLoss,
    masked_l1,
    pack_target,
    unpack_target,
)
from common.losses.medcontext import MedContextLoss, context_loss
from common.losses.patch_reconstruction import (
    masked_patch_loss,
    normalized_patches,
    patch_targets,
    patchify,
    per_patch_mse,
)

__all__ = [
    "AnatoMaskLoss",
    "MaskedReconstructionLoss",
    "MedContextLoss",
    "NTXentLoss",
    "context_loss",
    "masked_l1",
    "masked_patch_loss",
    "normalized_patches",
    "nt_xent",
    "pack_target",
    "patch_targets",
    "patchify",
    "per_patch_mse",
    "unpack_target",
]
