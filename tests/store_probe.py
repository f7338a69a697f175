"""Test instrument: a dataset wrapper that appends each case index a rank reads to ``<log_dir>/reads_rank<r>.txt``.

Used by the two-"node" torchrun test to see which cases each rank read; a bundle's ``train#dataset`` is
wrapped by an override (``{"_target_": "store_probe.RecordingDataset", "dataset": {...the original...}}``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from common.distributed import is_initialized


class RecordingDataset:
    def __init__(self, dataset: Any, log_dir: str) -> None:
        import torch.distributed as dist

        self.dataset = dataset
        self.transform = dataset.transform
        rank = dist.get_rank() if is_initialized() else 0
        self.log = Path(log_dir) / f"reads_rank{rank}.txt"
        self.log.parent.mkdir(parents=True, exist_ok=True)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: Any) -> Any:
        with open(self.log, "a") as f:
            f.write(f"{int(index)} {os.getpid()}\n")
        return self.dataset[index]
