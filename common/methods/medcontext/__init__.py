"""MedContext (seed 001): supervised segmentation plus masked-context reconstruction in the output
space, student / EMA teacher."""

from common.methods.medcontext.loss import MedContextLoss, context_loss
from common.methods.medcontext.masking import masked_fraction, tube_mask
from common.methods.medcontext.model import OUTPUT_KEYS, MedContextModel, find_patch_embedding

__all__ = ["MedContextLoss", "MedContextModel", "OUTPUT_KEYS", "context_loss", "find_patch_embedding", "masked_fraction", "tube_mask"]
