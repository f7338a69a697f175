"""Helpers shared by the benchmarks (run as ``python bench/<name>.py``, so this folder is on the path):
a median timer and SubFore's bundle config with overrides."""

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
