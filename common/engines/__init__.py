"""Engine pieces plugged into MONAI's ``SupervisedTrainer``/``SupervisedEvaluator`` (no hand-written loops),
and an evaluator that goes on past failed cases."""

from common.engines.ema import TeacherEMAUpdate, cosine_momentum, linear_ramp_momentum
from common.engines.failsoft import FailedCasesError, FailSoftDataset, FailSoftEvaluator, fail_soft_collate
from common.engines.method_output import PANEL_KEYS, MethodOutput, require
from common.engines.schedule import epochs_for_steps
from common.engines.self_target import SelfTargetBatch

__all__ = [
    "PANEL_KEYS",
    "FailSoftDataset",
    "MethodOutput",
    "require",
    "FailSoftEvaluator",
    "FailedCasesError",
    "fail_soft_collate",
    "SelfTargetBatch",
    "TeacherEMAUpdate",
    "cosine_momentum",
    "epochs_for_steps",
    "linear_ramp_momentum",
]
