"""SparK-style masked pretraining wrapper for MONAI's residual U-Net (``DynUNet`` with ``res_block=True``).

STU-Net (the AnatoMask paper's backbone) is an nnU-Net with residual blocks; MONAI's closest network
is ``DynUNet(res_block=True)``: residual conv blocks with instance norm, strided-conv downsampling,
transposed-conv upsampling. Use 5 levels with strides ``[1, 2, 2, 2, 2]``: four downsamplings to
1/16, so a 16^3 patch is one position at the deepest scale.

Sparse convolution is emulated as in SparK, on dense tensors:

- the input's masked patches are zeroed, and after every convolution and every normalisation of the
  encoder the feature map is multiplied by the visible mask at that scale again;
- instance normalisation computes its statistics over visible positions only
  (:class:`MaskedInstanceNorm3d`, a drop-in subclass that keeps the state-dict layout).

So the encoder's features at visible positions do not depend on the content of masked patches, at any
scale (tested). For decoding, masked positions of every scale's feature map are filled with a learnable
per-scale mask token and passed through a densifying 3x3x3 convolution; the U-Net's own decoder
(``upsamples``) then reconstructs the input through a 1x1x1 head. The encoder *and* decoder weights
are therefore those of a plain ``DynUNet`` and fine-tune downstream (only ``output_block`` differs).
"""

from __future__ import annotations

import torch
from torch import nn

from common.masking.grid import expand_grid
from common.networks.weights import input_channels


class SparseMaskContext:
    """The visible-patch grid of the current forward, expanded to each feature map's size on demand."""

    def __init__(self) -> None:
        self.visible: torch.Tensor | None = None  # (B, Gd, Gh, Gw) bool
        self._cache: dict[tuple[int, ...], torch.Tensor] = {}

    def set(self, visible: torch.Tensor | None) -> None:
        self.visible = visible
        self._cache = {}

    def mask_for(self, x: torch.Tensor) -> torch.Tensor | None:
        """``(B, 1, D, H, W)`` float visible mask at ``x``'s spatial size, or None when not masking."""
        if self.visible is None:
            return None
        size = tuple(x.shape[2:])
        if size not in self._cache:
            grid = self.visible.shape[1:]
            factors = {s // g for s, g in zip(size, grid)}
            if len(factors) != 1 or any(s % g for s, g in zip(size, grid)):
                raise ValueError(f"feature map {size} is not a whole multiple of the mask grid {tuple(grid)}")
            self._cache[size] = expand_grid(self.visible, factors.pop()).to(x.dtype)
        return self._cache[size]


class MaskedInstanceNorm3d(nn.InstanceNorm3d):
    """``InstanceNorm3d`` whose statistics use only visible positions while a mask is set (then dense)."""

    mask_context: SparseMaskContext

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.mask_context.mask_for(x)
        if m is None:
            return super().forward(x)
        count = m.sum(dim=(2, 3, 4), keepdim=True).clamp_min(1.0)
        mean = (x * m).sum(dim=(2, 3, 4), keepdim=True) / count
        var = ((x - mean).pow(2) * m).sum(dim=(2, 3, 4), keepdim=True) / count
        y = (x - mean) / torch.sqrt(var + self.eps)
        if self.affine:
            y = y * self.weight.view(1, -1, 1, 1, 1) + self.bias.view(1, -1, 1, 1, 1)
        return y * m


def _remask(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
    """Forward hook: zero the masked positions of a convolution's output. The context is read from the
    module (not a closure), so a deep copy of the network (the EMA teacher) uses its own."""
    m = module.mask_context.mask_for(output)
    return None if m is None else output * m


class SparKDynUNet(nn.Module):
    """Masked encoder + densified U-Net decoder around a ``DynUNet`` for masked image modelling.

    Args:
        network: a ``monai.networks.nets.DynUNet`` (residual blocks, instance norm).
        patch_size: mask patch edge in voxels (16: one position at 1/16).

    ``forward(images, visible)`` with ``visible`` ``(B, Gd, Gh, Gw)`` bool returns the reconstruction
    ``(B, C_in, D, H, W)``; :meth:`encode` returns the masked encoder's feature maps (finest first).
    """

    def __init__(self, network: nn.Module, patch_size: int = 16) -> None:
        super().__init__()
        for name in ("input_block", "downsamples", "bottleneck", "upsamples"):
            if not hasattr(network, name):
                raise TypeError(f"SparKDynUNet needs a MONAI DynUNet; {type(network).__name__} has no '{name}'")
        self.network = network
        self.patch_size = patch_size
        # the segmentation head is not used while pretraining (the reconstruction head replaces it); frozen,
        # so DDP does not wait for its gradients
        network.output_block.requires_grad_(False)
        self.context = SparseMaskContext()
        self.encoder = nn.ModuleList([network.input_block, *network.downsamples, network.bottleneck])
        for block in self.encoder:
            for module in block.modules():
                if isinstance(module, nn.InstanceNorm3d):
                    module.__class__ = MaskedInstanceNorm3d  # same parameters and state-dict keys
                    module.mask_context = self.context
                elif isinstance(module, nn.Conv3d):
                    module.mask_context = self.context
                    module.register_forward_hook(_remask)
        channels = [self._out_channels(block) for block in self.encoder]
        self.mask_tokens = nn.ParameterList([nn.Parameter(torch.zeros(1, c, 1, 1, 1)) for c in channels])
        self.densify = nn.ModuleList([nn.Conv3d(c, c, 3, padding=1) for c in channels])
        in_channels = input_channels(network.input_block)
        self.head = nn.Conv3d(channels[0], in_channels, 1)
        for token in self.mask_tokens:
            nn.init.trunc_normal_(token, std=0.02)

    @staticmethod
    def _out_channels(block: nn.Module) -> int:
        convs = [m for m in block.modules() if isinstance(m, nn.Conv3d)]
        return int(convs[-1].out_channels) if convs else 0

    def _encode(self, images: torch.Tensor, visible: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Masked encoder features (finest first) and the visible mask at each of their scales."""
        self.context.set(visible)
        try:
            x = images * self.context.mask_for(images)
            features = []
            for block in self.encoder:
                x = block(x)
                features.append(x)
            masks = [self.context.mask_for(f) for f in features]  # cached by the hooks of this forward
        finally:
            self.context.set(None)
        return features, masks

    def encode(self, images: torch.Tensor, visible: torch.Tensor) -> list[torch.Tensor]:
        """Masked encoder features, finest first; masked positions are zero at every scale."""
        return self._encode(images, visible)[0]

    def forward(self, images: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        features, masks = self._encode(images, visible)
        dense = [conv(f * m + token * (1.0 - m)) for f, m, token, conv in zip(features, masks, self.mask_tokens, self.densify)]
        x = dense[-1]
        for up, skip in zip(self.network.upsamples, reversed(dense[:-1])):
            x = up(x, skip)
        return self.head(x)


def visible_grid(images: torch.Tensor, patch_size: int) -> tuple[int, int, int]:
    """The ``(Gd, Gh, Gw)`` patch grid of ``images`` ``(B, C, D, H, W)``; sizes must be multiples of ``patch_size``."""
    spatial = images.shape[2:]
    if any(s % patch_size for s in spatial):
        raise ValueError(f"ROI {tuple(spatial)} is not divisible by the patch size {patch_size}")
    return tuple(s // patch_size for s in spatial)
