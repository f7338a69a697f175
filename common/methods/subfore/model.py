"""SubFore's training forward: the reconstruction network, with the mask it was given."""

from __future__ import annotations

import torch
from torch import nn

from common.engines.method_output import MethodOutput


class SubForeModel(nn.Module):
    """Wraps any image-to-image network (SwinUNETR, UNETR, ...) so its training forward returns a
    :class:`common.engines.MethodOutput`.

    The masking itself runs in :class:`common.methods.subfore.MaskedImageBatch` (on the device, right
    after the transfer), which passes the voxel mask as the ``mask`` keyword.

    Training ``forward(masked, mask)`` returns ``input`` (the masked images ``(B, C, D, H, W)``),
    ``mask`` ``(B, 1, D, H, W)`` bool and ``reconstruction`` ``(B, C, D, H, W)``. Without a mask (evaluation,
    export, the bundle verifier) it returns the network's output tensor.
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, images: torch.Tensor, mask: torch.Tensor | None = None) -> MethodOutput | torch.Tensor:
        reconstruction = self.network(images)
        if mask is None:
            return reconstruction
        return MethodOutput(input=images, mask=mask, reconstruction=reconstruction)
