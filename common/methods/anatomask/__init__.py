"""AnatoMask (seed 002): the EMA teacher's reconstruction loss ranks patches for masking, on an
easy-to-hard schedule, with a SparK-style masked CNN encoder-decoder."""

from common.lazy import exports

#: name -> defining module, imported on first use (see :mod:`common.lazy`)
EXPORTS = {
    "AnatoMaskLoss": "common.methods.anatomask.loss",
    "AnatoMaskModel": "common.methods.anatomask.model",
    "anatomical_mask": "common.methods.anatomask.masking",
    "count_for_ratio": "common.methods.anatomask.masking",
    "COUNT_RULES": "common.methods.anatomask.masking",
    "masked_count": "common.methods.anatomask.masking",
    "top_count": "common.methods.anatomask.masking",
    "masked_patch_loss": "common.methods.anatomask.patches",
    "MaskedInstanceNorm3d": "common.methods.anatomask.sparse_unet",
    "normalized_patches": "common.methods.anatomask.patches",
    "OUTPUT_KEYS": "common.methods.anatomask.model",
    "patch_targets": "common.methods.anatomask.patches",
    "patchify": "common.methods.anatomask.patches",
    "per_patch_mse": "common.methods.anatomask.patches",
    "random_patch_mask": "common.methods.anatomask.masking",
    "R_SCHEDULES": "common.methods.anatomask.masking",
    "significance_ratio": "common.methods.anatomask.masking",
    "SparKDynUNet": "common.methods.anatomask.sparse_unet",
}

__all__ = sorted(EXPORTS)
__getattr__, __dir__ = exports(__name__, EXPORTS)
