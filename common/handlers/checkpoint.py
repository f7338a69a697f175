"""Atomic training checkpoints and resume-from-newest.

MONAI's ``CheckpointSaver`` writes in place (``atomic=False``), so a run killed mid-write can leave a
truncated newest checkpoint, and Ignite's ``Checkpoint`` removes a same-named file before rewriting
it. Here every checkpoint is written to a temporary file in the same folder, flushed, and renamed over
its final name (``os.replace`` is atomic on POSIX), so the newest file is always a complete one.
Restarting the same command finds it and continues from its iteration.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint
from torch.optim.lr_scheduler import LRScheduler

from common.distributed import is_main_process
from common.io import atomic_torch_save
from common.runs.checkpoints import CHECKPOINT_NAME, latest_checkpoint, list_checkpoints

logger = logging.getLogger(__name__)

__all__ = ["AtomicCheckpointSaver", "CHECKPOINT_NAME", "ResumeFromLatest", "is_main_process", "latest_checkpoint", "list_checkpoints"]


def _state_dict(obj: Any) -> Any:
    if isinstance(obj, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)):
        obj = obj.module
    return obj.state_dict()


class AtomicCheckpointSaver:
    """Save ``save_dict`` every ``interval`` iterations and at the end of training, atomically.

    Args:
        save_dir: folder for ``checkpoint_<iteration>.pt`` files.
        save_dict: objects with ``state_dict()`` (model, optimizer, lr_scheduler, the trainer itself
            for epoch/iteration); DDP/DataParallel models are unwrapped.
        interval: iterations (or epochs, see ``epoch_level``) between checkpoints.
        n_saved: newest checkpoints kept; older ones are deleted after a new one is complete
            (``None`` keeps all).
        save_final: also save when the run completes (unless that iteration was just saved).
        epoch_level: count ``interval`` in epochs and save at epoch end, i.e. after a validation that
            runs on the same event (attach the saver after the validation handler), so a resumed run
            does not skip it.
    """

    def __init__(
        self,
        save_dir: str,
        save_dict: Mapping[str, Any],
        interval: int = 100,
        n_saved: int | None = 2,
        save_final: bool = True,
        epoch_level: bool = False,
    ) -> None:
        if interval < 1:
            raise ValueError(f"checkpoint interval must be >= 1, got {interval}")
        if n_saved is not None and n_saved < 1:
            raise ValueError(f"n_saved must be >= 1 or None, got {n_saved}")
        self.save_dir = Path(save_dir)
        self.save_dict = dict(save_dict)
        self.interval = interval
        self.n_saved = n_saved
        self.save_final = save_final
        self.epoch_level = epoch_level
        self.last_saved_iteration: int | None = None

    def attach(self, engine: Engine) -> None:
        event = Events.EPOCH_COMPLETED if self.epoch_level else Events.ITERATION_COMPLETED
        engine.add_event_handler(event(every=self.interval), self.save)
        if self.save_final:
            engine.add_event_handler(Events.COMPLETED, self.save)

    def save(self, engine: Engine) -> Path | None:
        iteration = engine.state.iteration
        if not is_main_process() or iteration == self.last_saved_iteration:
            return None
        path = self.save_dir / CHECKPOINT_NAME.format(iteration=iteration)
        atomic_torch_save({k: _state_dict(v) for k, v in self.save_dict.items()}, path)
        self.last_saved_iteration = iteration
        logger.info(f"Saved checkpoint {path}")
        if self.n_saved is not None:
            for _, old in list_checkpoints(self.save_dir)[: -self.n_saved]:
                old.unlink(missing_ok=True)
        return path


def schedule_at(scheduler: LRScheduler, iteration: int) -> None:
    """Put ``scheduler`` (as configured) at step ``iteration``: its learning rate is that of that step.

    A learning-rate schedule is a function of the step, so checkpoints do not store it: a resumed run
    builds the configured one and moves it to the checkpoint's iteration. A run continued to a longer
    ``num_steps`` thereby follows the schedule planned for the new length, with no special code.
    """
    if iteration <= 0:
        return
    scheduler.last_epoch = iteration - 1
    with warnings.catch_warnings():  # torch warns when a scheduler steps before the (restored) optimizer has
        warnings.simplefilter("ignore", UserWarning)
        scheduler.step()


class ResumeFromLatest:
    """At the start of a run, load the newest checkpoint in ``checkpoint_dir`` (if any) into
    ``load_dict`` -- model, optimizer, scheduler, trainer state (iteration, epoch), random generators,
    best metric, skip counters -- so training continues from its iteration.

    Learning-rate schedulers are not in checkpoints: ``schedulers`` are put at the loaded iteration
    (:func:`schedule_at`). Random generators are not either: they are re-seeded per iteration
    (:class:`common.handlers.IterationSeed`) and per sample (:mod:`common.data.sampler`).

    Loads with ``torch.load(weights_only=True)`` (no code in a checkpoint runs). A newest checkpoint
    that cannot be read (a disk fault; a killed write never produces one, see the saver) is reported
    and the next older one is used. Objects the checkpoint lacks (one written by an older version)
    keep their fresh state, with a warning. Temporary files of writes cut short by a kill are removed.

    Args:
        checkpoint_dir: folder written by :class:`AtomicCheckpointSaver`.
        load_dict: the same objects as the saver's ``save_dict``.
        map_location: device mapping for ``torch.load`` (e.g. the training device).
        enabled: ``False`` starts from scratch; it refuses to start if ``checkpoint_dir`` already
            holds checkpoints, since the new run would prune them (nothing written is lost silently).
        schedulers: learning-rate schedulers to put at the loaded iteration.
    """

    def __init__(self, checkpoint_dir: str, load_dict: Mapping[str, Any], map_location: Any = None, enabled: bool = True,
                 schedulers: Sequence[LRScheduler] = ()) -> None:
        self.checkpoint_dir = checkpoint_dir
        self.load_dict = dict(load_dict)
        self.map_location = map_location
        self.enabled = enabled
        self.schedulers = list(schedulers)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)

    def remove_stale_temporaries(self) -> list[Path]:
        """Delete ``.checkpoint_*.tmp`` files left by writes a kill cut short (main process only)."""
        d = Path(self.checkpoint_dir)
        if not d.is_dir() or not is_main_process():
            return []
        stale = [p for p in d.glob(".checkpoint_*.tmp") if p.is_file()]
        for p in stale:
            p.unlink(missing_ok=True)
        if stale:
            logger.info(f"Removed {len(stale)} temporary file(s) of interrupted checkpoint writes in {d}.")
        return stale

    def __call__(self, engine: Engine) -> None:
        self.remove_stale_temporaries()
        found = list_checkpoints(self.checkpoint_dir)
        if not self.enabled:
            if found:
                raise FileExistsError(
                    f"resume is disabled but {self.checkpoint_dir} holds checkpoints of an earlier run (newest: {found[-1][1].name}); "
                    "set another checkpoint_dir, move them away, or enable resume"
                )
            return
        if not found:
            logger.info(f"No checkpoint in {self.checkpoint_dir}: starting from iteration 0.")
            return
        for _, path in reversed(found):
            try:
                checkpoint = torch.load(path, map_location=self.map_location, weights_only=True)
            except Exception as e:  # noqa: BLE001 - try the next older one; the error is logged
                logger.error(f"cannot read checkpoint {path} ({type(e).__name__}: {e}); trying the next older one")
                continue
            self._load(engine, checkpoint, path)
            return
        raise RuntimeError(f"none of the {len(found)} checkpoints in {self.checkpoint_dir} can be read (errors above); move them away to start afresh")

    def _load(self, engine: Engine, checkpoint: Mapping[str, Any], path: Path) -> None:
        missing = [k for k in self.load_dict if k not in checkpoint]
        if missing:
            logger.warning(f"checkpoint {path.name} has no {missing} (written by an older version): those start fresh")
        prior_max_epochs = engine.state.max_epochs
        Checkpoint.load_objects(to_load={k: v for k, v in self.load_dict.items() if k in checkpoint}, checkpoint=dict(checkpoint))
        for scheduler in self.schedulers:
            schedule_at(scheduler, engine.state.iteration)
        if prior_max_epochs is not None and engine.state.epoch > prior_max_epochs:
            raise ValueError(
                f"checkpoint {path} is at epoch {engine.state.epoch}, past this run's {prior_max_epochs} epochs: "
                "raise num_steps to train further, or use a new checkpoint_dir"
            )
        engine.state.max_epochs = prior_max_epochs  # the configured length wins (a longer schedule continues)
        logger.info(f"Resumed from {path} at iteration {engine.state.iteration} (epoch {engine.state.epoch}).")
