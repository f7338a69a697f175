"""Engine pieces plugged into MONAI's ``SupervisedTrainer``/``SupervisedEvaluator`` (no hand-written loops),
and an evaluator that goes on past failed cases."""

from common.lazy import exports

#: name -> defining module, imported on first use (see :mod:`common.lazy`)
EXPORTS = {
    "cosine_momentum": "common.engines.ema",
    "epochs_for_steps": "common.engines.schedule",
    "fail_soft_collate": "common.engines.failsoft",
    "FailedCasesError": "common.engines.failsoft",
    "FailSoftDataset": "common.engines.failsoft",
    "FailSoftEvaluator": "common.engines.failsoft",
    "linear_ramp_momentum": "common.engines.ema",
    "MethodOutput": "common.engines.method_output",
    "PANEL_KEYS": "common.engines.method_output",
    "require": "common.engines.method_output",
    "SelfTargetBatch": "common.engines.self_target",
    "TeacherEMAUpdate": "common.engines.ema",
}

__all__ = sorted(EXPORTS)
__getattr__, __dir__ = exports(__name__, EXPORTS)
