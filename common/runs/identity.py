"""What makes a training run *this* run: its settings, its cases and its starting weights.

A run's identity is computed from the bundle's resolved configuration (after overlays and
command-line overrides), so two commands that would train the same thing have the same fingerprint
and any difference can be named by its config id (``feature_size: 48 -> 12``).

- **Settings**: every leaf of the raw configuration (``@`` references and ``$`` expressions as
  written, so ``"@feature_size"`` stays a reference and the value of ``feature_size`` is its own
  leaf), except the keys in :data:`OPERATIONAL_KEYS`, which change where outputs go, how fast or how
  often something is logged, but not what is optimised.
- **Weights**: the file named by ``pretrained`` is identified by the SHA-256 of its content, not its
  path (a moved file is the same start; an overwritten one is not).
- **Cases**: each file of each case (training and validation lists) by field, file name and size.
  Paths and modification times are left out on purpose: copying a dataset to a scratch disk keeps
  the run's identity, while another dataset (or a re-exported compressed file) almost always
  differs in size. The trade-off: a file edited in place to exactly the same byte size is not seen.

Only the run length (:data:`LENGTH_KEYS`) may differ between a checkpoint and the command that
resumes it; see :class:`common.runs.guard.RunIdentity`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from common.file_sizes import file_size

#: Top-level config keys (and leaf names) that do not change what a run computes: output places,
#: logging and checkpoint cadence, data loading and caching, devices and arithmetic speed settings
#: (AMP, compile, channels-last and gradient checkpointing change speed and rounding, not the model
#: or the objective), the pre-flight switches (their effect on the case list is in the case digest),
#: and where the data lives (the case digest identifies the data itself).
OPERATIONAL_KEYS = frozenset({
    "_meta_", "_generated_", "imports", "initialize", "run", "finalize",
    "bundle_name", "bundle_run", "bundle_root", "run_dir", "models_dir", "output_dir", "checkpoint_dir", "tensorboard_dir",
    "resume", "allow_preprocessing_mismatch",
    "dataset_dir", "datalist", "phantom_dir", "num_phantoms", "num_phantom_validation",
    "preflight", "on_bad_case", "case_checks", "case_source",
    "device", "amp", "amp_dtype", "compile", "channels_last", "memory_format", "gradient_checkpointing",
    "cache", "cache_rate", "cache_dir", "cache_on_device", "num_workers",
    "log_interval", "image_interval", "checkpoint_interval", "keep_checkpoints", "val_interval",
    "on_nonfinite_loss", "max_nonfinite_skips", "preempt_signal", "progress",
    "tracking", "experiment_name", "run_name", "save_execute_config", "tracking_uri",
    # leaf names inside components (an override such as --train#dataloader#num_workers 0)
    "log_dir", "save_dir", "n_saved", "interval", "iteration_log", "epoch_log", "print_lr",
})

#: Keys that only set how long the run is; a checkpoint may be continued to another length.
LENGTH_KEYS = ("num_steps",)

#: Keys naming weight files, identified by content.
WEIGHT_KEYS = ("pretrained",)

#: Config ids of the case lists a training config trains and validates on (those absent are skipped),
#: with the names records and messages give them: the datasets' data, which MONAI Label's train task
#: overrides with its datastore's cases.
CASE_IDS = {"train#dataset#data": "training", "validate#dataset#data": "validation"}

#: Config ids whose content is a case list: identified by the case digest, left out of the settings.
CASE_LIST_IDS = (*CASE_IDS, "train#files", "validate#files")


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return repr(value)


def flatten_settings(config: Mapping[str, Any], ignore: Iterable[str] = OPERATIONAL_KEYS) -> dict[str, Any]:
    """``{config id: value}`` for every leaf of ``config`` except ignored keys (top level or leaf name).

    Dicts are walked with ``#``-joined ids; a list of plain values is one leaf, a list holding dicts
    is walked by index (``train#handlers#0#epoch_level``).
    """
    ignore = frozenset(ignore)
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                if str(k) not in ignore:
                    walk(f"{prefix}#{k}" if prefix else str(k), v)
        elif isinstance(value, (list, tuple)) and any(isinstance(v, (Mapping, list, tuple)) for v in value):
            for i, v in enumerate(value):
                walk(f"{prefix}#{i}", v)
        else:
            out[prefix] = _jsonable(value)

    walk("", config)
    return out


_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's content (memoised per path, size and mtime within the process)."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def weights_setting(path: str | None) -> str:
    """How a weights key enters the settings: ``""`` for none, else ``sha256:<first 16 hex>``."""
    if not path:
        return ""
    if not os.path.isfile(path):
        return f"missing file {path}"
    return "sha256:" + file_sha256(path)[:16]


def case_files(cases: Sequence[Mapping[str, Any]], fields: Sequence[str] = ("image", "label")) -> list[list]:
    """``[field, file name, size]`` for every file of every case, sorted (see the module docstring)."""
    rows = []
    for case in cases:
        for f in fields:
            values = case.get(f)
            for v in values if isinstance(values, list) else [values]:
                if isinstance(v, str) and v:
                    rows.append([f, Path(v).name, file_size(v)])
                elif isinstance(v, (int, float)) and not isinstance(v, bool):
                    rows.append([f, "class label", v])  # classification targets are part of the data too
    return sorted(rows, key=lambda r: (r[0], r[1], str(r[2])))


def digest(obj: Any) -> str:
    """SHA-256 of ``obj`` as canonical JSON."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def short(value: Any, limit: int = 80) -> str:
    """A value for a one-line message."""
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."


def diff_settings(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(id, old, new)`` for every id whose value differs; a missing side is ``"(unset)"``."""
    unset = "(unset)"
    return [(k, old.get(k, unset), new.get(k, unset)) for k in sorted(set(old) | set(new)) if old.get(k, unset) != new.get(k, unset)]


def diff_cases(old: Mapping[str, list], new: Mapping[str, list], limit: int = 3) -> list[str]:
    """One line per case list that differs: counts, and the first files only in one of them."""
    lines = []
    for key in sorted(set(old) | set(new)):
        a = {tuple(r) for r in old.get(key, [])}
        b = {tuple(r) for r in new.get(key, [])}
        if a == b:
            continue
        gone, added = sorted(a - b, key=str), sorted(b - a, key=str)
        parts = [f"{key}: {len(a)} -> {len(b)} files"]
        if gone:
            parts.append(f"only in the earlier run: {', '.join(f'{r[1]} ({r[2]} B)' for r in gone[:limit])}{' ...' if len(gone) > limit else ''}")
        if added:
            parts.append(f"only in this command: {', '.join(f'{r[1]} ({r[2]} B)' for r in added[:limit])}{' ...' if len(added) > limit else ''}")
        lines.append("; ".join(parts))
    return lines
