"""The process's random generators re-seeded at every iteration from ``(seed, iteration, rank)``.

What a training step draws from the global generators -- SubFore's and AnatoMask's masks, MedContext's
context masks, dropout -- is then a function of the step, not of everything drawn before it. A run
resumed at iteration ``i`` (after a kill, a pre-emption, on any number of ranks) draws what the
uninterrupted run drew at ``i``; checkpoints hold no generator state. The data stream has its own
per-sample seeds (:mod:`common.data.sampler`), so the loader's prefetching changes nothing.

Fills a gap of Ignite's ``DeterministicEngine``: it re-seeds per iteration too, but MONAI's
``SupervisedTrainer`` derives from Ignite's plain ``Engine``.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from ignite.engine import Engine, Events

from common.distributed import is_initialized
from common.seeding import mix_seed


class IterationSeed:
    """Seed torch (CPU and every GPU), NumPy and Python from ``(seed, iteration, rank)`` before every iteration.

    Args:
        seed: the run's seed.
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        import torch.distributed as dist

        rank = dist.get_rank() if is_initialized() else 0
        value = mix_seed(self.seed, engine.state.iteration, rank, 0x17E5)
        torch.manual_seed(value)
        np.random.seed(value)
        random.seed(value)
