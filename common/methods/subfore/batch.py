"""Batch preparation for masked image modelling on MONAI's ``SupervisedTrainer``.

The trainer calls ``prepare_batch(batchdata, device, non_blocking)`` once per iteration. Masking here
means it runs on the training device right after the transfer, vectorized over the batch, and the
rest of the engine (forward, AMP, backward, DDP, handlers) is MONAI's own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from common.engines.self_target import SelfTargetBatch

Masker = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class MaskedImageBatch(SelfTargetBatch):
    """Return ``(masked_image, image, (), {"mask": voxel_mask})`` for the trainer.

    MONAI's ``SupervisedTrainer`` passes the extra keyword arguments on to the network, so
    :class:`common.methods.subfore.SubForeModel` receives the mask it returns with its reconstruction.

    Args:
        masker: ``images (B, C, D, H, W) -> (masked (B, C, D, H, W), voxel_mask (B, 1, D, H, W))``,
            e.g. :class:`common.methods.subfore.SubvolumeForegroundMasker`.
        image_key: key of the image in the batch dictionary.
    """

    def __init__(self, masker: Masker, image_key: str = "image") -> None:
        super().__init__(image_key)
        self.masker = masker

    def __call__(
        self,
        batchdata: dict[str, torch.Tensor],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor, tuple, dict[str, torch.Tensor]]:
        images = self.images(batchdata, device, non_blocking, **kwargs)
        masked, voxel_mask = self.masker(images)
        return masked, images, (), {"mask": voxel_mask}
