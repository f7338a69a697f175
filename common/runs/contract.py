"""The pretraining-to-fine-tuning contract, checked when a downstream bundle loads weights.

Published self-supervised weights most often fail to transfer because fine-tuning preprocesses
differently from pretraining (spacing, HU window or z-score, orientation, channels). A weight file
exported by this collection carries its pretraining's preprocessing in its provenance record
(:mod:`common.runs.provenance`); the downstream bundle states its own in ``preprocessing_settings``
in the same vocabulary::

    {"orientation": "RAS", "pixdim": [1.5, 1.5, 1.5], "in_channels": 1,
     "intensity": {"mode": "window", "window": [-175, 250], "range": [0.1, 1.0]}}
    # or {"mode": "zscore", "scope": "volume"}; {"mode": "windows", "windows": ["brain", ...]}

:func:`check_contract` compares orientation, spacing, intensity mapping, input channels and the
network family, and stops with one message naming both values and the overrides that align them;
``allow_mismatch`` turns the stop into a logged warning. Weights without a record load as before,
with a logged note that nothing could be checked.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from common.runs.provenance import network_family, read_record, record_path

logger = logging.getLogger(__name__)

FIELDS = ("orientation", "pixdim", "intensity", "in_channels")


class PreprocessingMismatchError(ValueError):
    """Pretrained weights were made with other preprocessing than this bundle uses."""


def _close(a: Any, b: Any, tol: float = 1e-3) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(float(a), float(b), rel_tol=tol, abs_tol=tol)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return set(a) == set(b) and all(_close(a[k], b[k], tol) for k in a)
    return a == b


def _describe_intensity(value: Any) -> str:
    if not isinstance(value, Mapping):
        return str(value)
    mode = value.get("mode")
    if mode == "window":
        return f"HU window {list(value.get('window', []))} -> {list(value.get('range', []))}"
    if mode == "zscore" and value.get("scope") == "dataset":
        return f"dataset z-score (clip {list(value.get('clip', []))}, mean {value.get('mean')}, std {value.get('std')})"
    if mode == "zscore":
        return f"z-score ({value.get('scope', 'volume')})"
    if mode == "windows":
        return f"CT windows as channels {list(value.get('windows', []))}"
    return str(dict(value))


def compare(weights: Mapping[str, Any], own: Mapping[str, Any], ignore: Sequence[str] = ()) -> list[tuple[str, Any, Any]]:
    """``(field, weights' value, this bundle's value)`` for each of :data:`FIELDS` that differs.

    A field either side leaves out is not compared. One input channel in the weights and several
    here is compatible (the first layer is spread over the channels, :func:`common.networks.adapt_input_channels`).
    """
    out = []
    for f in FIELDS:
        if f in ignore or f not in weights or f not in own:
            continue
        a, b = weights[f], own[f]
        if f == "orientation":
            same = str(a).upper() == str(b).upper()
        elif f == "in_channels":
            same = a == b or a == 1
        else:
            same = _close(a, b)
        if not same:
            out.append((f, a, b))
    return out


def check_contract(
    weights_path: str | os.PathLike,
    own_preprocessing: Mapping[str, Any] | None,
    network_class: str,
    allow_mismatch: bool = False,
    ignore: Sequence[str] = (),
    override_hints: Mapping[str, str] | None = None,
) -> dict[str, Any] | None:
    """Check ``weights_path``'s record against this bundle; return the record (None when there is none).

    Args:
        own_preprocessing: this bundle's ``preprocessing_settings`` (None: nothing to compare).
        network_class: class name of the network the weights are loaded into.
        allow_mismatch: log the differences as a warning instead of raising.
        ignore: fields this bundle adapts on purpose (e.g. CT-FM classification's window channels).
        override_hints: field -> the command-line overrides that set it here (e.g. ``"--pixdim"``).
    Raises:
        PreprocessingMismatchError: a difference, unless ``allow_mismatch``.
    """
    record = read_record(weights_path)
    if record is None:
        logger.info(f"{weights_path} has no provenance record ({record_path(weights_path).name}): its preprocessing and network "
                    "cannot be checked against this bundle; make sure they match (see the weights' source).")
        return None
    if not own_preprocessing:
        return record
    hints = dict(override_hints or {})
    problems = []
    for field, theirs, ours in compare(record.get("preprocessing", {}), own_preprocessing, ignore):
        shown = (_describe_intensity(theirs), _describe_intensity(ours)) if field == "intensity" else (theirs, ours)
        how = f" (set here by {hints[field]})" if hints.get(field) else ""
        problems.append(f"{field}: weights {shown[0]}, this bundle {shown[1]}{how}")
    theirs_net = (record.get("network") or {}).get("class")
    if theirs_net and network_family(theirs_net) != network_family(network_class):
        problems.append(f"network: weights from {theirs_net} ({network_family(theirs_net)} family), this bundle builds {network_class} "
                        f"({network_family(network_class)} family)")
    if not problems:
        logger.info(f"{weights_path}: preprocessing and network match its record ({record.get('bundle')}, run "
                    f"{str((record.get('run') or {}).get('fingerprint'))[:12]}).")
        return record
    made_by = f"{record.get('bundle') or 'an unknown bundle'}"
    message = (
        f"pretrained weights {weights_path} (made by {made_by}) do not match this bundle's preprocessing:\n  " + "\n  ".join(problems)
        + "\nAlign them: fine-tune with the weights' values (the overrides named above), or pretrain again with this bundle's values "
        "(anatomask_pretrain: configs/downstream_window.json gives btcv_finetune's HU window)."
    )
    if allow_mismatch:
        logger.warning(message + "\n(--allow_preprocessing_mismatch True: loading anyway)")
        return record
    raise PreprocessingMismatchError(message + " To load them anyway, pass --allow_preprocessing_mismatch True.")


def override_hints(preprocessing_config: Mapping[str, Any] | None) -> dict[str, str]:
    """``field -> "--key [--key2]"`` from the raw ``preprocessing_settings`` config: the ``@key`` references it uses."""
    hints: dict[str, str] = {}
    if not isinstance(preprocessing_config, Mapping):
        return hints

    def refs(value: Any) -> list[str]:
        if isinstance(value, str) and value.startswith("@"):
            return [value[1:]]
        if isinstance(value, Mapping):
            return [r for v in value.values() for r in refs(v)]
        if isinstance(value, (list, tuple)):
            return [r for v in value for r in refs(v)]
        return []

    for field in FIELDS:
        found = refs(preprocessing_config.get(field))
        if found:
            hints[field] = " ".join(f"--{r}" for r in dict.fromkeys(found))
    return hints
