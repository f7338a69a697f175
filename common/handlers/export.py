"""Export pretrained weights when training completes.

Writes, atomically and on the main process only:

- ``model.pt``: the full network ``state_dict`` (Model Zoo convention, what ``ckpt_export`` and
  MONAI Label load);
- ``encoder.pt``: the encoder tensors only (:func:`common.networks.encoder_state_dict`), keys as the
  downstream network names them;
- ``encoder.json``: what produced them (network class, tensor count, iteration, and the
  preprocessing the downstream bundle must match, e.g. the intensity range).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events
from torch import nn

from common.handlers.checkpoint import is_main_process
from common.io import atomic_torch_save, atomic_write_text
from common.networks.weights import encoder_state_dict, unwrap

logger = logging.getLogger(__name__)


class PretrainedWeightsExporter:
    """Save ``model.pt``, ``encoder.pt`` and ``encoder.json`` into ``models_dir`` at ``Events.COMPLETED``.

    Args:
        network: the trained network (DDP-wrapped is fine).
        models_dir: output folder (the bundle's ``models/``).
        preprocessing: settings recorded in ``encoder.json`` for downstream checks.
        model_filename / encoder_filename: file names.
    """

    def __init__(
        self,
        network: nn.Module,
        models_dir: str,
        preprocessing: dict[str, Any] | None = None,
        model_filename: str = "model.pt",
        encoder_filename: str = "encoder.pt",
    ) -> None:
        self.network = network
        self.models_dir = Path(models_dir)
        self.preprocessing = dict(preprocessing or {})
        self.model_filename = model_filename
        self.encoder_filename = encoder_filename

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine | None = None) -> None:
        if not is_main_process():
            return
        net = unwrap(self.network)
        atomic_torch_save(net.state_dict(), self.models_dir / self.model_filename)
        encoder = encoder_state_dict(net)
        atomic_torch_save(encoder, self.models_dir / self.encoder_filename)
        info = {
            "network": type(net).__name__,
            "num_encoder_tensors": len(encoder),
            "iteration": engine.state.iteration if engine is not None else None,
            "preprocessing": self.preprocessing,
        }
        atomic_write_text(self.models_dir / Path(self.encoder_filename).with_suffix(".json"), json.dumps(info, indent=2))
        logger.info(
            f"Exported {self.models_dir / self.model_filename} and {self.models_dir / self.encoder_filename} "
            f"({len(encoder)} encoder tensors of {type(net).__name__})."
        )
