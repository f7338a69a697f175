"""Network helpers: encoder definitions for exporting, loading pretrained weights with a report, and
MedContext's student/EMA-teacher wrapper."""

from common.networks.medcontext import MedContextModel, MedContextOutput, find_patch_embedding
from common.networks.pretrained import (
    LoadReport,
    PretrainedLoadError,
    load_pretrained,
    read_state_dict,
    with_pretrained,
)
from common.networks.weights import (
    ENCODER_PREFIXES,
    encoder_prefixes,
    encoder_state_dict,
    unwrap,
)

__all__ = [
    "ENCODER_PREFIXES",
    "LoadReport",
    "MedContextModel",
    "MedContextOutput",
    "PretrainedLoadError",
    "encoder_prefixes",
    "encoder_state_dict",
    "find_patch_embedding",
    "load_pretrained",
    "read_state_dict",
    "unwrap",
    "with_pretrained",
]
