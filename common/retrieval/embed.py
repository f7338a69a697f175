"""Scan embeddings as in CT-FM's retrieval: pooled encoder features of sliding patches, reduced per scan.

A preprocessed scan ``(C, D, H, W)`` is cut into ``patch_size`` patches (CT-FM: 24x128x128) overlapping
by ``overlap`` (the reference's retrieval scripts, ``scripts/3d_mir_generate_embeddings.py``: 0.625, a
stride of 0.375 patch, about 19 times the patches of ``overlap=0``; the last row is zero-padded, which
is air after CT-FM's intensity scaling) by MONAI's ``SlidingWindowSplitter``. The embedder (:class:`common.methods.ctfm.PooledEncoder`) gives each patch a
feature vector (512-d for CT-FM), and the patch vectors are combined per scan by the element-wise
minimum (``reduce="min"``, this collection's default: the reference scripts save every patch's
features and leave the reduction to the analysis) or mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.inferers import Inferer, SlidingWindowSplitter
from torch import nn

REDUCTIONS = ("min", "mean")


def patch_embeddings(embedder: nn.Module, image: torch.Tensor, patch_size: Sequence[int], batch_size: int = 8, overlap: float = 0.0) -> torch.Tensor:
    """``(C, D, H, W)`` -> ``(P, F)``: one vector per patch, ``batch_size`` patches per forward pass.

    Per axis of length ``L`` there are ``ceil((L - p) / stride) + 1`` patches, ``stride = p (1 - overlap)``.
    """
    if image.dim() != 4:
        raise ValueError(f"expected one scan (C, D, H, W), got shape {tuple(image.shape)}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    splitter = SlidingWindowSplitter(tuple(patch_size), overlap=overlap, pad_mode="constant", pad_value=0)
    patches = torch.cat([p for p, _ in splitter(image[None])])  # (P, C, *patch_size)
    device = next(embedder.parameters()).device
    return torch.cat([embedder(chunk.to(device)).float() for chunk in patches.split(batch_size)])


def reduce_patches(features: torch.Tensor, reduce: str = "min") -> torch.Tensor:
    """``(P, F)`` -> ``(F,)`` by element-wise ``min`` (CT-FM) or ``mean``."""
    if reduce == "min":
        return features.amin(dim=0)
    if reduce == "mean":
        return features.mean(dim=0)
    raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")


def embed_scan(
    embedder: nn.Module, image: torch.Tensor, patch_size: Sequence[int] = (24, 128, 128), reduce: str = "min", batch_size: int = 8,
    overlap: float = 0.0,
) -> torch.Tensor:
    """The ``(F,)`` embedding of one preprocessed scan ``(C, D, H, W)``, computed in eval mode without gradients."""
    was_training = embedder.training
    embedder.eval()
    try:
        with torch.inference_mode():
            return reduce_patches(patch_embeddings(embedder, image, patch_size, batch_size, overlap), reduce)
    finally:
        embedder.train(was_training)


class PatchEmbeddingInferer(Inferer):
    """MONAI inferer ``(B, C, D, H, W) -> (B, F)``: :func:`embed_scan` of every scan of the batch, so an
    ignite ``SupervisedEvaluator`` builds an embedding index like it runs segmentation inference."""

    def __init__(self, patch_size: Sequence[int] = (24, 128, 128), reduce: str = "min", batch_size: int = 8, overlap: float = 0.0) -> None:
        if reduce not in REDUCTIONS:
            raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
        self.patch_size, self.reduce, self.batch_size, self.overlap = tuple(patch_size), reduce, batch_size, overlap

    def __call__(self, inputs: torch.Tensor, network: nn.Module, *args: Any, **kwargs: Any) -> torch.Tensor:
        return torch.stack([embed_scan(network, scan, self.patch_size, self.reduce, self.batch_size, self.overlap) for scan in inputs])
