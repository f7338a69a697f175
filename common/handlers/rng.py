"""The random generators of a training process, as a checkpoint entry.

A resumed run should continue the random streams (crops, flips, masks, dropout) where the killed run
left them, not replay the first epochs' draws from the seed. :class:`RNGState` has the
``state_dict()``/``load_state_dict()`` pair checkpoints use, covering torch (CPU and every CUDA
device), NumPy's and Python's global generators, and the private generator (``R``) of every random
MONAI transform in the given pipelines (nested ones included). Everything is stored as tensors, ints and tuples, so the
checkpoint still loads with ``torch.load(weights_only=True)``.

The training data itself does not depend on these states: its stream is addressed by position and
each sample seeds its own transforms (:mod:`common.data.sampler`), so what a loader had prefetched
does not matter. The process's generators saved here drive the rest -- masks, dropout -- and in a
single process a resumed run continues them exactly (tested). Under DDP only rank 0 writes
checkpoints: every rank loads rank 0's state, then re-seeds from it plus its rank, so ranks keep
drawing different masks (not bit for bit the uninterrupted run's).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from monai.transforms import Randomizable, Transform


def _randomizables(pipelines: Sequence[Any]) -> list[Randomizable]:
    """Every object with its own generator ``R`` in ``pipelines``, depth first in a fixed order,
    including transforms held inside other transforms (e.g. a view pipeline inside a sampler)."""
    found: list[Randomizable] = []
    seen: set[int] = set()

    def visit(obj: Any) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, (list, tuple)):
            for item in obj:
                visit(item)
            return
        if not isinstance(obj, (Randomizable, Transform)):
            return
        if isinstance(obj, Randomizable):
            found.append(obj)
        for value in vars(obj).values():
            if isinstance(value, (Randomizable, Transform, list, tuple)):
                visit(value)

    for p in pipelines:
        visit(p)
    return found


def _numpy_state(state: tuple) -> tuple:
    name, keys, pos, has_gauss, cached = state
    return (name, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached))


def _numpy_restore(state: tuple) -> tuple:
    name, keys, pos, has_gauss, cached = state
    return (name, np.asarray(keys.numpy() if torch.is_tensor(keys) else keys, dtype=np.uint32), pos, has_gauss, cached)


class RNGState:
    """Checkpoint entry for the process's random generators (see the module docstring).

    Args:
        pipelines: MONAI ``Compose`` pipelines (or single transforms) whose random transforms' own
            generators are saved too, e.g. ``@train#preprocessing``.
    """

    def __init__(self, pipelines: Any = None) -> None:
        if pipelines is None:
            pipelines = []
        self.pipelines = list(pipelines) if isinstance(pipelines, (list, tuple)) else [pipelines]

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "numpy": _numpy_state(np.random.get_state()),
            "python": random.getstate(),
            "transforms": [_numpy_state(t.R.get_state()) for t in _randomizables(self.pipelines)],
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"].cpu())
        np.random.set_state(_numpy_restore(state["numpy"]))
        random.setstate(state["python"])
        if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
        transforms = _randomizables(self.pipelines)
        if len(transforms) == len(state.get("transforms", [])):
            for t, s in zip(transforms, state["transforms"]):
                t.R.set_state(_numpy_restore(s))
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            self._decorrelate_ranks(dist.get_rank())

    def _decorrelate_ranks(self, rank: int) -> None:
        """Every rank loaded rank 0's streams: derive a per-rank seed from them."""
        seed = int(torch.randint(0, 2**31 - 1, (1,)).item()) + 7919 * rank
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
        for i, t in enumerate(_randomizables(self.pipelines)):
            t.set_random_state(seed=(seed + i) % 2**32)
