"""AnatoMask's student loss."""

from __future__ import annotations

import torch
from torch import nn

from common.losses.patch_reconstruction import masked_patch_loss


class AnatoMaskLoss(nn.Module):
    """Student loss: MSE on masked patches only, against per-patch normalised targets."""

    def __init__(self, patch_size: int = 16) -> None:
        super().__init__()
        self.patch_size = patch_size

    def forward(self, output, images: torch.Tensor) -> torch.Tensor:
        """``output``: the ``AnatoMaskOutput`` of a training forward (reconstruction, patch mask, r_t)."""
        # duck-typed: importing common.networks here would be circular (it uses this package's patch losses)
        if not (hasattr(output, "reconstruction") and hasattr(output, "mask")):
            raise TypeError(f"AnatoMaskLoss needs the training output of AnatoMaskModel, got {type(output).__name__}")
        return masked_patch_loss(output.reconstruction, images, output.mask, self.patch_size, normalize=True, targets=getattr(output, "targets", None))
