"""Where a run's checkpoints are and how they are named (``checkpoint_<iteration>.pt``)."""

from __future__ import annotations

import os
import re
from pathlib import Path

CHECKPOINT_NAME = "checkpoint_{iteration}.pt"
_CHECKPOINT_RE = re.compile(r"^checkpoint_(\d+)\.pt$")


def list_checkpoints(directory: str | os.PathLike) -> list[tuple[int, Path]]:
    """``(iteration, path)`` of every ``checkpoint_<iteration>.pt`` in ``directory``, oldest first."""
    d = Path(directory)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _CHECKPOINT_RE.match(p.name))]
    return sorted(found)


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The checkpoint with the highest iteration in ``directory``, or None."""
    found = list_checkpoints(directory)
    return found[-1][1] if found else None
