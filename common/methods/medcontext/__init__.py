"""MedContext (seed 001): supervised segmentation plus masked-context reconstruction in the output
space, student / EMA teacher."""

from common.lazy import exports

#: name -> defining module, imported on first use (see :mod:`common.lazy`)
EXPORTS = {
    "context_loss": "common.methods.medcontext.loss",
    "find_patch_embedding": "common.methods.medcontext.model",
    "masked_fraction": "common.methods.medcontext.masking",
    "MedContextLoss": "common.methods.medcontext.loss",
    "MedContextModel": "common.methods.medcontext.model",
    "OUTPUT_KEYS": "common.methods.medcontext.model",
    "tube_mask": "common.methods.medcontext.masking",
}

__all__ = sorted(EXPORTS)
__getattr__, __dir__ = exports(__name__, EXPORTS)
