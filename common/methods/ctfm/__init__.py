"""CT-FM (seed 003): intra-sample SimCLR of a SegResEncoder, and the classifier / pooled encoder
used downstream."""

from common.lazy import exports

#: name -> defining module, imported on first use (see :mod:`common.lazy`)
EXPORTS = {
    "ContrastiveModel": "common.methods.ctfm.model",
    "EncoderClassifier": "common.methods.ctfm.model",
    "IntraSampleViewsd": "common.methods.ctfm.views",
    "RandIsotropicResizedCrop": "common.methods.ctfm.views",
    "nt_xent": "common.methods.ctfm.loss",
    "NTXentLoss": "common.methods.ctfm.loss",
    "PooledEncoder": "common.methods.ctfm.model",
    "ProjectionHead": "common.methods.ctfm.model",
}

__all__ = sorted(EXPORTS)
__getattr__, __dir__ = exports(__name__, EXPORTS)
