"""Keep the best model by a validation metric, atomically, across interrupted runs.

MONAI's ``CheckpointSaver(save_key_metric=True)`` keeps the best score in memory only: after a resume
the first validation is "best" again and can overwrite a better ``model.pt``. This handler's best
score is part of the training checkpoint (it has ``state_dict``/``load_state_dict``), so a resumed run
only replaces ``model.pt`` with a model that really is better.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events
from torch import nn

from common.handlers.checkpoint import is_main_process
from common.io import atomic_torch_save, atomic_write_text
from common.networks.weights import unwrap
from common.runs.provenance import record_weights

logger = logging.getLogger(__name__)


class BestModelSaver:
    """After each validation, save ``network``'s weights to ``models_dir/model.pt`` if ``metric`` improved.

    Attach to the evaluator. Writes ``model.pt`` (plain ``state_dict``, the Model Zoo layout), its
    provenance record ``model.json`` (:mod:`common.runs.provenance`) and ``best_metric.json`` (metric
    name, value, and the training epoch: MONAI's ``ValidationHandler`` runs the evaluator with the
    trainer's epoch as its ``state.epoch``).

    Args:
        network: the trained network (DDP/DataParallel unwrapped).
        models_dir: destination folder.
        metric: key in ``evaluator.state.metrics``.
        mode: ``"max"`` (Dice) or ``"min"`` (a distance).
        filename: weights file name.
        preprocessing: the bundle's ``preprocessing_settings``, recorded for the contract check on load.
        run: the run's :class:`common.runs.RunIdentity`, recorded.
        kind: what the record calls the file (``best model``, ``best teacher``).
    """

    def __init__(
        self, network: nn.Module, models_dir: str, metric: str, mode: str = "max", filename: str = "model.pt",
        preprocessing: dict[str, Any] | None = None, run: Any = None, kind: str = "best model",
    ) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.network = network
        self.models_dir = Path(models_dir)
        self.metric = metric
        self.mode = mode
        self.filename = filename
        self.preprocessing = dict(preprocessing or {})
        self.run = run
        self.kind = kind
        self.best: float | None = None
        self.best_epoch: int | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch = state.get("best"), state.get("best_epoch")

    def _improved(self, value: float) -> bool:
        if math.isnan(value):
            return False
        return self.best is None or (value > self.best if self.mode == "max" else value < self.best)

    def __call__(self, engine: Engine) -> None:
        if self.metric not in engine.state.metrics:
            raise KeyError(f"BestModelSaver: metric '{self.metric}' is not computed by the evaluator (has: {sorted(engine.state.metrics)})")
        value = float(engine.state.metrics[self.metric])
        if not self._improved(value):
            logger.info(f"{self.metric} {value:.4f} (best {self.best:.4f} at epoch {self.best_epoch})" if self.best is not None else f"{self.metric} {value}")
            return
        self.best = value
        self.best_epoch = engine.state.epoch
        if not is_main_process():
            return
        net = unwrap(self.network)
        path = atomic_torch_save(net.state_dict(), self.models_dir / self.filename)
        training = {"epoch": self.best_epoch, "best_metric": {"name": self.metric, "value": value, "mode": self.mode}}
        record_weights(path, self.kind, type(net).__name__, self.preprocessing, self.run, training)
        info = {"metric": self.metric, "value": value, "epoch": self.best_epoch}
        atomic_write_text(self.models_dir / "best_metric.json", json.dumps(info, indent=2) + "\n")
        logger.info(f"New best {self.metric} {value:.4f} at epoch {self.best_epoch}: saved {os.path.join(self.models_dir, self.filename)}")
