"""CT windowing presets as input channels (CT-FM's head-CT triage: brain, subdural, stroke, bone).

``ScaleIntensityRanged`` does one window; triage models see several at once, one per channel.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

#: (level, width) in HU of the usual head-CT windows.
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "brain": (40.0, 80.0),
    "subdural": (80.0, 200.0),
    "stroke": (40.0, 40.0),
    "bone": (600.0, 2800.0),
    "blood": (60.0, 120.0),
    "soft_tissue": (50.0, 400.0),
}


class CTWindowsd(MapTransform):
    """``(1, *spatial)`` HU -> ``(len(windows), *spatial)`` in ``[0, 1]``, one clipped window per channel.

    Args:
        keys: image keys.
        windows: preset names from :data:`CT_WINDOWS` or ``(level, width)`` pairs.
    """

    def __init__(self, keys: KeysCollection, windows: Sequence[str | Sequence[float]] = ("brain", "subdural", "stroke", "bone")) -> None:
        super().__init__(keys)
        bounds = []
        for w in windows:
            if isinstance(w, str):
                if w not in CT_WINDOWS:
                    raise ValueError(f"unknown CT window {w!r}; presets: {sorted(CT_WINDOWS)}, or give (level, width)")
                w = CT_WINDOWS[w]
            level, width = (float(v) for v in w)
            if width <= 0:
                raise ValueError(f"window width must be positive, got {w}")
            bounds.append((level - width / 2, level + width / 2))
        if not bounds:
            raise ValueError("give at least one window")
        self.low = torch.tensor([b[0] for b in bounds])
        self.high = torch.tensor([b[1] for b in bounds])

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            if image.shape[0] != 1:
                raise ValueError(f"CTWindowsd: '{key}' must have one channel (HU), got shape {tuple(image.shape)}")
            shape = (-1,) + (1,) * (image.dim() - 1)
            low, high = self.low.view(shape).to(image.device), self.high.view(shape).to(image.device)
            d[key] = ((image.float() - low) / (high - low)).clamp(0.0, 1.0)  # broadcast (1, ...) -> (W, ...)
        return d


class WindowsAlongDepthd(MapTransform):
    """``(W, D, H, W')`` windows -> ``(1, W * D, H, W')``: the windows stacked along the first spatial axis.

    CT-FM's SinoCT recipe (``evaluation/sinoct.yaml``: ``ConcatItemsd(..., dim: 1)``, ``in_channels: 1``)
    puts the four windowed volumes one after another in depth, window 0's slices first, so the
    pretrained single-channel stem is used as trained. Upstream gap: MONAI's ``ConcatItemsd`` joins
    separate keys; this joins the channels of one key the same way.
    """

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            d[key] = image.reshape(1, image.shape[0] * image.shape[1], *image.shape[2:])  # channel-major = concatenation along dim 1
        return d
