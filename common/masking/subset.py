"""Uniformly random subsets of patch positions, drawn for a whole batch at once (no per-sample loop)."""

from __future__ import annotations

import torch


def random_subset(
    rows: int,
    n: int,
    k: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    exclude: torch.Tensor | None = None,
) -> torch.Tensor:
    """``(rows, n)`` bool with exactly ``k`` True per row, uniformly at random among the positions not in ``exclude``.

    The ``k`` largest of iid uniform scores form a uniformly random ``k``-subset; excluded positions get a
    score below every other one. ``exclude`` ``(rows, n)`` bool must leave at least ``k`` positions per row.
    """
    scores = torch.rand(rows, n, generator=generator, device=device if exclude is None else exclude.device)
    if exclude is not None:
        scores = scores.masked_fill(exclude, -1.0)
    chosen = torch.zeros(rows, n, dtype=torch.bool, device=scores.device)
    return chosen.scatter_(1, scores.topk(k, dim=1).indices, True) if k else chosen
