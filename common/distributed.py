"""The few torch.distributed facts the collection needs, true with or without a process group."""

from __future__ import annotations

import torch.distributed as dist


def is_initialized() -> bool:
    """True inside an initialised process group (torchrun with ``multi_gpu_train.json``)."""
    return dist.is_available() and dist.is_initialized()


def is_main_process() -> bool:
    """True unless this is a non-zero rank of an initialised process group."""
    return not is_initialized() or dist.get_rank() == 0


def world_size() -> int:
    """Number of processes of the group (1 without one)."""
    return dist.get_world_size() if is_initialized() else 1


def barrier() -> None:
    """Wait for every rank (a no-op without a process group)."""
    if is_initialized():
        dist.barrier()
