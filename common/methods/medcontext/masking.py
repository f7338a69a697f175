"""MedContext's "tube" mask on a patch grid (the VideoMAE tube mask, with the first axis as "time").

A fraction ``ratio`` of the in-plane positions ``(H, W)`` of a ``(D, H, W)`` patch grid is chosen at
random and masked at every index of the first axis, so each masked position is a tube through the
volume. ``floor(ratio * H * W)`` positions are masked per plane, as in the reference generator.
"""

from __future__ import annotations

import math

import torch

from common.masking.subset import random_subset


def tube_mask(
    grid: tuple[int, int, int],
    ratio: float,
    batch_size: int = 1,
    per_sample: bool = False,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Random tube masks, vectorized over the batch.

    Args:
        grid: ``(D, H, W)`` patch grid (``(6, 6, 6)`` for a 96^3 ROI in 16^3 patches).
        ratio: fraction of the ``H * W`` in-plane positions to mask, in ``[0, 1]``.
        batch_size: number of samples.
        per_sample: one mask per sample; otherwise one mask shared by the batch (as the reference, which draws one per batch).
        generator: random generator (on ``device``) for reproducible masks.
        device: where the mask is built.

    Returns:
        ``(batch_size, D, H, W)`` bool, True where masked; identical along ``D``.
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"mask ratio must be in [0, 1], got {ratio}")
    d, h, w = grid
    n_plane = h * w
    n_masked = math.floor(ratio * n_plane)
    rows = batch_size if per_sample else 1
    plane = random_subset(rows, n_plane, n_masked, generator=generator, device=device).view(rows, 1, h, w)
    return plane.expand(batch_size, d, h, w)


def masked_fraction(mask: torch.Tensor) -> float:
    """Fraction of True cells of a ``(B, D, H, W)`` mask (for logging)."""
    return float(mask.float().mean())
