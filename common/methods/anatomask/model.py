"""AnatoMask's student/teacher pair: the teacher's reconstruction loss picks the student's mask.

One training forward (Algorithm 1 of the paper, all on the device, vectorized over the batch):

1. a random mask of ratio ``gamma`` over the 16^3 patch grid;
2. the EMA teacher reconstructs that masked input (no gradients) and its per-patch loss is computed
   against per-patch normalised targets (``teacher_normalized_targets=False``: the reference code's
   raw targets);
3. :func:`common.methods.anatomask.anatomical_mask` keeps the ``p`` highest-loss masked patches and
   fills randomly to ``m`` (``count_rule``: ``p = floor(r_t m)``, the paper's text and the reference
   code, or ``ceil(r_t n)``, Algorithm 1); ``r_t`` follows the masking dynamics over training;
4. the student reconstructs the input under that final mask.

The step counter that drives ``r_t`` is a buffer, so it is saved in checkpoints and a resumed run
continues the schedule. ``teacher="random"`` keeps the teacher at its random initialisation (the
paper's "no self-distillation" ablation row): :meth:`update_teacher` then does nothing.
"""

from __future__ import annotations

import torch
from torch import nn

from common.methods.anatomask.patches import normalized_patches, per_patch_mse
from common.methods.anatomask.masking import (
    COUNT_RULES,
    anatomical_mask,
    random_patch_mask,
    significance_ratio,
)
from common.engines.method_output import MethodOutput
from common.networks.ema import ema_update_, frozen_copy
from common.methods.anatomask.sparse_unet import SparKDynUNet, visible_grid


#: keys of an AnatoMask training forward: student ``reconstruction`` ``(B, C, D, H, W)``, final
#: ``patch_mask`` ``(B, n)`` bool, the ``r_t`` used (float), and the per-patch normalised ``targets``
#: ``(B, n, C * p^3)`` (computed once per step for teacher and student)
OUTPUT_KEYS = ("reconstruction", "patch_mask", "r_t", "targets")


class AnatoMaskModel(nn.Module):
    """Student and EMA teacher (:class:`SparKDynUNet` each) with AnatoMask's mask generation.

    Args:
        network: a ``DynUNet`` (residual blocks, strides ``[1, 2, 2, 2, 2]``).
        total_steps: training steps ``T`` of the masking dynamics.
        gamma: masking ratio (0.6).
        r_start, r_end: ``r_0`` and ``r_T`` (0 and 0.5: easy-to-hard; swap for hard-to-easy).
        descending: rank the highest teacher losses first (False: the "low significance" ablation).
        teacher: ``"ema"`` (the method) or ``"random"`` (frozen random teacher, ablation).
        teacher_normalized_targets: rank by the loss against normalised targets (default) or raw ones.
        patch_size: mask patch edge (16).
        count_rule: ``"masked_fraction"`` (``r_t`` of the masked patches: paper text, reference code) or
            ``"algorithm1"`` (``r_t`` of all patches, the paper's Algorithm 1);
            see :mod:`common.methods.anatomask.masking`.
        r_schedule, epoch_length: ``"step"`` (``t / T`` per step) or ``"epoch"`` (the reference's
            ``(e + 1) / (E - 1)`` per epoch of ``epoch_length`` steps); see :func:`significance_ratio`.
    """

    def __init__(
        self,
        network: nn.Module,
        total_steps: int,
        gamma: float = 0.6,
        r_start: float = 0.0,
        r_end: float = 0.5,
        descending: bool = True,
        teacher: str = "ema",
        teacher_normalized_targets: bool = True,
        patch_size: int = 16,
        count_rule: str = "masked_fraction",
        r_schedule: str = "step",
        epoch_length: int | None = None,
    ) -> None:
        super().__init__()
        if teacher not in ("ema", "random"):
            raise ValueError(f"teacher must be 'ema' or 'random', got {teacher!r}")
        if count_rule not in COUNT_RULES:
            raise ValueError(f"count_rule must be one of {COUNT_RULES}, got {count_rule!r}")
        bound = gamma if count_rule == "algorithm1" else 1.0  # a fraction of all patches cannot exceed gamma
        if not (0.0 <= min(r_start, r_end) and max(r_start, r_end) <= bound):
            raise ValueError(f"r_start ({r_start}) and r_end ({r_end}) must lie in [0, {bound:g}] with count_rule {count_rule!r}")
        self.count_rule = count_rule
        self.r_schedule, self.epoch_length = r_schedule, epoch_length
        significance_ratio(0, total_steps, r_start, r_end, r_schedule, epoch_length)  # refuse a bad schedule before training
        self.student = SparKDynUNet(network, patch_size)
        self.teacher = frozen_copy(self.student)
        self.total_steps = total_steps
        self.gamma, self.r_start, self.r_end = gamma, r_start, r_end
        self.descending = descending
        self.teacher_mode = teacher
        self.teacher_normalized_targets = teacher_normalized_targets
        self.patch_size = patch_size
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))

    @property
    def network(self) -> nn.Module:
        """The student's plain ``DynUNet`` (what is exported and fine-tuned downstream)."""
        return self.student.network

    def r_t(self) -> float:
        return significance_ratio(int(self.steps_done), self.total_steps, self.r_start, self.r_end, self.r_schedule, self.epoch_length)

    def make_mask(self, images: torch.Tensor, targets: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
        """Algorithm 1 for ``images`` ``(B, C, D, H, W)``: ``((B, n) bool final mask, r_t)``.

        ``targets``: the step's normalised patch targets, reused for the teacher's ranking loss.
        """
        grid = visible_grid(images, self.patch_size)
        b, n = images.shape[0], grid[0] * grid[1] * grid[2]
        initial = random_patch_mask(b, n, self.gamma, device=images.device, count_rule=self.count_rule)
        r_t = self.r_t()
        if r_t <= 0.0:  # nothing is chosen by loss: the teacher's pass would be wasted
            return initial, r_t
        with torch.no_grad():
            reconstruction = self.teacher(images, ~initial.view(b, *grid))
            normalized = self.teacher_normalized_targets
            losses = per_patch_mse(reconstruction, images, self.patch_size, normalize=normalized, targets=targets if normalized else None)
        return anatomical_mask(losses, initial, self.gamma, r_t, descending=self.descending, count_rule=self.count_rule), r_t

    def forward(self, images: torch.Tensor) -> MethodOutput | torch.Tensor:
        """Training: a :class:`common.engines.MethodOutput` with :data:`OUTPUT_KEYS` (and one step
        counted). Evaluation: the plain network's output."""
        if not self.training:
            return self.network(images)
        targets = normalized_patches(images, self.patch_size)
        mask, r_t = self.make_mask(images, targets)
        grid = visible_grid(images, self.patch_size)
        reconstruction = self.student(images, ~mask.view(images.shape[0], *grid))
        self.steps_done += 1
        return MethodOutput(reconstruction=reconstruction, patch_mask=mask, r_t=r_t, targets=targets)

    def update_teacher(self, momentum: float) -> None:
        if self.teacher_mode == "ema":
            ema_update_(self.teacher, self.student, momentum)

