"""The training data stream as a function of position: the same run draws the same samples, resumed or not.

A training loader here is an endless stream: pass ``p`` over the cases is a permutation drawn from
``(seed, p)``; under DDP each pass is split across the ranks as ``DistributedSampler`` splits it
(padded to a multiple of the world size, rank ``r`` taking every ``world``-th case); sample ``k`` of a
rank's stream is case ``order(p)[r::world][j]`` with ``p, j = divmod(k, n_per_rank)``, and it carries
its own seed, derived from ``(seed, p, global position)``, that the dataset gives its random transforms
before it runs them (:class:`SeededItems`).

So nothing about the stream lives in the loader's state: a run resumed at iteration ``i`` starts the
stream at sample ``i * batch_size`` (:meth:`StreamSampler.attach`) and draws exactly the crops and
augmentations the uninterrupted run drew, however many batches the loader had prefetched when the
checkpoint was written. Ignite epochs (``epoch_length``) are only a logging and scheduling unit: they
do not restart the stream.

Fills two gaps: ``torch``'s ``RandomSampler``/``DistributedSampler`` draw a new order from a global
generator per ``iter()`` and cannot start mid-pass, and MONAI's random transforms keep one generator
per transform whose position depends on what the loader prefetched.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sized
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from torch.utils.data import Sampler

from common.distributed import is_initialized
from common.seeding import mix_seed

logger = logging.getLogger(__name__)


class SeededIndex(int):
    """A dataset index that carries the seed of the sample's random transforms (``seed``)."""

    seed: int

    def __new__(cls, index: int, seed: int) -> SeededIndex:
        obj = super().__new__(cls, index)
        obj.seed = seed
        return obj

    def __reduce__(self) -> tuple:  # survives the trip to a DataLoader worker process
        return SeededIndex, (int(self), self.seed)


class StreamSampler(Sampler[int]):
    """Endless, position-addressed sample stream of one rank (see the module docstring).

    Args:
        data_source: the dataset (only its length is used).
        shuffle: permute each pass (``False``: case order, for debugging).
        seed: the run's seed.
        num_replicas, rank: the DDP world (default: the initialised process group, else 1 and 0).
    """

    def __init__(self, data_source: Sized, shuffle: bool = True, seed: int = 0, num_replicas: int | None = None,
                 rank: int | None = None) -> None:
        import torch.distributed as dist

        self.num_cases = len(data_source)
        if self.num_cases < 1:
            raise ValueError("the training dataset is empty: no case to sample")
        self.shuffle, self.seed = shuffle, int(seed)
        self.num_replicas = num_replicas if num_replicas is not None else (dist.get_world_size() if is_initialized() else 1)
        self.rank = rank if rank is not None else (dist.get_rank() if is_initialized() else 0)
        self.per_rank = -(-self.num_cases // self.num_replicas)
        self.start = 0
        self._pass: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        """Samples of one pass on this rank (the stream itself does not end)."""
        return self.per_rank

    def order(self, p: int) -> np.ndarray:
        """This rank's cases in pass ``p``."""
        if self._pass is None or self._pass[0] != p:
            if self.shuffle:
                g = torch.Generator().manual_seed(mix_seed(self.seed, p, 0x5EED))
                order = torch.randperm(self.num_cases, generator=g).numpy()
            else:
                order = np.arange(self.num_cases)
            total = self.per_rank * self.num_replicas
            order = np.resize(order, total)  # pad by repeating the start, as DistributedSampler does
            self._pass = (p, order[self.rank:total:self.num_replicas])
        return self._pass[1]

    def sample(self, k: int) -> SeededIndex:
        """Sample ``k`` of this rank's stream: its case and its seed."""
        p, j = divmod(k, self.per_rank)
        return SeededIndex(int(self.order(p)[j]), mix_seed(self.seed, p, j * self.num_replicas + self.rank))

    def __iter__(self) -> Iterator[SeededIndex]:
        k = self.start
        while True:
            yield self.sample(k)
            k += 1

    def start_at(self, samples: int) -> None:
        """Make the next ``iter()`` begin at sample ``samples`` of this rank's stream."""
        self.start = int(samples)

    def attach(self, engine: Engine, batch_size: int) -> None:
        """At the start of every ``engine.run`` (after a checkpoint was loaded), begin the stream at the
        engine's iteration: sample ``iteration * batch_size``. Attach after the resume handler."""

        def begin(e: Engine) -> None:
            self.start_at(e.state.iteration * batch_size)
            if e.state.iteration:
                logger.info(f"Data stream continues at sample {self.start} of rank {self.rank} (iteration {e.state.iteration}).")

        engine.add_event_handler(Events.STARTED, begin)


class SeededItems:
    """Mixin for a MONAI dataset: an index from :class:`StreamSampler` seeds the random transforms first.

    ``transform.set_random_state(seed)`` is MONAI's own seeding (``Compose`` hands each random transform
    a seed drawn from it), done per sample instead of once per loader. Plain ``int`` indices (validation,
    a bare loop) leave the transforms' generators as they are.
    """

    def __getitem__(self, index: Any) -> Any:
        seed = getattr(index, "seed", None)
        if seed is None:
            return super().__getitem__(index)  # type: ignore[misc]
        self.transform.set_random_state(seed=seed)  # type: ignore[attr-defined]
        return super().__getitem__(int(index))  # type: ignore[misc]
