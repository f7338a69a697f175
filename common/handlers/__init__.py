"""Ignite handlers: atomic checkpoints and resume, best-model saving, per-case/per-class metric
reports, weight export, TensorBoard panels and scalars, per-iteration seeding of the random generators, validation that includes the last epoch, gradient clipping,
stopping (or skipping) non-finite losses, checkpoint-and-exit on a pre-emption signal, progress bars."""

from common.lazy import exports

#: name -> defining module, imported on first use (see :mod:`common.lazy`)
EXPORTS = {
    "atomic_torch_save": "common.io",
    "AtomicCheckpointSaver": "common.handlers.checkpoint",
    "batch_cases": "common.data.cases",
    "BestModelSaver": "common.handlers.best_model",
    "GradientClipping": "common.handlers.gradient_clipping",
    "IterationSeed": "common.handlers.seeding",
    "is_main_process": "common.distributed",
    "latest_checkpoint": "common.runs.checkpoints",
    "list_checkpoints": "common.runs.checkpoints",
    "NonFiniteLossError": "common.handlers.nonfinite",
    "NonFiniteLossGuard": "common.handlers.nonfinite",
    "PREEMPTED_EXIT_CODE": "common.handlers.preemption",
    "PreemptionCheckpoint": "common.handlers.preemption",
    "PretrainedWeightsExporter": "common.handlers.export",
    "ProgressBarHandler": "common.handlers.progress",
    "ReconstructionImageHandler": "common.handlers.tensorboard",
    "ResumeFromLatest": "common.handlers.checkpoint",
    "ScalarsHandler": "common.handlers.tensorboard",
    "SegmentationReport": "common.handlers.segmentation_report",
    "ValidationWithFinal": "common.handlers.validation",
}

__all__ = sorted(EXPORTS)
__getattr__, __dir__ = exports(__name__, EXPORTS)
