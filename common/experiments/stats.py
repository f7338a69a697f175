"""Intervals for the evidence card: over seeds (Student t), over cases (percentile bootstrap), and
the paired difference of two encoders that share seeds and splits.

SciPy (a MONAI extra pinned in requirements.txt) gives the t quantile; nothing else is needed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats as _scipy_stats


def t_interval(values: Sequence[float], level: float = 0.95) -> dict[str, float]:
    """``{"mean", "low", "high", "n"}``: ``mean +- t_{n-1, (1+level)/2} s / sqrt(n)`` (``s`` the sample
    standard deviation). With one value the interval is unbounded (``nan``): one seed says nothing
    about the spread."""
    x = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    n = len(x)
    if n == 0:
        return {"mean": float("nan"), "low": float("nan"), "high": float("nan"), "n": 0}
    mean = float(x.mean())
    if n == 1:
        return {"mean": mean, "low": float("nan"), "high": float("nan"), "n": 1}
    half = float(_scipy_stats.t.ppf((1 + level) / 2, n - 1)) * float(x.std(ddof=1)) / math.sqrt(n)
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": n}


def bootstrap_interval(values: Sequence[float], level: float = 0.95, resamples: int = 2000, seed: int = 0) -> dict[str, float]:
    """Percentile bootstrap of the mean over ``values`` (e.g. per-case Dice): ``{"mean", "low", "high", "n"}``.
    Fewer than two values give no interval (NaN bounds): one case says nothing of the spread over cases."""
    x = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    if len(x) < 2:
        return {"mean": float(x.mean()) if len(x) else float("nan"), "low": float("nan"), "high": float("nan"), "n": len(x)}
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(resamples, len(x)))].mean(1)
    alpha = (1 - level) / 2
    return {"mean": float(x.mean()), "low": float(np.quantile(means, alpha)), "high": float(np.quantile(means, 1 - alpha)), "n": len(x)}


def paired_difference(a: Mapping[int, float], b: Mapping[int, float], level: float = 0.95) -> dict[str, float]:
    """``a - b`` over the seeds both have (same seed: same split and initialisation order), as
    :func:`t_interval` of the per-seed differences."""
    common = sorted(set(a) & set(b))
    return t_interval([a[s] - b[s] for s in common], level)
