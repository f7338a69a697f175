"""nnU-Net's CT normalisation from a dataset fingerprint, as one MONAI transform.

nnU-Net (``CTNormalization``) clips CT intensities to the dataset's foreground 0.5th and 99.5th
percentiles and then subtracts the dataset's foreground mean and divides by its standard deviation.
Clipping then an affine map is exactly ``ScaleIntensityRanged`` with ``clip=True`` from
``[p00.5, p99.5]`` to ``[(p00.5 - mean) / std, (p99.5 - mean) / std]``, so no new transform is
needed; what MONAI lacks is reading nnU-Net's fingerprint, which this module adds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from monai.transforms import ScaleIntensityRanged

#: nnU-Net's keys in ``dataset_fingerprint.json`` -> ``foreground_intensity_properties_per_channel``
FINGERPRINT_KEYS = ("percentile_00_5", "percentile_99_5", "mean", "std")


def fingerprint_properties(source: str | Path | Mapping[str, float] | None, channel: int = 0) -> dict[str, float]:
    """The four intensity properties of ``channel``.

    ``source``: a mapping with :data:`FINGERPRINT_KEYS`, or the path of nnU-Net's
    ``dataset_fingerprint.json`` (its ``foreground_intensity_properties_per_channel[str(channel)]``).
    """
    if source is None:
        raise ValueError(
            "ct_normalization is null: intensity_normalization 'dataset_ct' needs the dataset's foreground intensity "
            "properties; set ct_normalization to nnU-Net's dataset_fingerprint.json or to {percentile_00_5, percentile_99_5, mean, std}"
        )
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"ct_normalization: no fingerprint file at {path}; give nnU-Net's dataset_fingerprint.json or the values {FINGERPRINT_KEYS}")
        per_channel = json.loads(path.read_text()).get("foreground_intensity_properties_per_channel", {})
        if str(channel) not in per_channel:
            raise ValueError(f"ct_normalization: {path} has no foreground_intensity_properties_per_channel[{channel!r}]")
        source = per_channel[str(channel)]
    missing = [k for k in FINGERPRINT_KEYS if k not in source]
    if missing:
        raise ValueError(f"ct_normalization: missing {missing}; give {FINGERPRINT_KEYS} (nnU-Net's foreground intensity properties)")
    values = {k: float(source[k]) for k in FINGERPRINT_KEYS}
    if not all(math.isfinite(v) for v in values.values()) or values["std"] <= 0 or values["percentile_00_5"] >= values["percentile_99_5"]:
        raise ValueError(f"ct_normalization: needs finite values, std > 0 and percentile_00_5 < percentile_99_5; got {values}")
    return values


def nnunet_ct_normalized(keys: str | Sequence[str], properties: str | Path | Mapping[str, float] | None) -> ScaleIntensityRanged:
    """``clip(x, p00.5, p99.5)`` then ``(x - mean) / std`` on ``keys``, as nnU-Net's ``CTNormalization``."""
    p = fingerprint_properties(properties)
    low, high, mean, std = p["percentile_00_5"], p["percentile_99_5"], p["mean"], p["std"]
    return ScaleIntensityRanged(keys, a_min=low, a_max=high, b_min=(low - mean) / std, b_max=(high - mean) / std, clip=True)


def nnunet_ct_settings(properties: str | Path | Mapping[str, float] | None) -> dict[str, object]:
    """The ``preprocessing_settings#intensity`` record of :func:`nnunet_ct_normalized` (checked downstream)."""
    p = fingerprint_properties(properties)
    return {"mode": "zscore", "scope": "dataset", "clip": [p["percentile_00_5"], p["percentile_99_5"]], "mean": p["mean"], "std": p["std"]}
