"""Provenance records: a JSON file next to every exported weight file, saying which run made it.

``models/model.pt`` gets ``models/model.json``, ``encoder.pt`` gets ``encoder.json``, a MedContext
``teacher.pt`` gets ``teacher.json``. A record holds:

- ``file``, ``sha256``: the weight file it describes (so a record copied next to another file is caught);
- ``kind``: ``full network``, ``encoder``, ``best model`` or ``best teacher``;
- ``bundle``, ``bundle_version``; ``run``: the run's fingerprint and length (:mod:`common.runs.identity`);
- ``network``: class and family (what the weights load into);
- ``preprocessing``: what a downstream bundle must match (orientation, spacing, intensity mapping,
  input channels); checked on load by :mod:`common.runs.contract`;
- ``training``: iteration, epoch, last loss, best metric;
- ``data``: number of cases per list and a hash of the case lists;
- ``started_from``: the pretrained weights the run began with (path and SHA-256), if any;
- ``software``: this collection's version and git commit (when run from a checkout), torch, MONAI,
  Python; ``machine``: CPU model, the instruction set PyTorch's CPU kernels use, threads, GPU.
  Two runs with equal settings agree bit for bit only on the same software and machine: another CPU
  kernel sums in another order, and at a learning rate near the edge of stability that can change
  where a run ends; ``created``: UTC date and time.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from common.io import atomic_write_text
from common.runs.identity import digest, file_sha256

RECORD_VERSION = 1

#: Network class -> family: weights load across classes of one family (a SegResEncoder's tensors
#: into SegResNetDS; SwinUNETR pretraining into SwinUNETR fine-tuning).
NETWORK_FAMILIES = {
    "SwinUNETR": "SwinUNETR",
    "UNETR": "UNETR",
    "DynUNet": "DynUNet",
    "SegResEncoder": "SegResEncoder",
    "SegResNetDS": "SegResEncoder",
    "ContrastiveModel": "SegResEncoder",
    "EncoderClassifier": "SegResEncoder",
    "PooledEncoder": "SegResEncoder",
    "SegResNet": "SegResNet",
}


def network_family(class_name: str) -> str:
    """The family of a network class (the class name itself when unknown)."""
    return NETWORK_FAMILIES.get(class_name, class_name)


def record_path(weights_path: str | os.PathLike) -> Path:
    """``models/model.pt`` -> ``models/model.json``."""
    return Path(weights_path).with_suffix(".json")


@lru_cache(maxsize=1)
def software() -> dict[str, Any]:
    """Versions of what made the weights: this collection (and its git commit), torch, MONAI, Python."""
    import monai
    import torch

    import common

    out: dict[str, Any] = {"collection": getattr(common, "__version__", "unknown"), "torch": torch.__version__,
                           "monai": monai.__version__, "python": platform.python_version()}
    root = Path(common.__file__).resolve().parent.parent
    if (root / ".git").exists():
        try:
            commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10).stdout.strip()
            dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=10).stdout.strip()
            if commit:
                out["git"] = {"commit": commit, "dirty": bool(dirty)}
        except (OSError, subprocess.SubprocessError):
            pass
    return out


def code_version(software_record: Mapping[str, Any] | None) -> str:
    """The collection's code a :func:`software` record names: its commit (10 digits), ``+changes`` when the checkout
    had uncommitted changes to tracked files; ``""`` when unknown (not a git checkout, or a record without it)."""
    git = (software_record or {}).get("git") or {}
    return git["commit"][:10] + ("+changes" if git.get("dirty") else "") if git.get("commit") else ""


def weights_made_by(weights_path: str | os.PathLike) -> str:
    """:func:`code_version` of the record next to ``weights_path`` (``""`` without one)."""
    return code_version((read_record(weights_path) or {}).get("software"))


def machine() -> dict[str, Any]:
    """Where the numbers were computed: CPU model, PyTorch's CPU kernel level (``AVX2``, ``AVX512``, ...), CPU threads, GPU."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def build_record(
    weights_path: str | os.PathLike,
    kind: str,
    network_class: str,
    preprocessing: Mapping[str, Any] | None,
    run: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The provenance record of ``weights_path`` (see the module docstring).

    Args:
        run: the run's identity summary (:meth:`common.runs.guard.RunIdentity.summary`) plus
            ``bundle_version``; None when the weights were not made by a checked run.
        training: iteration, epoch, last loss, best metric.
    """
    run = dict(run or {})
    cases = run.get("cases") or {}
    weights = run.get("weights") or {}
    started = {}
    for key, path in weights.items():
        if path and os.path.isfile(path):
            started[key] = {"path": str(Path(path).resolve()), "sha256": file_sha256(path)}
    return {
        "record_version": RECORD_VERSION,
        "file": Path(weights_path).name,
        "sha256": file_sha256(weights_path),
        "kind": kind,
        "bundle": run.get("bundle"),
        "bundle_version": run.get("bundle_version"),
        "run": {"fingerprint": run.get("fingerprint"), "length": run.get("length", {})},
        "network": {"class": network_class, "family": network_family(network_class)},
        "preprocessing": dict(preprocessing or {}),
        "training": dict(training or {}),
        "data": {"num_cases": run.get("num_cases", {}), "cases_sha256": digest(cases) if cases else None},
        "started_from": started or None,
        "software": software(),
        "machine": machine(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def write_record(weights_path: str | os.PathLike, record: Mapping[str, Any]) -> Path:
    """Write ``record`` next to ``weights_path`` (atomically)."""
    path = record_path(weights_path)
    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=False) + "\n")
    return path


def record_weights(
    weights_path: str | os.PathLike,
    kind: str,
    network_class: str,
    preprocessing: Mapping[str, Any] | None,
    run: Any = None,
    training: Mapping[str, Any] | None = None,
) -> Path:
    """Build and write the record of ``weights_path``; ``run`` is the run's :class:`common.runs.RunIdentity` (or None)."""
    summary = run.provenance() if run is not None else None
    return write_record(weights_path, build_record(weights_path, kind, network_class, preprocessing, summary, training))


def read_record(weights_path: str | os.PathLike) -> dict[str, Any] | None:
    """The record next to ``weights_path``, or None when there is none (external weights).

    A record whose ``sha256`` does not match the file is ignored with a warning (it describes
    another file: copied next to this one, or the weights were replaced after export).
    """
    path = record_path(weights_path)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, OSError):
        return None
    if not isinstance(record, dict) or "sha256" not in record or record.get("sha256") != file_sha256(weights_path):
        import logging

        logging.getLogger(__name__).warning(f"{path} does not describe {weights_path} (another file's checksum): not used")
        return None
    return record
