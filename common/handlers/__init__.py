"""Ignite handlers: atomic checkpoints and resume, weight export, TensorBoard panels and scalars."""

from common.handlers.checkpoint import (
    AtomicCheckpointSaver,
    ResumeFromLatest,
    is_main_process,
    latest_checkpoint,
    list_checkpoints,
)
from common.io import atomic_torch_save
from common.handlers.export import PretrainedWeightsExporter
from common.handlers.tensorboard import ReconstructionImageHandler, ScalarsHandler

__all__ = [
    "AtomicCheckpointSaver",
    "PretrainedWeightsExporter",
    "ReconstructionImageHandler",
    "ResumeFromLatest",
    "ScalarsHandler",
    "atomic_torch_save",
    "is_main_process",
    "latest_checkpoint",
    "list_checkpoints",
]
