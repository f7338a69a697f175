"""A progress bar on an engine (training with ``--progress True``, inference and retrieval indexing by default).

Ignite's ``ProgressBar`` (tqdm) is attached only where a bar can be watched (:mod:`common.progress`:
a terminal outside CI, or ``SSL3D_PROGRESS=1``), so log files and SLURM outputs keep one line per
logged event, not one per step.
"""

from __future__ import annotations

from typing import Any

from ignite.engine import Engine

from common.progress import progress_enabled


class ProgressBarHandler:
    """Attach Ignite's ``ProgressBar`` when ``enabled`` says so.

    Args:
        enabled: ``True``/``False``, or ``"auto"`` (on a terminal outside CI; see :mod:`common.progress`).
        desc: the bar's label.
    """

    def __init__(self, enabled: bool | str = "auto", desc: str = "") -> None:
        if isinstance(enabled, str) and enabled != "auto":
            raise ValueError(f"progress: {enabled!r} must be True, False or 'auto'")
        self.enabled = enabled
        self.desc = desc

    def attach(self, engine: Engine) -> Any:
        if not progress_enabled(None if self.enabled == "auto" else bool(self.enabled)):
            return None
        from ignite.handlers import ProgressBar

        bar = ProgressBar(persist=False, desc=self.desc)
        bar.attach(engine)
        return bar
