"""Patch-wise reconstruction losses of SparK-style masked image modelling (AnatoMask).

Targets are per-patch normalised (each ``p^3`` patch to mean 0 and unit variance, the unbiased
variance plus ``eps`` as in SparK/MAE), and the loss is the MSE averaged over masked patches only.
The teacher's per-patch loss, which ranks patches for the next mask, uses the same normalised targets
by default; ``normalize=False`` gives the reference code's comparison with the raw input.
"""

from __future__ import annotations

import torch


def patchify(images: torch.Tensor, p: int) -> torch.Tensor:
    """``(B, C, D, H, W)`` -> ``(B, n, C * p^3)`` patches in ``(D/p, H/p, W/p)`` C order."""
    b, c, d, h, w = images.shape
    if d % p or h % p or w % p:
        raise ValueError(f"spatial size {(d, h, w)} is not divisible by the patch size {p}")
    x = images.reshape(b, c, d // p, p, h // p, p, w // p, p)
    return x.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(b, (d // p) * (h // p) * (w // p), c * p**3)


def normalized_patches(images: torch.Tensor, p: int, eps: float = 1e-6) -> torch.Tensor:
    """Per-patch normalised targets ``(B, n, C * p^3)``: ``(x - mean) / sqrt(var + eps)`` within each patch."""
    x = patchify(images.float(), p)
    mean = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, keepdim=True)
    return (x - mean) / (var + eps).sqrt()


def patch_targets(images: torch.Tensor, p: int, normalize: bool = True) -> torch.Tensor:
    """``(B, n, C * p^3)`` reconstruction targets: :func:`normalized_patches`, or the raw patches."""
    return normalized_patches(images, p) if normalize else patchify(images.float(), p)


def per_patch_mse(prediction: torch.Tensor, images: torch.Tensor, p: int, normalize: bool = True, targets: torch.Tensor | None = None) -> torch.Tensor:
    """``(B, n)`` mean squared error of every patch of ``prediction`` against (normalised) ``images``.

    ``targets``: :func:`patch_targets` computed already (one step's teacher and student share them).
    """
    target = patch_targets(images, p, normalize) if targets is None else targets
    return (patchify(prediction.float(), p) - target).pow(2).mean(dim=-1)


def masked_patch_loss(
    prediction: torch.Tensor, images: torch.Tensor, mask: torch.Tensor, p: int, normalize: bool = True, targets: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean of :func:`per_patch_mse` over masked patches (``mask`` ``(B, n)`` bool); 0 if none is masked."""
    losses = per_patch_mse(prediction, images, p, normalize, targets)
    weights = mask.to(losses.dtype)
    return (losses * weights).sum() / weights.sum().clamp_min(1.0)
