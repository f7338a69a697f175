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


def detectable_difference(baseline: Sequence[float], n: int | None = None, differences: Sequence[float] = (), level: float = 0.95,
                          power: float = 0.8) -> float:
    """The smallest paired difference a protocol with ``n`` seeds resolves with probability ``power``.

    ``(t_{(1+level)/2, n-1} + t_{power, n-1}) * s_d / sqrt(n)``, the usual paired-t design formula,
    with ``s_d`` the spread of a per-seed difference: ``sqrt(2)`` times the sample standard deviation
    of the baseline arm's per-seed values (the other arm assumed as spread, the two uncorrelated), or
    the observed ``differences``' own standard deviation where that is larger (an arm noisier than
    the baseline). ``n`` defaults to the baseline's count; ``nan`` with fewer than two values.
    """
    x = np.asarray([v for v in baseline if not math.isnan(v)], dtype=float)
    d = np.asarray([v for v in differences if not math.isnan(v)], dtype=float)
    n = len(x) if n is None else int(n)
    if len(x) < 2 or n < 2:
        return float("nan")
    spread = max(math.sqrt(2.0) * float(x.std(ddof=1)), float(d.std(ddof=1)) if len(d) >= 2 else 0.0)
    t = float(_scipy_stats.t.ppf((1 + level) / 2, n - 1)) + float(_scipy_stats.t.ppf(power, n - 1))
    return t * spread / math.sqrt(n)


def verdict(diff: Mapping[str, float], detectable: float) -> str:
    """How a paired difference reads: resolved when its interval excludes 0, else the size it could have shown."""
    low, high = diff.get("low", float("nan")), diff.get("high", float("nan"))
    if not (math.isnan(low) or math.isnan(high)) and (low > 0 or high < 0):
        return f"resolved ({'+' if low > 0 else '-'})"
    if math.isnan(detectable):
        return "not resolved (no spread to size it)"
    return f"not resolved: under {detectable:.3f} not detectable here"
