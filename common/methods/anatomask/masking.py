"""AnatoMask's reconstruction-guided mask, vectorized over the batch.

Per sample, with ``n`` patches, masking ratio ``gamma`` and anatomical-significance ratio ``r_t``:

1. a random mask of ``m`` patches is drawn (:func:`random_patch_mask`) and the teacher reconstructs
   the masked input; its per-patch loss is known on those patches;
2. the ``p`` masked patches with the highest loss form ``M_top`` (lowest with ``descending=False``:
   the paper's "low significance" ablation);
3. patches drawn uniformly from the others (``G \\ M_top``) fill the mask up to ``m``.

The paper is not consistent about ``p``, so the count rule is an option (:data:`COUNT_RULES`):

- ``"masked_fraction"`` (default): ``r_t`` is a fraction of the *masked* patches, as the paper's text
  ("select ``r_t * gamma * V`` voxels with the highest loss") and the reference code
  (``AnatoMask.py``: ``len_loss = int((L - len_keep) * keep_ratio)``) have it, counted as the
  reference counts: ``m = n - round((1 - gamma) n)``, ``p = floor(r_t m)``. At ``n = 392``,
  ``gamma = 0.6``, ``r_t = 0.5``: ``m = 235``, ``p = 117`` by loss and 118 at random.
- ``"algorithm1"``: the paper's Algorithm 1 literally, ``r_t`` a fraction of *all* patches:
  ``p = ceil(r_t n)``, with ``m = ceil(gamma n)`` (Algorithm 1 draws ``ceil((gamma - r_t) n)`` random
  patches, which can overshoot ``m`` by one; here the total is exactly ``m``). Same example: ``m = 236``,
  ``p = 196``, 40 at random.

``r_t`` follows the masking dynamics ``r_t = r_0 + (t / T) (r_T - r_0)``: easy-to-hard with
``r_0 = 0, r_T = 0.5`` (default), hard-to-easy by swapping them.
"""

from __future__ import annotations

import math

import torch

from common.masking.subset import random_subset


#: how many patches are chosen by the teacher's loss (module docstring)
COUNT_RULES = ("masked_fraction", "algorithm1")


def count_for_ratio(ratio: float, n: int) -> int:
    """``ceil(ratio * n)``, robust to float noise (``0.3 * 10`` is ``3.0000000000000004``)."""
    return min(n, max(0, math.ceil(round(ratio * n, 9))))


def _check_rule(count_rule: str) -> None:
    if count_rule not in COUNT_RULES:
        raise ValueError(f"count_rule must be one of {COUNT_RULES}, got {count_rule!r}")


def masked_count(gamma: float, n: int, count_rule: str = "masked_fraction") -> int:
    """Patches masked per sample, ``m``: ``n - round((1 - gamma) n)`` (masked_fraction, as the
    reference's ``len_keep``) or ``ceil(gamma n)`` (algorithm1)."""
    _check_rule(count_rule)
    if count_rule == "algorithm1":
        return count_for_ratio(gamma, n)
    return n - min(n, max(0, round(round((1.0 - gamma) * n, 9))))


def top_count(r_t: float, n: int, masked: int, count_rule: str = "masked_fraction") -> int:
    """Patches chosen by the teacher's loss, ``p``: ``floor(r_t m)`` (masked_fraction, the reference's
    ``int()``) or ``ceil(r_t n)`` capped at ``m`` (algorithm1)."""
    _check_rule(count_rule)
    if count_rule == "algorithm1":
        return min(count_for_ratio(r_t, n), masked)
    return min(masked, max(0, math.floor(round(r_t * masked, 9))))


#: how ``t`` advances in the masking dynamics: every step (default), or per epoch as the reference code
R_SCHEDULES = ("step", "epoch")


