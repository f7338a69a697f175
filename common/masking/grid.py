"""Grid helpers shared by masking strategies: a per-cell mask expanded to voxels."""

from __future__ import annotations

import torch


def expand_grid(grid: torch.Tensor, s: int) -> torch.Tensor:
    """``(B, Gd, Gh, Gw)`` -> ``(B, 1, Gd*s, Gh*s, Gw*s)`` by repeating each cell ``s^3`` times (no copy
    until the final reshape)."""
    b, gd, gh, gw = grid.shape
    return grid[:, None, :, None, :, None, :, None].expand(b, 1, gd, s, gh, s, gw, s).reshape(b, 1, gd * s, gh * s, gw * s)
