"""Progress bars for long work (preprocessing, pre-flight, inference over a folder, indexing, evidence runs).

A bar is drawn only where someone watches it: on a terminal (stderr is a TTY) and not in CI (``CI``
set). Elsewhere -- a log file, a SLURM output file, a pipe -- nothing is printed per item, so logs
keep one line per event. ``SSL3D_PROGRESS=1`` forces bars on, ``SSL3D_PROGRESS=0`` off.
tqdm comes with MONAI's ``tqdm`` extra.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def progress_enabled(enabled: bool | None = None) -> bool:
    """Whether to draw bars: ``enabled`` if given, else ``SSL3D_PROGRESS``, else a terminal outside CI."""
    if enabled is not None:
        return bool(enabled)
    forced = os.environ.get("SSL3D_PROGRESS", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    return sys.stderr.isatty() and not os.environ.get("CI")


def progress_bar(total: int | None, desc: str, unit: str = "case", enabled: bool | None = None) -> Any:
    """A tqdm bar (``update``, ``set_postfix_str``, ``close``, context manager); disabled (tqdm's
    ``disable``: every call does nothing) where :func:`progress_enabled` says no."""
    from tqdm.auto import tqdm

    tqdm.monitor_interval = 0  # no monitor thread (tqdm starts one even for a disabled bar): a process that forks stays single-threaded
    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=False, file=sys.stderr, disable=not progress_enabled(enabled))


def progress(iterable: Iterable[T], total: int | None = None, desc: str = "", unit: str = "case", enabled: bool | None = None) -> Iterator[T]:
    """``iterable`` with a bar (see :func:`progress_bar`)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with progress_bar(total, desc, unit, enabled) as bar:
        for item in iterable:
            yield item
            bar.update(1)
