"""TensorBoard output for masked image modelling: reconstruction panels and extra scalars.

MONAI's ``TensorBoardImageHandler`` draws one image, one label and one output with fixed tags; a
masked-modelling step has four things worth seeing side by side (original, masked input, mask,
reconstruction), which a method's :class:`common.engines.MethodOutput` carries under its panel keys,
so this draws one panel per view.
"""

from __future__ import annotations

import atexit
import logging
import os
from collections.abc import Callable, Mapping

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.utils import CommonKeys

from common.handlers.checkpoint import is_main_process
from common.engines.method_output import require

logger = logging.getLogger(__name__)


_WRITERS: dict[str, object] = {}


class _NullWriter:
    """Stands in for ``SummaryWriter`` on ranks other than 0: accepts every call, writes nothing."""

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None


def shared_writer(log_dir: str):
    """One ``SummaryWriter`` per folder and process, shared by every handler writing there (one
    event file per run instead of one per handler); closed at interpreter exit or by :func:`close_writers`.
    Under DDP only rank 0 writes (other ranks get a writer that discards), so a run has one event file.
    A folder moved away since its writer opened (``--resume False`` moves an earlier run's outputs
    aside) gets a new writer, so a second run in one process never writes into the moved folder."""
    from torch.utils.tensorboard import SummaryWriter

    if not is_main_process():
        return _NullWriter()
    if log_dir in _WRITERS and not os.path.isdir(log_dir):
        _close(_WRITERS.pop(log_dir))
    if log_dir not in _WRITERS:
        _WRITERS[log_dir] = SummaryWriter(log_dir=log_dir)
    return _WRITERS[log_dir]


@atexit.register
def close_writers() -> None:
    """Close every shared writer (a run in a process that runs several, e.g. the evidence harness, ends here)."""
    for w in _WRITERS.values():
        _close(w)
    _WRITERS.clear()


def _close(writer: object) -> None:
    try:
        writer.close()
    except Exception as e:  # noqa: BLE001 - its file was moved or deleted under it: what it held is written or lost either way
        logger.warning(f"closing a TensorBoard writer failed ({type(e).__name__}: {e})")


def reconstruction_panel(image: torch.Tensor, masked: torch.Tensor, mask: torch.Tensor, pred: torch.Tensor, axis: int) -> np.ndarray:
    """Central slices of one sample along spatial ``axis`` (0, 1, 2), side by side.

    Args:
        image, masked, pred: ``(C, D, H, W)`` (channel 0 is drawn); mask: ``(1, D, H, W)``.
    Returns:
        ``(1, rows, 4 * cols)`` float32 in [0, 1]: original | masked input | mask | reconstruction
        (prediction inside the mask, original outside: the loss only trains masked voxels, as in
        MAE-style figures), intensities scaled to the original's range.
    """
    idx = image.shape[axis + 1] // 2
    take = lambda t: t[0].float().select(axis, idx).detach().cpu().numpy()  # noqa: E731
    orig, mskd, m, rec = take(image), take(masked), take(mask), take(pred)
    lo, hi = float(orig.min()), float(orig.max())
    scale = lambda a: np.clip((a - lo) / max(hi - lo, 1e-6), 0.0, 1.0)  # noqa: E731
    rec = np.where(m > 0.5, rec, orig)
    return np.concatenate([scale(orig), scale(mskd), m.astype(np.float32), scale(rec)], axis=1)[None].astype(np.float32)


class ReconstructionImageHandler:
    """Every ``interval`` iterations, write panels (original | masked | mask | reconstruction) of
    the first sample's central axial, coronal and sagittal slices to TensorBoard.

    Reads the trainer's ``pred`` (a :class:`common.engines.MethodOutput` with ``input``, ``mask`` and
    ``reconstruction``) and its ``label`` (the original images of self-supervised methods).
    """

    def __init__(self, log_dir: str, interval: int = 100) -> None:
        self.log_dir = log_dir
        self.interval = interval

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.interval), self)

    def __call__(self, engine: Engine) -> None:
        if not is_main_process():
            return
        out = engine.state.output
        pred = require(out[CommonKeys.PRED], ("input", "mask", "reconstruction"), "ReconstructionImageHandler")
        image = out[CommonKeys.LABEL][:1]
        masked, mask, pred = pred.input[:1], pred.mask[:1], pred.reconstruction[:1]
        writer = shared_writer(self.log_dir)
        for axis, view in zip((2, 1, 0), ("axial", "coronal", "sagittal")):
            panel = reconstruction_panel(image[0], masked[0], mask[0], pred[0], axis)
            writer.add_image(f"reconstruction/{view}", panel, engine.state.iteration)
        writer.flush()


class ScalarsHandler:
    """Write named scalars computed from the engine to TensorBoard every ``interval`` iterations, and
    log them once per epoch.

    Args:
        log_dir: TensorBoard folder.
        scalars: ``name -> f(engine) -> float``, e.g. ``{"lr": lambda e: optimizer.param_groups[0]["lr"]}``.
        interval: iterations between TensorBoard points.
    """

    def __init__(self, log_dir: str, scalars: Mapping[str, Callable[[Engine], float]], interval: int = 1) -> None:
        self.log_dir = log_dir
        self.scalars = dict(scalars)
        self.interval = interval

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.interval), self.write)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.log)

    def values(self, engine: Engine) -> dict[str, float]:
        return {name: float(f(engine)) for name, f in self.scalars.items()}

    def write(self, engine: Engine) -> None:
        if not is_main_process():
            return
        writer = shared_writer(self.log_dir)
        for name, value in self.values(engine).items():
            writer.add_scalar(name, value, engine.state.iteration)

    def log(self, engine: Engine) -> None:
        if is_main_process():
            text = ", ".join(f"{k}: {v:.4g}" for k, v in self.values(engine).items())
            logger.info(f"Epoch {engine.state.epoch} (iteration {engine.state.iteration}): {text}")
            shared_writer(self.log_dir).flush()
