"""Validation every ``interval`` epochs and after the last one.

MONAI's ``ValidationHandler`` (epoch level) fires on multiples of ``interval`` only: a run whose epoch
count is not a multiple, MONAI Label's short ``max_epochs`` trainings among them, ends without
validating (and without a best ``model.pt``) its final weights.
"""

from __future__ import annotations

from ignite.engine import Engine, Events
from monai.handlers import ValidationHandler


class ValidationWithFinal(ValidationHandler):
    """``monai.handlers.ValidationHandler`` (epoch level) that also validates after the trainer's last epoch."""

    def attach(self, engine: Engine) -> None:
        if not self.epoch_level:
            super().attach(engine)
            return
        interval = self.interval

        def due(trainer: Engine, epoch: int) -> bool:
            return epoch % interval == 0 or epoch == trainer.state.max_epochs

        engine.add_event_handler(Events.EPOCH_COMPLETED(event_filter=due), self)
        if self.exec_at_start:
            engine.add_event_handler(Events.STARTED, self)
