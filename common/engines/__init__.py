"""Engine pieces plugged into MONAI's ``SupervisedTrainer`` (no hand-written training loops)."""

from common.engines.ema import TeacherEMAUpdate, cosine_momentum, linear_ramp_momentum
from common.engines.masked_batch import MaskedImageBatch
from common.engines.schedule import epochs_for_steps
from common.engines.self_target import SelfTargetBatch

__all__ = [
    "MaskedImageBatch",
    "SelfTargetBatch",
    "TeacherEMAUpdate",
    "cosine_momentum",
    "epochs_for_steps",
    "linear_ramp_momentum",
]
