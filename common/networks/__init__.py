"""Network helpers: encoder definitions for exporting and loading pretrained weights."""

from common.networks.weights import ENCODER_PREFIXES, encoder_prefixes, encoder_state_dict, unwrap

__all__ = ["ENCODER_PREFIXES", "encoder_prefixes", "encoder_state_dict", "unwrap"]
