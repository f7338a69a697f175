"""Batch preparation for self-supervised reconstruction: the image is both the input and the target."""

from __future__ import annotations

from typing import Any

import torch
from monai.data import MetaTensor
from monai.engines.utils import PrepareBatch


class SelfTargetBatch(PrepareBatch):
    """Return ``(image, image)`` on ``device`` for ``SupervisedTrainer`` (no label copy in the data pipeline).

    :meth:`images` (the checked, metadata-free transfer) is shared with
    :class:`common.methods.subfore.MaskedImageBatch`, which masks the images it returns.
    """

    def __init__(self, image_key: str = "image") -> None:
        self.image_key = image_key

    def images(self, batchdata: dict[str, torch.Tensor], device: str | torch.device | None = None, non_blocking: bool = False, **kwargs: Any) -> torch.Tensor:
        """The batch's ``(B, C, D, H, W)`` images as a plain tensor on ``device`` (metadata is not needed past this point)."""
        if self.image_key not in batchdata:
            raise KeyError(f"batch has no '{self.image_key}' key (keys: {sorted(batchdata)})")
        images = batchdata[self.image_key]
        if isinstance(images, MetaTensor):
            images = images.as_tensor()
        return images.to(device=device, non_blocking=non_blocking, **kwargs)

    def __call__(self, batchdata: dict[str, torch.Tensor], device: str | torch.device | None = None, non_blocking: bool = False, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        images = self.images(batchdata, device, non_blocking, **kwargs)
        return images, images
