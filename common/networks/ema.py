"""EMA teachers: a frozen copy of a network, and the in-place moving average of its weights."""

from __future__ import annotations

import copy

import torch
from torch import nn


@torch.no_grad()
def ema_update_(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """``teacher = momentum * teacher + (1 - momentum) * student`` for every parameter (one fused
    ``_foreach`` call per step, no per-tensor Python work); buffers (norm statistics) are copied."""
    t_params = list(teacher.parameters())
    s_params = [p.detach() for p in student.parameters()]
    if len(t_params) != len(s_params):
        raise ValueError(f"teacher has {len(t_params)} parameters, student {len(s_params)}: not the same architecture")
    torch._foreach_mul_(t_params, momentum)
    torch._foreach_add_(t_params, s_params, alpha=1.0 - momentum)
    for t_buf, s_buf in zip(teacher.buffers(), student.buffers()):
        t_buf.copy_(s_buf)


def frozen_copy(network: nn.Module) -> nn.Module:
    """A deep copy of ``network`` whose parameters take no gradients (the teacher starts as the student)."""
    teacher = copy.deepcopy(network)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher
