"""Ignite handlers: atomic checkpoints and resume, best-model saving, per-case/per-class metric
reports, weight export, TensorBoard panels and scalars, random-generator state for checkpoints, validation that includes the last epoch, gradient clipping,
stopping (or skipping) non-finite losses."""

from common.handlers.best_model import BestModelSaver
from common.handlers.checkpoint import (
    AtomicCheckpointSaver,
    ResumeFromLatest,
    is_main_process,
    latest_checkpoint,
    list_checkpoints,
)
from common.handlers.export import PretrainedWeightsExporter
from common.handlers.gradient_clipping import GradientClipping
from common.handlers.nonfinite import (
    NonFiniteLossError,
    NonFiniteLossGuard,
    batch_cases,
)
from common.handlers.rng import RNGState
from common.handlers.segmentation_report import SegmentationReport
from common.handlers.tensorboard import ReconstructionImageHandler, ScalarsHandler
from common.handlers.validation import ValidationWithFinal
from common.io import atomic_torch_save

__all__ = [
    "AtomicCheckpointSaver",
    "BestModelSaver",
    "GradientClipping",
    "NonFiniteLossError",
    "NonFiniteLossGuard",
    "PretrainedWeightsExporter",
    "ReconstructionImageHandler",
    "RNGState",
    "ResumeFromLatest",
    "ScalarsHandler",
    "SegmentationReport",
    "ValidationWithFinal",
    "atomic_torch_save",
    "batch_cases",
    "is_main_process",
    "latest_checkpoint",
    "list_checkpoints",
]
