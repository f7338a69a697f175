"""AnatoMask's reconstruction-guided mask (Algorithm 1 of the paper), vectorized over the batch.

Per sample, with ``n`` patches, masking ratio ``gamma`` and anatomical-significance ratio ``r_t``:

1. a random mask of ``ceil(gamma * n)`` patches is drawn (:func:`random_patch_mask`) and the teacher
   reconstructs the masked input; its per-patch loss is known on those patches;
2. the ``p = ceil(r_t * n)`` masked patches with the highest loss form ``M_top`` (lowest with
   ``descending=False``: the paper's "low significance" ablation);
3. patches drawn uniformly from the others (``G \\ M_top``) fill the mask up to ``ceil(gamma * n)``.

The paper draws ``ceil((gamma - r_t) * n)`` random patches, which can overshoot ``ceil(gamma * n)`` by
one; here the total is exactly ``ceil(gamma * n)`` (the masking ratio the method states).

``r_t`` follows the masking dynamics ``r_t = r_0 + (t / T) (r_T - r_0)``: easy-to-hard with
``r_0 = 0, r_T = 0.5`` (default), hard-to-easy by swapping them.
"""

from __future__ import annotations

import math

import torch

from common.masking.subset import random_subset


def count_for_ratio(ratio: float, n: int) -> int:
    """``ceil(ratio * n)``, robust to float noise (``0.3 * 10`` is ``3.0000000000000004``)."""
    return min(n, max(0, math.ceil(round(ratio * n, 9))))


def significance_ratio(step: int, total_steps: int, r_start: float = 0.0, r_end: float = 0.5) -> float:
    """Masking dynamics ``r_t = r_0 + (t / T)(r_T - r_0)``, ``t`` clamped to ``[0, T]``."""
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    t = min(max(step, 0), total_steps)
    return r_start + (t / total_steps) * (r_end - r_start)


def random_patch_mask(batch: int, n: int, gamma: float, generator: torch.Generator | None = None, device: torch.device | str | None = None) -> torch.Tensor:
    """``(batch, n)`` bool: ``ceil(gamma * n)`` uniformly random patches per sample."""
    return random_subset(batch, n, count_for_ratio(gamma, n), generator=generator, device=device)


def anatomical_mask(
    patch_loss: torch.Tensor,
    initial_mask: torch.Tensor,
    gamma: float,
    r_t: float,
    descending: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Algorithm 1: the final mask from the teacher's per-patch losses on the initial random mask.

    Args:
        patch_loss: ``(B, n)`` teacher reconstruction loss per patch (used where ``initial_mask``).
        initial_mask: ``(B, n)`` bool, the random mask the teacher reconstructed.
        gamma: overall masking ratio (0.6).
        r_t: anatomical-significance ratio at this step (0 .. 0.5).
        descending: rank the highest losses first (the method); False ranks the lowest first.
        generator: random generator for the fill (on the losses' device).

    Returns:
        ``(B, n)`` bool with exactly ``ceil(gamma * n)`` True per row, containing the
        ``ceil(r_t * n)`` top-ranked initially masked patches.
    """
    if patch_loss.shape != initial_mask.shape or patch_loss.dim() != 2:
        raise ValueError(f"patch_loss {tuple(patch_loss.shape)} and initial_mask {tuple(initial_mask.shape)} must both be (B, n)")
    b, n = patch_loss.shape
    total = count_for_ratio(gamma, n)
    masked_per_row = initial_mask.sum(dim=1)
    p = min(count_for_ratio(r_t, n), total)
    if p and int(masked_per_row.min()) < p:
        raise ValueError(f"r_t * n = {p} top patches requested but a sample has only {int(masked_per_row.min())} initially masked patches")
    key = patch_loss.detach().float() if descending else -patch_loss.detach().float()
    key = key.masked_fill(~initial_mask, float("-inf"))  # only patches the teacher had to reconstruct are ranked
    final = torch.zeros(b, n, dtype=torch.bool, device=patch_loss.device)
    if p:
        final.scatter_(1, key.topk(p, dim=1).indices, True)
    if total > p:  # M_random: uniform over G \ M_top
        final |= random_subset(b, n, total - p, generator=generator, exclude=final)
    return final
