"""Progress bars: on a terminal outside CI (or when asked), never per-step lines in a log file."""

from __future__ import annotations

import pytest
from ignite.engine import Engine

from common.handlers import ProgressBarHandler
from common.progress import progress, progress_bar, progress_enabled


def test_bars_only_where_someone_watches(monkeypatch):
    monkeypatch.delenv("SSL3D_PROGRESS", raising=False)
    monkeypatch.setenv("CI", "true")
    assert progress_enabled() is False  # CI logs
    monkeypatch.delenv("CI")
    monkeypatch.setattr("sys.stderr.isatty", lambda: False)
    assert progress_enabled() is False  # a log file or a pipe
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    assert progress_enabled() is True
    monkeypatch.setenv("SSL3D_PROGRESS", "0")
    assert progress_enabled() is False and progress_enabled(True) is True
    monkeypatch.setenv("SSL3D_PROGRESS", "1")
    monkeypatch.setattr("sys.stderr.isatty", lambda: False)
    assert progress_enabled() is True


def test_silent_bar_passes_items_through_and_a_real_one_counts(monkeypatch, capsys):
    assert list(progress(range(5), enabled=False)) == list(range(5))
    assert capsys.readouterr().err == ""
    with progress_bar(3, "cases", enabled=True) as bar:
        for _ in range(3):
            bar.update(1)
        assert bar.n == 3


def test_engine_bar_attaches_only_when_enabled(capsys):
    def engine() -> Engine:
        return Engine(lambda e, b: b)

    off, on = engine(), engine()
    assert ProgressBarHandler(False, "quiet").attach(off) is None
    off.run([1, 2, 3], max_epochs=1)
    assert "quiet" not in capsys.readouterr().err
    assert ProgressBarHandler(True, "training").attach(on) is not None
    on.run([1, 2, 3], max_epochs=1)
    assert "training" in capsys.readouterr().err
    with pytest.raises(ValueError, match="True, False or 'auto'"):
        ProgressBarHandler("yes")
