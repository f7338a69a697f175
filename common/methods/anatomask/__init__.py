"""AnatoMask (seed 002): the EMA teacher's reconstruction loss ranks patches for masking, on an
easy-to-hard schedule, with a SparK-style masked CNN encoder-decoder."""

from common.methods.anatomask.loss import AnatoMaskLoss
from common.methods.anatomask.masking import anatomical_mask, count_for_ratio, random_patch_mask, significance_ratio
from common.methods.anatomask.model import OUTPUT_KEYS, AnatoMaskModel
from common.methods.anatomask.patches import masked_patch_loss, normalized_patches, patch_targets, patchify, per_patch_mse
from common.methods.anatomask.sparse_unet import MaskedInstanceNorm3d, SparKDynUNet

__all__ = [
    "AnatoMaskLoss",
    "AnatoMaskModel",
    "OUTPUT_KEYS",
    "MaskedInstanceNorm3d",
    "SparKDynUNet",
    "anatomical_mask",
    "count_for_ratio",
    "masked_patch_loss",
    "normalized_patches",
    "patch_targets",
    "patchify",
    "per_patch_mse",
    "random_patch_mask",
    "significance_ratio",
]
