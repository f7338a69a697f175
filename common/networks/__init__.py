"""Network helpers: encoder definitions for exporting, and loading pretrained weights with a report."""

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
    "PretrainedLoadError",
    "encoder_prefixes",
    "encoder_state_dict",
    "load_pretrained",
    "read_state_dict",
    "unwrap",
    "with_pretrained",
]
