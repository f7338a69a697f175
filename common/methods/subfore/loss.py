"""L1 reconstruction loss restricted to masked voxels (SubFore, seed 000).

MONAI's ``SupervisedTrainer`` calls ``loss_function(pred, target)`` with ``pred`` the
:class:`common.engines.MethodOutput` of :class:`common.methods.subfore.SubForeModel` (reconstruction and
voxel mask) and ``target`` the original images.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from common.engines.method_output import MethodOutput, require

Reduction = Literal["batch", "per_sample"]
REDUCTIONS = ("batch", "per_sample")
_RENAMED = {"voxel": "batch", "subvolume": "per_sample"}  # names before 0.2.0


def check_reduction(reduction: str) -> None:
    """``ValueError`` naming the choices (and the new name of a pre-0.2.0 one)."""
    if reduction in _RENAMED:
        raise ValueError(f"loss_reduction {reduction!r} is now called {_RENAMED[reduction]!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"loss_reduction must be one of {REDUCTIONS}, got {reduction!r}")


def masked_l1(
    pred: torch.Tensor, images: torch.Tensor, voxel_mask: torch.Tensor, subvolume_size: int, reduction: Reduction
) -> torch.Tensor:
    """L1 between ``pred`` and ``images`` over masked voxels only.

    Args:
        pred, images: ``(B, C, D, H, W)``.
        voxel_mask: ``(B, 1, D, H, W)`` bool, constant on each ``s^3`` subvolume.
        subvolume_size: ``s``.
        reduction: ``"batch"`` (the reference, ``src/pretrain/loss.py``: the L1 mean of each masked
            subvolume, summed over every masked subvolume of the batch and divided by their number;
            all subvolumes have ``s^3`` voxels, so it is the mean over every masked voxel of the
            batch, and samples with more masked subvolumes weigh more); ``"per_sample"``: mean L1 of
            each masked subvolume, averaged over the masked subvolumes of each sample, then over the
            samples that have any (every sample weighs the same). They coincide when every sample
            masks the same number.

    Returns:
        scalar loss; ``0`` (still attached to the graph) when nothing is masked.
    """
    if pred.shape != images.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} does not match target shape {tuple(images.shape)}")
    err = (pred.float() - images.float()).abs().mean(dim=1)  # (B, D, H, W), channel-averaged
    mask = voxel_mask[:, 0]
    check_reduction(reduction)
    if reduction == "batch":
        n = mask.sum()
        return (err * mask).sum() / n.clamp(min=1)
    s = subvolume_size
    b, d, h, w = err.shape
    per_sub = err.reshape(b, d // s, s, h // s, s, w // s, s).mean(dim=(2, 4, 6)).reshape(b, -1)  # (B, G)
    sub_mask = mask.reshape(b, d // s, s, h // s, s, w // s, s)[:, :, 0, :, 0, :, 0].reshape(b, -1).float()
    n_per_sample = sub_mask.sum(dim=1)  # (B,)
    per_sample = (per_sub * sub_mask).sum(dim=1) / n_per_sample.clamp(min=1)
    has_mask = (n_per_sample > 0).float()
    return (per_sample * has_mask).sum() / has_mask.sum().clamp(min=1)


class MaskedReconstructionLoss(nn.Module):
    """``loss(output, images)`` for MONAI trainers; see :func:`masked_l1` for the reductions."""

    def __init__(self, subvolume_size: int = 16, reduction: Reduction = "batch") -> None:
        super().__init__()
        check_reduction(reduction)
        self.subvolume_size = int(subvolume_size)
        self.reduction: Reduction = reduction

    def forward(self, output: MethodOutput, images: torch.Tensor) -> torch.Tensor:
        """``output``: ``reconstruction`` ``(B, C, D, H, W)`` and ``mask`` ``(B, 1, D, H, W)``; ``images`` ``(B, C, D, H, W)``."""
        output = require(output, ("reconstruction", "mask"), "MaskedReconstructionLoss")
        return masked_l1(output.reconstruction, images, output.mask, self.subvolume_size, self.reduction)
