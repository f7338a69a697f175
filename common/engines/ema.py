"""The EMA teacher's momentum schedule and the Ignite handler that applies it.

Schedule (DINO's cosine scheduler, which the MedContext reference uses): an optional linear warmup
from ``warmup_start`` to ``base`` over ``warmup_steps``, then

    m(i) = final + (base - final) * (1 + cos(pi * i / n)) / 2,   i = 0 .. n-1,  n = total_steps - warmup_steps

so ``m`` rises from ``base`` (0.996) towards ``final`` (1).

Two ways to index it (``mode``):

- ``"global_iteration"`` (default, the paper's intent): after every iteration, with the global
  iteration number, no warmup.
- ``"epoch_end_batch_index"`` (the reference code): once per epoch, after its last batch, with that
  batch's index *within the epoch* into a schedule that starts with a 50-epoch warmup from 0. With
  BTCV's 18 training cases this gives m = 0.996 * 17 / 899 = 0.019 at every epoch: the teacher is in
  effect a copy of the last epoch's student.
"""

from __future__ import annotations

import math

from ignite.engine import Engine, Events

from common.networks.weights import unwrap

MODES = ("global_iteration", "epoch_end_batch_index")


def linear_ramp_momentum(index: int, total_steps: int, start: float = 0.999, end: float = 0.9999, ramp_fraction: float = 0.25) -> float:
    """AnatoMask's teacher decay: linear from ``start`` to ``end`` over the first ``ramp_fraction`` of
    ``total_steps``, then ``end``."""
    ramp = max(1, round(ramp_fraction * total_steps))
    return end if index >= ramp else start + (end - start) * max(index, 0) / ramp


def cosine_momentum(index: int, total_steps: int, base: float = 0.996, final: float = 1.0, warmup_steps: int = 0, warmup_start: float = 0.0) -> float:
    """Value ``index`` (0-based) of the momentum schedule of length ``total_steps`` (see the module docstring)."""
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(f"need 0 <= warmup_steps ({warmup_steps}) < total_steps ({total_steps})")
    index = min(max(index, 0), total_steps - 1)
    if index < warmup_steps:  # np.linspace(warmup_start, base, warmup_steps)[index]
        return warmup_start + (base - warmup_start) * (index / (warmup_steps - 1) if warmup_steps > 1 else 1.0)
    i, n = index - warmup_steps, total_steps - warmup_steps
    return final + 0.5 * (base - final) * (1.0 + math.cos(math.pi * i / n))


class TeacherEMAUpdate:
    """Update ``model``'s teacher (a :class:`common.methods.medcontext.MedContextModel`, DDP-wrapped or not) during training.

    Args:
        model: the student/teacher wrapper.
        total_steps: training iterations (the schedule's length).
        base, final: momentum at the start and the end.
        mode: ``"global_iteration"`` or ``"epoch_end_batch_index"`` (see the module docstring).
        warmup_epochs: for ``"epoch_end_batch_index"``: the reference's warmup, in epochs (50).
        schedule: ``(index, total_steps) -> momentum`` used instead of the cosine in
            ``"global_iteration"`` mode (e.g. :func:`linear_ramp_momentum`).
    """

    def __init__(
        self, model, total_steps: int, base: float = 0.996, final: float = 1.0, mode: str = "global_iteration", warmup_epochs: int = 50, schedule=None
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"ema mode must be one of {MODES}, got {mode!r}")
        self.model = model
        self.total_steps = total_steps
        self.base, self.final = base, final
        self.mode = mode
        self.warmup_epochs = warmup_epochs
        self.schedule = schedule
        self.momentum: float | None = None  # last value applied (for logging)

    def attach(self, engine: Engine) -> None:
        event = Events.ITERATION_COMPLETED if self.mode == "global_iteration" else Events.EPOCH_COMPLETED
        engine.add_event_handler(event, self)

    def momentum_at(self, engine: Engine) -> float:
        if self.mode == "global_iteration" and self.schedule is not None:
            return self.schedule(engine.state.iteration - 1, self.total_steps)
        if self.mode == "global_iteration":
            return cosine_momentum(engine.state.iteration - 1, self.total_steps, self.base, self.final)
        epoch_length = engine.state.epoch_length
        warmup = min(self.warmup_epochs * epoch_length, self.total_steps - 1)
        batch_index = (engine.state.iteration - 1) % epoch_length  # the last batch of the epoch: epoch_length - 1
        return cosine_momentum(batch_index, self.total_steps, self.base, self.final, warmup_steps=warmup, warmup_start=0.0)

    def __call__(self, engine: Engine) -> None:
        self.momentum = self.momentum_at(engine)
        unwrap(self.model).update_teacher(self.momentum)
