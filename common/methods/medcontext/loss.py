"""MedContext's per-step loss: two supervised terms and the masked-context term.

    L = S(student(x), y) + S(student(mask(x)), y) + beta * MSE(teacher(x), student(mask(x))) / ||teacher(x)||_2

``S`` is the segmentation loss (DiceCE), ``MSE`` the mean over every logit, and ``||.||_2`` the
Euclidean norm of the whole teacher logit tensor of the batch, as in the reference implementation.
The teacher's logits carry no gradient. When the model gives no teacher logits (``teacher`` None, its
``teacher_logits`` off) the context term is not computed: ``beta`` must then be 0, and the logged
``context`` term is NaN (not measured). When the masked logits are the clean ones (the same tensor:
``mask_ratio`` 0) the segmentation loss is computed once and counted twice, as the formula says.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from common.engines.method_output import MethodOutput, require
from common.methods.medcontext.model import OUTPUT_KEYS


def context_loss(teacher_logits: torch.Tensor, student_masked_logits: torch.Tensor) -> torch.Tensor:
    """``MSE(teacher, student_masked) / ||teacher||_2`` over the batch; teacher detached. Shapes ``(B, K, ...)``."""
    teacher = teacher_logits.detach().float()
    return F.mse_loss(student_masked_logits.float(), teacher) / torch.linalg.vector_norm(teacher).clamp_min(1e-12)


class MedContextLoss(nn.Module):
    """Total MedContext loss from the training output of :class:`common.methods.medcontext.MedContextModel`; the three terms of the last call are in ``terms``.

    Args:
        seg_loss: supervised loss ``(logits, label) -> scalar`` (e.g. ``DiceCELoss``).
        beta: weight of the context term (0.5 in the paper).
    """

    def __init__(self, seg_loss: nn.Module, beta: float = 0.5) -> None:
        super().__init__()
        self.seg_loss = seg_loss
        self.beta = beta
        self.terms: dict[str, torch.Tensor] = {}

    def forward(self, output: MethodOutput, target: torch.Tensor) -> torch.Tensor:
        output = require(output, OUTPUT_KEYS, "MedContextLoss")
        seg_clean = self.seg_loss(output.student, target)
        seg_masked = seg_clean if output.student_masked is output.student else self.seg_loss(output.student_masked, target)
        if output.teacher is None:
            if self.beta != 0:
                raise ValueError(f"MedContextLoss: beta is {self.beta} but the model computed no teacher logits "
                                 "(MedContextModel teacher_logits=False); turn teacher_logits on or set beta to 0")
            context = torch.full_like(seg_clean, float("nan"))
            total = seg_clean + seg_masked
        else:
            context = context_loss(output.teacher, output.student_masked)
            total = seg_clean + seg_masked + self.beta * context
        # detached tensors: converting here would synchronise the GPU every step; loggers call float()
        self.terms = {"seg_clean": seg_clean.detach(), "seg_masked": seg_masked.detach(), "context": context.detach()}
        return total
