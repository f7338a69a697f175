"""Network helpers shared by every bundle: encoder definitions for exporting, loading pretrained
weights with a report, EMA updates. The methods' model wrappers live in :mod:`common.methods`."""

from common.networks.ema import ema_update_, frozen_copy
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
    input_channels,
    unwrap,
)

__all__ = [
    "ENCODER_PREFIXES",
    "LoadReport",
    "PretrainedLoadError",
    "ema_update_",
    "encoder_prefixes",
    "encoder_state_dict",
    "frozen_copy",
    "input_channels",
    "load_pretrained",
    "read_state_dict",
    "unwrap",
    "with_pretrained",
]
