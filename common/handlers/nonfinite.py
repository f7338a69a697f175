"""Stop, or skip, a training step whose loss is NaN or infinite, before it reaches the weights.

MONAI's ``SupervisedTrainer`` fires ``IterationEvents.LOSS_COMPLETED`` after the loss and before
``backward()``. There the loss is checked:

- ``mode="stop"`` (default): raise :class:`NonFiniteLossError` naming the epoch, iteration and the
  batch's cases. The weights were not updated with it and no checkpoint is written on an exception,
  so the newest checkpoint on disk is the last good state: rerunning the command resumes from it.
- ``mode="skip"``: the step is dropped (gradients removed before ``optimizer.step()``; with AMP the
  ``GradScaler`` already skips steps with non-finite gradients) and counted in ``skipped``; more than
  ``max_skips`` skipped steps stop the run as above. The forward pass of the bad batch has already
  updated the network's buffers (batch-norm running statistics, step counters), so in this mode the
  buffers are copied at the start of every iteration and put back on a skip.

Under DDP the verdict is all-reduced, so every rank stops or skips the same step (a rank that
stopped alone would leave the others waiting in the gradient all-reduce). Ignite's
``TerminateOnNan`` ends the run quietly after the update; this raises before it, with the cases.
"""

from __future__ import annotations

import logging

import torch
import torch.distributed as dist
from ignite.engine import Engine, Events
from monai.engines.utils import IterationEvents
from monai.utils import CommonKeys

from common.data.cases import batch_cases

logger = logging.getLogger(__name__)

MODES = ("stop", "skip")


class NonFiniteLossError(FloatingPointError):
    """A training loss was NaN or infinite; the message names where and on which cases."""


class NonFiniteLossGuard:
    """See the module docstring. Attach to the trainer.

    Args:
        mode: ``"stop"`` or ``"skip"``.
        max_skips: with ``"skip"``, how many steps may be dropped before the run stops.
    """

    def __init__(self, mode: str = "stop", max_skips: int = 10) -> None:
        if mode not in MODES:
            raise ValueError(f"on_nonfinite_loss must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.max_skips = max_skips
        self.skipped = 0
        self._drop = False
        self._saved: list[torch.Tensor] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(IterationEvents.LOSS_COMPLETED, self.check)
        engine.add_event_handler(IterationEvents.BACKWARD_COMPLETED, self.drop_gradients)
        if self.mode == "skip":
            engine.add_event_handler(Events.ITERATION_STARTED, self.save_buffers)

    def save_buffers(self, engine: Engine) -> None:
        self._saved = [b.detach().clone() for b in engine.network.buffers()]

    def check(self, engine: Engine) -> None:
        loss = engine.state.output[CommonKeys.LOSS]
        self._drop = False
        finite = torch.isfinite(loss.detach()).all().float()
        if dist.is_available() and dist.is_initialized():  # every rank stops or skips together (no rank left waiting in all-reduce)
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        if bool(finite > 0):
            return
        cases = batch_cases(engine.state.batch)
        where = (
            f"non-finite training loss ({float(loss.detach().float().mean())}) at epoch {engine.state.epoch}, iteration {engine.state.iteration}"
            f"{' on cases ' + ', '.join(cases) if cases else ' (case names not tracked in this pipeline)'}"
        )
        if self.mode == "stop" or self.skipped >= self.max_skips:
            why = f"after {self.skipped} skipped steps (max_nonfinite_skips {self.max_skips})" if self.mode == "skip" else "on_nonfinite_loss is 'stop'"
            raise NonFiniteLossError(
                f"{where}; stopping ({why}). The weights were not updated with this loss and the newest checkpoint is the last good "
                "state: check those cases (NaN/Inf voxels, empty crops), lower the learning rate, or set on_nonfinite_loss 'skip'; "
                "rerunning the same command resumes."
            )
        self.skipped += 1
        self._drop = True
        logger.warning(f"{where}: step skipped ({self.skipped}/{self.max_skips}).")

    def drop_gradients(self, engine: Engine) -> None:
        """Undo a skipped step after its backward pass: restore the buffers its forward pass changed, and
        remove the gradients so ``optimizer.step()`` leaves every parameter as it was (under AMP the scaler
        skips steps with non-finite gradients itself, and needs the gradients to see them)."""
        if not self._drop:
            return
        with torch.no_grad():
            for buffer, saved in zip(engine.network.buffers(), self._saved):
                buffer.copy_(saved)
        if not getattr(engine, "amp", False):
            engine.optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> dict[str, int]:
        return {"skipped": self.skipped}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.skipped = int(state.get("skipped", 0))
