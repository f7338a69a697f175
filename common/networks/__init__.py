"""Network helpers shared by every bundle: encoder definitions for exporting, loading pretrained
weights with a report, EMA updates. The methods' model wrappers live in :mod:`common.methods`."""

from common.lazy import exports

#: name -> defining module, imported on first use (see :mod:`common.lazy`)
EXPORTS = {
    "ema_update_": "common.networks.ema",
    "ENCODER_PREFIXES": "common.networks.weights",
    "encoder_prefixes": "common.networks.weights",
    "encoder_state_dict": "common.networks.weights",
    "freeze": "common.networks.weights",
    "frozen_copy": "common.networks.ema",
    "input_channels": "common.networks.weights",
    "load_pretrained": "common.networks.pretrained",
    "LoadReport": "common.networks.pretrained",
    "PretrainedLoadError": "common.networks.pretrained",
    "read_state_dict": "common.networks.pretrained",
    "unwrap": "common.networks.weights",
    "with_pretrained": "common.networks.pretrained",
}

__all__ = sorted(EXPORTS)
__getattr__, __dir__ = exports(__name__, EXPORTS)
