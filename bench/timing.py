"""Helpers shared by the benchmarks (run as ``python bench/<name>.py``, so this folder is on the path):
a median timer, SubFore's bundle config with overrides, and SubFore's training step."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from monai.bundle import ConfigParser

SUBFORE_TRAIN = Path(__file__).resolve().parent.parent / "bundles" / "subfore_pretrain" / "configs" / "train.json"


def subfore_config(**overrides) -> ConfigParser:
    """``subfore_pretrain``'s train.json with ``overrides`` (``bundle_root`` defaults to the temp folder)."""
    parser = ConfigParser()
    parser.read_config(str(SUBFORE_TRAIN))
    parser.update({"bundle_root": tempfile.gettempdir(), **overrides})
    return parser


def subfore_step(parser: ConfigParser, network: torch.nn.Module, dtype: torch.dtype | None) -> Callable[[torch.Tensor], None]:
    """``step(images)``: one SubFore training step with the bundle's masker and loss -- masking, forward of ``network``
    under autocast in ``dtype`` (``None``: fp32), masked L1, backward, AdamW; a ``GradScaler`` for fp16."""
    from common.engines import MethodOutput

    masker, loss_fn = parser.get_parsed_content("masker"), parser.get_parsed_content("loss")
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-4)
    device_type = next(network.parameters()).device.type
    scaler = torch.amp.GradScaler(device_type, enabled=dtype == torch.float16)

    def step(images: torch.Tensor) -> None:
        masked, voxel_mask = masker(images)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type, dtype=dtype, enabled=dtype is not None):
            loss = loss_fn(MethodOutput(reconstruction=network(masked), mask=voxel_mask), images)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return step


def median_time(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median wall time in seconds of ``fn()`` over ``repeats`` runs after one warm-up (CUDA synchronised)."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)
