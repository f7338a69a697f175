"""Network helpers: encoder definitions for exporting, loading pretrained weights with a report, and
MedContext's and AnatoMask's student/EMA-teacher wrappers, SparK-style masked U-Net, CT-FM's
contrastive model and classifier."""

from common.networks.anatomask import AnatoMaskModel, AnatoMaskOutput
from common.networks.ctfm import ContrastiveModel, EncoderClassifier, PooledEncoder, ProjectionHead, pooled_features
from common.networks.ema import ema_update_
from common.networks.medcontext import (
    MedContextModel,
    MedContextOutput,
    find_patch_embedding,
)
from common.networks.pretrained import (
    LoadReport,
    PretrainedLoadError,
    load_pretrained,
    read_state_dict,
    with_pretrained,
)
from common.networks.sparse_unet import MaskedInstanceNorm3d, SparKDynUNet
from common.networks.weights import (
    ENCODER_PREFIXES,
    encoder_prefixes,
    encoder_state_dict,
    unwrap,
)

__all__ = [
    "ENCODER_PREFIXES",
    "AnatoMaskModel",
    "AnatoMaskOutput",
    "ContrastiveModel",
    "EncoderClassifier",
    "LoadReport",
    "MaskedInstanceNorm3d",
    "MedContextModel",
    "MedContextOutput",
    "PooledEncoder",
    "PretrainedLoadError",
    "ProjectionHead",
    "SparKDynUNet",
    "ema_update_",
    "encoder_prefixes",
    "encoder_state_dict",
    "find_patch_embedding",
    "load_pretrained",
    "pooled_features",
    "read_state_dict",
    "unwrap",
    "with_pretrained",
]
