"""Seeded subsets of the training cases, for label-efficiency experiments."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import TypeVar

import numpy as np

logger = logging.getLogger(__name__)
T = TypeVar("T")


def take_fraction(items: Sequence[T], fraction: float = 1.0, seed: int = 0) -> list[T]:
    """``ceil(fraction * len(items))`` cases (at least one) drawn without replacement with ``seed``.

    The draw is nested: for one seed, the cases of a smaller fraction are a subset of those of a
    larger one (a prefix of one permutation), so curves over fractions differ only in added labels.
    Order of the kept cases follows ``items``.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"train_fraction must be in (0, 1], got {fraction}")
    n = max(1, math.ceil(fraction * len(items)))
    if fraction == 1.0:
        logger.info(f"train_fraction 1.0: training on {n} of {len(items)} labelled cases.")
        return list(items)
    keep = sorted(np.random.default_rng(seed).permutation(len(items))[:n].tolist())
    logger.info(f"train_fraction {fraction}: training on {n} of {len(items)} labelled cases (seed {seed}).")
    return [items[i] for i in keep]