def significance_ratio(
    step: int, total_steps: int, r_start: float = 0.0, r_end: float = 0.5, schedule: str = "step", epoch_length: int | None = None,
) -> float:
    """Masking dynamics ``r_t = r_0 + f (r_T - r_0)``.

    ``schedule="step"``: ``f = t / T`` with ``t`` the step, clamped to ``[0, T]`` (the paper's formula).
    ``schedule="epoch"``: the reference code's ``f = (e + 1) / (E - 1)`` with ``e`` the 0-based epoch
    (``step // epoch_length``) and ``E = ceil(T / epoch_length)`` epochs: constant within an epoch,
    ``1 / (E - 1)`` in the first and ``E / (E - 1)`` (slightly above ``r_T``) in the last.
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    if schedule == "step":
        t = min(max(step, 0), total_steps)
        return r_start + (t / total_steps) * (r_end - r_start)
    if schedule != "epoch":
        raise ValueError(f"r_schedule must be one of {R_SCHEDULES}, got {schedule!r}")
    if not epoch_length or epoch_length <= 0:
        raise ValueError(f"r_schedule 'epoch' needs a positive epoch_length, got {epoch_length!r}")
    epochs = -(-total_steps // epoch_length)
    if epochs < 2:
        raise ValueError(f"r_schedule 'epoch' needs at least 2 epochs (num_steps {total_steps}, epoch_length {epoch_length})")
    epoch = min(max(step, 0), total_steps - 1) // epoch_length
    return r_start + ((epoch + 1) / (epochs - 1)) * (r_end - r_start)


def random_patch_mask(
    batch: int, n: int, gamma: float, generator: torch.Generator | None = None, device: torch.device | str | None = None,
    count_rule: str = "masked_fraction",
) -> torch.Tensor:
    """``(batch, n)`` bool: :func:`masked_count` uniformly random patches per sample."""
    return random_subset(batch, n, masked_count(gamma, n, count_rule), generator=generator, device=device)


def anatomical_mask(
    patch_loss: torch.Tensor,
    initial_mask: torch.Tensor,
    gamma: float,
    r_t: float,
    descending: bool = True,
    generator: torch.Generator | None = None,
    count_rule: str = "masked_fraction",
) -> torch.Tensor:
    """The final mask from the teacher's per-patch losses on the initial random mask.

    Args:
        patch_loss: ``(B, n)`` teacher reconstruction loss per patch (used where ``initial_mask``).
        initial_mask: ``(B, n)`` bool, the random mask the teacher reconstructed.
        gamma: overall masking ratio (0.6).
        r_t: anatomical-significance ratio at this step (0 .. 0.5).
        descending: rank the highest losses first (the method); False ranks the lowest first.
        generator: random generator for the fill (on the losses' device).
        count_rule: ``"masked_fraction"`` or ``"algorithm1"`` (module docstring).

    Returns:
        ``(B, n)`` bool with exactly ``m`` (:func:`masked_count`) True per row, containing the
        ``p`` (:func:`top_count`) top-ranked initially masked patches.
    """
    if patch_loss.shape != initial_mask.shape or patch_loss.dim() != 2:
        raise ValueError(f"patch_loss {tuple(patch_loss.shape)} and initial_mask {tuple(initial_mask.shape)} must both be (B, n)")
    b, n = patch_loss.shape
    total = masked_count(gamma, n, count_rule)
    masked_per_row = initial_mask.sum(dim=1)
    p = top_count(r_t, n, total, count_rule)
    if p and int(masked_per_row.min()) < p:
        raise ValueError(f"{p} top patches requested ({count_rule}) but a sample has only {int(masked_per_row.min())} initially masked patches")
    key = patch_loss.detach().float() if descending else -patch_loss.detach().float()
    key = key.masked_fill(~initial_mask, float("-inf"))  # only patches the teacher had to reconstruct are ranked
    final = torch.zeros(b, n, dtype=torch.bool, device=patch_loss.device)
    if p:
        final.scatter_(1, key.topk(p, dim=1).indices, True)
    if total > p:  # M_random: uniform over G \ M_top
        final |= random_subset(b, n, total - p, generator=generator, exclude=final)
    return final
