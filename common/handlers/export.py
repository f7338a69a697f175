"""Export pretrained weights when training completes.

Writes, atomically and on the main process only:

- ``model.pt``: the full network ``state_dict`` (Model Zoo convention, what ``ckpt_export`` and
  MONAI Label load);
- ``encoder.pt``: the encoder tensors only (:func:`common.networks.encoder_state_dict`), keys as the
  downstream network names them;
- ``model.json`` / ``encoder.json``: their provenance records (:mod:`common.runs.provenance`): the
  run that made them, the preprocessing a downstream bundle must match, iterations, last loss,
  cases, versions.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events
from torch import nn

from common.handlers.checkpoint import is_main_process
from common.io import atomic_torch_save
from common.networks.weights import encoder_state_dict, unwrap
from common.runs.provenance import record_weights

logger = logging.getLogger(__name__)


class PretrainedWeightsExporter:
    """Save ``model.pt``, ``encoder.pt`` and their records into ``models_dir`` at ``Events.COMPLETED``.

    Args:
        network: the trained network (DDP-wrapped is fine).
        models_dir: output folder (the bundle's ``models/``).
        preprocessing: the bundle's ``preprocessing_settings``, recorded for downstream checks.
        model_filename / encoder_filename: file names (records: the same names with ``.json``).
        run: the run's :class:`common.runs.RunIdentity` (its fingerprint, cases and starting weights go
            into the records).
        kinds: what the two records call the files (e.g. an EMA teacher's export).
    """

    def __init__(
        self,
        network: nn.Module,
        models_dir: str,
        preprocessing: dict[str, Any] | None = None,
        model_filename: str = "model.pt",
        encoder_filename: str = "encoder.pt",
        run: Any = None,
        kinds: tuple[str, str] = ("full network", "encoder"),
    ) -> None:
        self.network = network
        self.models_dir = Path(models_dir)
        self.preprocessing = dict(preprocessing or {})
        self.model_filename = model_filename
        self.encoder_filename = encoder_filename
        self.run = run
        self.kinds = tuple(kinds)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine | None = None) -> None:
        if not is_main_process():
            return
        net = unwrap(self.network)
        model_path = atomic_torch_save(net.state_dict(), self.models_dir / self.model_filename)
        encoder = encoder_state_dict(net)
        encoder_path = atomic_torch_save(encoder, self.models_dir / self.encoder_filename)
        training = training_state(engine)
        name = type(net).__name__
        record_weights(model_path, self.kinds[0], name, self.preprocessing, self.run, training)
        record_weights(encoder_path, self.kinds[1], name, self.preprocessing, self.run, {**training, "num_encoder_tensors": len(encoder)})
        logger.info(
            f"Exported {self.models_dir / self.model_filename} and {self.models_dir / self.encoder_filename} "
            f"({len(encoder)} encoder tensors of {type(net).__name__})."
        )


def training_state(engine: Engine | None) -> dict[str, Any]:
    """Iteration, epoch and last loss of a trainer, for provenance records."""
    if engine is None:
        return {}
    out: dict[str, Any] = {"iteration": engine.state.iteration, "epoch": engine.state.epoch}
    output = engine.state.output
    loss = output.get("loss") if isinstance(output, dict) else None
    if loss is not None:
        try:
            out["last_loss"] = float(loss.detach()) if hasattr(loss, "detach") else float(loss)
        except (TypeError, ValueError):
            pass
    return out
