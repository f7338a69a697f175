"""Pre-emption: on a signal, checkpoint the current iteration, record it, and exit with :data:`PREEMPTED_EXIT_CODE`.

A cluster scheduler stops a job with a signal some time before it kills it (SLURM: ``SIGTERM`` at the
time limit, or the signal chosen with ``--signal``). Without this, everything since the last
``checkpoint_interval`` is lost. With it, the run finishes the iteration in progress, every rank
agrees to stop at the same iteration, rank 0 writes a checkpoint of that iteration (the atomic saver
of :mod:`common.handlers.checkpoint`) and ``<checkpoint_dir>/preempted.json``, and the process exits
with code 75 (``EX_TEMPFAIL``: "try again"). The same command, run again, resumes from that
checkpoint and -- the data stream and the generators being functions of the position
(:mod:`common.data.sampler`, :class:`common.handlers.IterationSeed`) -- trains exactly what the
uninterrupted run would have trained (tested on the CPU).

Fills a gap of Ignite's ``Checkpoint`` and MONAI's ``CheckpointSaver``: they save on events, not on a
signal, and nothing there coordinates the ranks' stop. A second signal while the checkpoint is being
written ends the process at once (the signal's default action).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events

from common.distributed import barrier, is_initialized, is_main_process
from common.io import atomic_write_text
from common.runs.checkpoints import CHECKPOINT_NAME

logger = logging.getLogger(__name__)

#: exit status of a pre-empted run (BSD ``EX_TEMPFAIL``): the work is not done; run the same command again
PREEMPTED_EXIT_CODE = 75
RECORD = "preempted.json"


def parse_signal(name: str | int | None) -> signal.Signals | None:
    """``"SIGTERM"``, ``"TERM"``, ``"SIGUSR1"``, ``15`` ... -> the signal; ``""``/``"none"``/``None`` -> None (off)."""
    if name is None or (isinstance(name, str) and name.strip().lower() in ("", "none", "off", "false")):
        return None
    if isinstance(name, int) or str(name).isdigit():
        return signal.Signals(int(name))
    text = str(name).strip().upper()
    text = text if text.startswith("SIG") else "SIG" + text
    if not hasattr(signal.Signals, text):
        raise ValueError(f"preempt_signal: {name!r} is not a signal name (e.g. SIGTERM, SIGUSR1), or 'none' to turn pre-emption handling off")
    return signal.Signals[text]


class PreemptionCheckpoint:
    """Save and stop on ``signal`` (see the module docstring).

    Args:
        saver: the run's checkpoint saver (its ``save(engine)`` writes atomically, on rank 0 only).
        signal: the signal to handle (name or number); ``"none"`` turns the handling off.
        record_dir: where ``preempted.json`` goes (the checkpoint folder).
    """

    def __init__(self, saver: Any, signal: str | int | None = "SIGTERM", record_dir: str | os.PathLike = ".") -> None:
        self.saver = saver
        self.signal = parse_signal(signal)
        self.record_dir = Path(record_dir)
        self.requested = False
        self.preempted_at: int | None = None
        self._previous: Any = None

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.requested:  # asked twice: stop now, as the signal would without this handler
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.requested = True
        logger.warning(f"{signal.Signals(signum).name} received: checkpointing at the end of this iteration, then exiting "
                       f"with code {PREEMPTED_EXIT_CODE} (send it again to stop at once).")

    def attach(self, engine: Engine) -> None:
        """Install the signal handler (main thread only) and check for a stop after every iteration."""
        if self.signal is None:
            return
        if threading.current_thread() is not threading.main_thread():  # e.g. a MONAI Label worker thread: Python allows
            logger.info("pre-emption handling is off: the run is not in the main thread, where signals are delivered")
            return
        if self.record_dir.joinpath(RECORD).is_file() and is_main_process():
            previous = json.loads(self.record_dir.joinpath(RECORD).read_text())
            logger.info(f"This run was pre-empted at iteration {previous.get('iteration')} ({previous.get('signal')}, {previous.get('time')}).")
            self.record_dir.joinpath(RECORD).unlink()
        self._previous = signal.signal(self.signal, self._on_signal)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._maybe_stop)
        engine.add_event_handler(Events.COMPLETED | Events.TERMINATE, self._restore)

    def _agreed(self) -> bool:
        """Whether any rank was signalled (every rank stops at the same iteration)."""
        if not is_initialized():
            return self.requested
        import torch.distributed as dist

        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
        flag = torch.tensor([1.0 if self.requested else 0.0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item() > 0)

    def _maybe_stop(self, engine: Engine) -> None:
        if not self._agreed():
            return
        iteration = engine.state.iteration
        path = self.saver.save(engine) or Path(self.saver.save_dir) / CHECKPOINT_NAME.format(iteration=iteration)  # None: just saved
        barrier()  # the other ranks wait for rank 0's checkpoint before anyone exits (torchrun stops them all on the first exit)
        if is_main_process():
            record = {"iteration": iteration, "epoch": engine.state.epoch, "signal": self.signal.name if self.signal else None,
                      "checkpoint": str(path) if path else None, "time": time.strftime("%Y-%m-%d %H:%M:%S"), "exit_code": PREEMPTED_EXIT_CODE}
            atomic_write_text(self.record_dir / RECORD, json.dumps(record, indent=1) + "\n")
            logger.warning(f"Pre-empted: checkpoint of iteration {iteration} written ({path}); run the same command again to resume.")
        self.preempted_at = iteration
        engine.terminate(skip_completed=True)  # no final validation, export or 'completed' checkpoint: the run is not done

    def _restore(self, engine: Engine | None = None) -> None:
        if self._previous is not None:
            signal.signal(self.signal, self._previous)
            self._previous = None

    def exit_if_preempted(self) -> None:
        """After ``trainer.run()``: exit with :data:`PREEMPTED_EXIT_CODE` if the run stopped on the signal."""
        self._restore()
        if self.preempted_at is not None:
            raise SystemExit(PREEMPTED_EXIT_CODE)
