"""AnatoMask's student loss."""

from __future__ import annotations

import torch
from torch import nn

from common.engines.method_output import MethodOutput, require
from common.methods.anatomask.patches import masked_patch_loss


class AnatoMaskLoss(nn.Module):
    """Student loss: MSE on masked patches only, against per-patch normalised targets."""

    def __init__(self, patch_size: int = 16) -> None:
        super().__init__()
        self.patch_size = patch_size

    def forward(self, output: MethodOutput, images: torch.Tensor) -> torch.Tensor:
        """``output``: the training output of :class:`common.methods.anatomask.AnatoMaskModel`
        (``reconstruction``, ``patch_mask``, optionally the step's ``targets``); ``images`` ``(B, C, D, H, W)``."""
        output = require(output, ("reconstruction", "patch_mask"), "AnatoMaskLoss")
        return masked_patch_loss(output.reconstruction, images, output.patch_mask, self.patch_size, normalize=True, targets=output.get("targets"))
