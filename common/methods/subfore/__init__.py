"""SubFore (seed 000): only foreground subvolumes of a CT ROI are masked and reconstructed."""

from common.lazy import exports

#: name -> defining module, imported on first use (see :mod:`common.lazy`)
EXPORTS = {
    "hu_to_intensity": "common.methods.subfore.masking",
    "masked_l1": "common.methods.subfore.loss",
    "MaskedImageBatch": "common.methods.subfore.batch",
    "MaskedReconstructionLoss": "common.methods.subfore.loss",
    "SubForeModel": "common.methods.subfore.model",
    "subvolume_means": "common.methods.subfore.masking",
    "SubvolumeForegroundMasker": "common.methods.subfore.masking",
    "SubvolumeMask": "common.methods.subfore.masking",
}

__all__ = sorted(EXPORTS)
__getattr__, __dir__ = exports(__name__, EXPORTS)
