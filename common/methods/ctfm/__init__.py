"""CT-FM (seed 003): intra-sample SimCLR of a SegResEncoder, and the classifier / pooled encoder
used downstream."""

from common.methods.ctfm.loss import NTXentLoss, nt_xent
from common.methods.ctfm.model import ContrastiveModel, EncoderClassifier, PooledEncoder, ProjectionHead, pooled_features
from common.methods.ctfm.views import IntraSampleViewsd

__all__ = ["ContrastiveModel", "EncoderClassifier", "IntraSampleViewsd", "NTXentLoss", "PooledEncoder", "ProjectionHead", "nt_xent", "pooled_features"]
