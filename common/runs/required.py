"""Commands that need a file a run makes (trained weights, an ONNX export, an encoder) stop in one line without it.

Without this, ``inference.json`` on a fresh clone ends deep in MONAI's ``CheckpointLoader`` with a
``FileNotFoundError`` wrapped in "Failed to evaluate ConfigExpression" and a long traceback. Each such
config's ``run`` list calls :func:`require_file` first, before any engine is built; a missing file
ends the command with one line (``SystemExit``: no traceback, exit status 1) that names the file, the
run folder, the command that makes it, and the override that points elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

#: config files that use a trained run's files rather than make them (swapped for train.json)
USING_CONFIGS = ("inference.json", "evaluate.json", "inference_onnx.json", "query.json")


def training_command(bundle_root: str | os.PathLike, bundle_run: Any = None) -> str:
    """The ``monai.bundle run`` command that trains what this command uses: this command's config files
    (``bundle_run``, a :class:`common.runs.BundleRun`) with the inference/evaluation ones replaced by
    ``train.json``, overlays such as ``demo.json`` kept; without ``bundle_run``, the bundle's ``train.json``."""
    from common.runs.workflow import WORKFLOW_NAME

    train = str(Path(bundle_root) / "configs" / "train.json")
    files: list[str] = []
    if bundle_run is not None:
        given = bundle_run.config_files
        files = [f for f in given if Path(f).name not in USING_CONFIGS]
        train = next((str(Path(f).with_name("train.json")) for f in given if Path(f).name in USING_CONFIGS), train)
    listed = [train, *files]
    spec = listed[0] if len(listed) == 1 else "\"[" + ",".join(f"'{f}'" for f in listed) + "]\""
    return f"python -m monai.bundle run --workflow_name {WORKFLOW_NAME} --config_file {spec}"


def require_file(path: str | os.PathLike, run_dir: str | os.PathLike, what: str, make: str, override: str) -> str:
    """``path`` if it is a file; else end the command with one line naming it, ``run_dir``, ``make`` and ``override``.

    An empty ``path`` is a config that asks for no file (e.g. retrieval's demo with a random encoder): nothing is required.
    """
    if not str(path) or Path(path).is_file():
        return str(path)
    raise SystemExit(f"no {what} at {path} (run folder {run_dir}): make it with `{make}`, or point {override} at a file you have")
