"""MedContext's student/teacher pair around any MONAI segmentation network.

The student is trained; the teacher is an exponential moving average of it (no gradients). In
training mode one forward returns what the MedContext loss needs: the student's logits on the clean
input, the student's logits on the masked input, and the teacher's logits on the clean input.

Masking (a :func:`common.methods.medcontext.tube_mask` on the ``patch_size`` grid of the ROI):

- ``"token"`` (ViT encoders: MONAI's UNETR, or any network with a ``patch_embedding`` module):
  after the patch embedding, masked tokens are replaced by a learnable mask token, as in the
  reference. The convolutional skip path of UNETR still sees the clean input, also as there.
- ``"input"`` (any other network: SwinUNETR, SegResNet, ...): the masked ``patch_size^3`` cubes of the
  input are replaced by a learnable per-channel value.

``batched_student`` runs both student passes as one forward over a ``2B`` batch (the mask applies to
the second half). It equals two passes for networks without batch-statistics layers (instance/group/
layer norm); with BatchNorm the statistics are pooled over both halves, so turn it off there if
that matters.

Degenerate settings cost no more than what they compute (the supervised baseline of a comparison):
with ``mask_ratio`` 0 the masked input is the clean input, so the masked pass is the clean pass and
is not run again (``student_masked`` is ``student``, the same tensor); with ``teacher_logits`` off
(the bundle's ``beta`` 0: only the context term reads them) the teacher's forward is skipped and
``teacher`` is None. The teacher is still the student's EMA either way.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from common.engines.method_output import MethodOutput
from common.masking.grid import expand_grid
from common.methods.medcontext.masking import tube_mask
from common.networks.ema import ema_update_, frozen_copy
from common.networks.weights import input_channels


#: keys of a MedContext training forward: logits ``(B, K, D, H, W)`` and the patch mask ``(B, Gd, Gh, Gw)``
OUTPUT_KEYS = ("student", "student_masked", "teacher", "grid_mask")


def find_patch_embedding(network: nn.Module) -> nn.Module | None:
    """The ViT patch-embedding module of ``network`` (``vit.patch_embedding`` in UNETR), or None."""
    for owner in (getattr(network, "vit", None), network):
        module = getattr(owner, "patch_embedding", None) if owner is not None else None
        if isinstance(module, nn.Module):
            return module
    return None


class MedContextModel(nn.Module):
    """Student, EMA teacher and mask token; ``forward`` in training mode returns a
    :class:`common.engines.MethodOutput` with :data:`OUTPUT_KEYS`.

    Args:
        network: the segmentation network (becomes the student; the teacher is a copy).
        mask_ratio: fraction of in-plane grid positions masked (tube mask).
        patch_size: edge of the mask grid's cubes in voxels (16: UNETR's patches; 6^3 for a 96^3 ROI).
        mask_space: ``"token"``, ``"input"`` or ``"auto"`` (token when a patch embedding is found).
        per_sample_mask: one mask per sample instead of one per batch (the reference draws one per batch).
        batched_student: both student passes in one forward (see the module docstring).
        teacher_logits: compute the teacher's logits in the training forward (the context term's
            target); off, ``teacher`` is None (see the module docstring).
    """

    def __init__(
        self,
        network: nn.Module,
        mask_ratio: float = 0.6,
        patch_size: int = 16,
        mask_space: str = "auto",
        per_sample_mask: bool = False,
        batched_student: bool = True,
        teacher_logits: bool = True,
    ) -> None:
        super().__init__()
        if mask_space not in ("auto", "token", "input"):
            raise ValueError(f"mask_space must be 'auto', 'token' or 'input', got {mask_space!r}")
        if not 0.0 <= mask_ratio <= 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1], got {mask_ratio}")
        self.student = network
        self.teacher = frozen_copy(network)
        self.mask_ratio = mask_ratio
        self.patch_size = patch_size
        self.per_sample_mask = per_sample_mask
        self.batched_student = batched_student
        self.teacher_logits = teacher_logits
        embedding = find_patch_embedding(network)
        if mask_space == "token" and embedding is None:
            raise ValueError(f"mask_space 'token' needs a ViT patch embedding; {type(network).__name__} has none (use 'input')")
        self.mask_space = "token" if (mask_space == "auto" and embedding is not None) else ("input" if mask_space == "auto" else mask_space)
        self._token_mask: tuple[torch.Tensor, int] | None = None  # (mask (rows, L) bool, first masked row)
        if self.mask_space == "token":
            hidden = self._hidden_size(embedding)
            self.mask_token = nn.Parameter(torch.zeros(1, 1, hidden))
            embedding.register_forward_hook(self._mask_tokens)
        else:
            in_channels = input_channels(network)
            self.mask_token = nn.Parameter(torch.zeros(1, in_channels, 1, 1, 1))

    @staticmethod
    def _hidden_size(embedding: nn.Module) -> int:
        pos = getattr(embedding, "position_embeddings", None)
        if isinstance(pos, torch.Tensor):
            return int(pos.shape[-1])
        raise ValueError(f"cannot tell the token width of {type(embedding).__name__} (no position_embeddings)")

    def student_parameters(self) -> Iterator[nn.Parameter]:
        """What the optimiser trains: the student and the mask token (never the teacher)."""
        yield from self.student.parameters()
        yield self.mask_token

    def _mask_tokens(self, module: nn.Module, inputs: tuple, tokens: torch.Tensor) -> torch.Tensor | None:
        if self._token_mask is None:
            return None
        mask, start = self._token_mask
        if not start:
            return torch.where(mask[..., None], self.mask_token.to(tokens.dtype), tokens)
        clean, rest = tokens.split([start, tokens.shape[0] - start])  # split: its backward is one cat, not two zero-filled copies
        return torch.cat([clean, torch.where(mask[..., None], self.mask_token.to(tokens.dtype), rest)])

    def _mask_input(self, images: torch.Tensor, grid_mask: torch.Tensor) -> torch.Tensor:
        voxels = expand_grid(grid_mask, self.patch_size)
        return torch.where(voxels, self.mask_token.to(images.dtype), images)

    def _student_masked(self, images: torch.Tensor, grid_mask: torch.Tensor, batched: bool) -> tuple[torch.Tensor | None, torch.Tensor]:
        """``(clean logits or None, masked logits)``; with ``batched`` both come from one forward."""
        b = images.shape[0]
        if self.mask_space == "input":
            masked_in = self._mask_input(images, grid_mask)
            if batched:
                clean, masked = self.student(torch.cat([images, masked_in])).split(b)
                return clean, masked
            return None, self.student(masked_in)
        self._token_mask = (grid_mask.reshape(b, -1), b if batched else 0)
        try:
            out = self.student(torch.cat([images, images]) if batched else images)
        finally:
            self._token_mask = None
        if batched:
            clean, masked = out.split(b)
            return clean, masked
        return None, out

    def make_mask(self, images: torch.Tensor) -> torch.Tensor:
        """A ``(B, Gd, Gh, Gw)`` tube mask for ``images`` ``(B, C, D, H, W)`` (sizes divisible by ``patch_size``)."""
        spatial = images.shape[2:]
        if any(s % self.patch_size for s in spatial):
            raise ValueError(f"ROI {tuple(spatial)} is not divisible by the mask patch size {self.patch_size}")
        grid = tuple(s // self.patch_size for s in spatial)
        return tube_mask(grid, self.mask_ratio, images.shape[0], self.per_sample_mask, device=images.device)

    def forward(self, images: torch.Tensor) -> MethodOutput | torch.Tensor:
        """Training: ``MethodOutput(student, student_masked, teacher, grid_mask)``. Evaluation: the student's logits."""
        if not self.training:
            return self.student(images)
        mask = self.make_mask(images)
        if self.mask_ratio == 0.0:  # nothing masked: the masked pass would repeat the clean one
            clean = masked = self.student(images)
        else:
            clean, masked = self._student_masked(images, mask, self.batched_student)
            if clean is None:
                clean = self.student(images)
        teacher = None
        if self.teacher_logits:
            with torch.no_grad():
                teacher = self.teacher(images)
        return MethodOutput(student=clean, student_masked=masked, teacher=teacher, grid_mask=mask)

    def update_teacher(self, momentum: float) -> None:
        """``teacher = momentum * teacher + (1 - momentum) * student``, every parameter; buffers copied."""
        ema_update_(self.teacher, self.student, momentum)
