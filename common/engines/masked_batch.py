"""Batch preparation for masked image modelling on MONAI's ``SupervisedTrainer``.

The trainer calls ``prepare_batch(batchdata, device, non_blocking)`` once per iteration. Masking here
means it runs on the training device right after the transfer, vectorized over the batch, and the
rest of the engine (forward, AMP, backward, DDP, handlers) is MONAI's own.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from monai.data import MetaTensor
from monai.engines.utils import PrepareBatch

from common.losses.masked_reconstruction import pack_target

Masker = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class MaskedImageBatch(PrepareBatch):
    """Return ``(masked_image, pack_target(image, mask))`` for the trainer.

    Args:
        masker: ``images (B, C, D, H, W) -> (masked (B, C, D, H, W), voxel_mask (B, 1, D, H, W))``,
            e.g. :class:`common.masking.SubvolumeForegroundMasker`.
        image_key: key of the image in the batch dictionary.
    """

    def __init__(self, masker: Masker, image_key: str = "image") -> None:
        self.masker = masker
        self.image_key = image_key

    def __call__(
        self,
        batchdata: dict[str, torch.Tensor],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.image_key not in batchdata:
            raise KeyError(f"batch has no '{self.image_key}' key (keys: {sorted(batchdata)})")
        images = batchdata[self.image_key]
        if isinstance(images, MetaTensor):  # metadata is not needed past this point
            images = images.as_tensor()
        images = images.to(device=device, non_blocking=non_blocking, **kwargs)
        masked, voxel_mask = self.masker(images)
        return masked, pack_target(images, voxel_mask)
