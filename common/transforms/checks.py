"""Case checks run right after loading: a wrong file fails with its name, before hours of training.

Catches the three input faults that otherwise surface as a shape error deep in a network, a CUDA
assert in a loss, or a silently wrong model: image and label grids that differ, label values outside
the class range, and the wrong number of image channels (e.g. one MRI sequence where four are
expected).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.transforms import MapTransform

from common.data.case_checks import LABEL_HINT


class CaseDataError(ValueError):
    """A case's image/label pair is unusable; the message names the file and what is wrong."""


def source_name(x: Any, fallback: str = "<in memory>") -> str:
    """The file a loaded MetaTensor came from (``meta['filename_or_obj']``), for error messages."""
    meta = getattr(x, "meta", None) or {}
    return str(meta.get("filename_or_obj", fallback))


class CheckSegmentationCased(MapTransform):
    """Validate a loaded, channel-first ``image`` ``(C, H, W, D)`` and optional ``label`` ``(1, H, W, D)``.

    Args:
        image_key, label_key: keys of the loaded arrays; the label check is skipped when the label is
            absent or not loaded (a path string).
        in_channels: required number of image channels.
        num_classes: label values must be integers in ``[0, num_classes - 1]`` (``None``: no value check;
            use ``label_values`` instead for label maps with gaps such as BraTS).
        label_values: the allowed label values, when they are not ``0..num_classes-1``.
        channel_names: names of the expected channels, quoted in the channel-count error.
        label_hint: the settings to change, quoted in the label-value error
            (default :data:`common.data.case_checks.LABEL_HINT`).
    Raises:
        CaseDataError: naming the image or label file.
    """

    def __init__(
        self,
        image_key: str = "image",
        label_key: str = "label",
        in_channels: int = 1,
        num_classes: int | None = None,
        label_values: Sequence[int] | None = None,
        channel_names: Sequence[str] | None = None,
        label_hint: str = LABEL_HINT,
    ) -> None:
        super().__init__([image_key, label_key], allow_missing_keys=True)
        self.label_hint = label_hint
        self.image_key, self.label_key = image_key, label_key
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.label_values = None if label_values is None else torch.as_tensor(sorted(label_values))
        self.channel_names = list(channel_names) if channel_names else None

    def __call__(self, data: Mapping[Hashable, Any]) -> Mapping[Hashable, Any]:
        image = data[self.image_key]
        name = source_name(image)
        if image.ndim != 4:
            raise CaseDataError(f"image '{name}': expected a 3D volume with a channel axis (C, H, W, D), got shape {tuple(image.shape)}")
        if image.shape[0] != self.in_channels:
            expected = f" ({', '.join(self.channel_names)})" if self.channel_names else ""
            raise CaseDataError(
                f"image '{name}' has {image.shape[0]} channel(s) but the network expects {self.in_channels}{expected}; "
                "multi-sequence MRI must be one 4D file or a list of files in that channel order"
            )
        label = data.get(self.label_key)
        if not hasattr(label, "shape"):  # absent, or a path that is not loaded (inference)
            return data
        lname = source_name(label)
        if label.ndim != 4 or label.shape[0] != 1:
            raise CaseDataError(f"label '{lname}': expected one label map (1, H, W, D), got shape {tuple(label.shape)}")
        if tuple(label.shape[1:]) != tuple(image.shape[1:]):
            raise CaseDataError(
                f"label '{lname}' has spatial shape {tuple(label.shape[1:])} but its image '{name}' has {tuple(image.shape[1:])}"
            )
        values = torch.unique(torch.as_tensor(label))
        if not torch.equal(values, values.round()):
            raise CaseDataError(f"label '{lname}' holds non-integer values (e.g. {values[values != values.round()][:3].tolist()}): is it an image?")
        if self.label_values is not None:
            bad = values[~torch.isin(values.long(), self.label_values)]
            allowed = self.label_values.tolist()
        elif self.num_classes is not None:
            bad = values[(values < 0) | (values >= self.num_classes)]
            allowed = f"0..{self.num_classes - 1}"
        else:
            return data
        if bad.numel():
            raise CaseDataError(
                f"label '{lname}' holds values {bad.long().tolist()[:10]} outside the {allowed} this bundle is configured for "
                f"({self.label_hint})"
            )
        return data
