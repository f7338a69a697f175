"""BraTS label maps to the three overlapping evaluation regions (TC, WT, ET).

The label numbering differs between releases, and MONAI's ``ConvertToMultiChannelBasedOnBratsClasses``
only knows the BraTS-challenge one (1 necrotic core, 2 oedema, 4 or 3 enhancing). The Medical
Segmentation Decathlon's Task01_BrainTumour renumbers them (1 oedema, 2 non-enhancing tumour,
3 enhancing tumour); applying the challenge rule to MSD labels silently puts oedema into the tumour
core. ``scheme`` names the numbering:

==============  ==============  ===================  ===========
scheme          tumour core TC  whole tumour WT      enhancing ET
==============  ==============  ===================  ===========
``msd``         2, 3            1, 2, 3              3
``brats2021``   1, 4            1, 2, 4              4
``brats2023``   1, 3            1, 2, 3              3
==============  ==============  ===================  ===========
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import convert_to_tensor

from common.transforms.checks import source_name

#: label values making up (TC, WT, ET) in each numbering scheme.
BRATS_REGION_LABELS: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = {
    "msd": ((2, 3), (1, 2, 3), (3,)),
    "brats2021": ((1, 4), (1, 2, 4), (4,)),
    "brats2023": ((1, 3), (1, 2, 3), (3,)),
}
BRATS_REGIONS = ("TC", "WT", "ET")


def scheme_regions(scheme: str) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """The (TC, WT, ET) label values of ``scheme``; an unknown scheme raises with the known ones."""
    if scheme not in BRATS_REGION_LABELS:
        raise ValueError(f"unknown BraTS label scheme {scheme!r}; choose one of {sorted(BRATS_REGION_LABELS)}")
    return BRATS_REGION_LABELS[scheme]


class BratsRegions(Transform):
    """``(1, H, W, D)`` or ``(H, W, D)`` integer label map to ``(3, H, W, D)`` float region masks (TC, WT, ET).

    Values that belong to no region of the scheme (other than 0) raise, so a dataset in another
    numbering is caught rather than trained on.
    """

    def __init__(self, scheme: str = "msd") -> None:
        self.scheme = scheme
        self.regions = [torch.tensor(r) for r in scheme_regions(scheme)]
        self.known = torch.tensor(sorted({0, *scheme_regions(scheme)[1]}))

    def __call__(self, label: Any) -> torch.Tensor:
        lab = convert_to_tensor(label, track_meta=True)
        if lab.ndim == 4:
            if lab.shape[0] != 1:
                raise ValueError(f"expected a single-channel label map, got shape {tuple(lab.shape)}")
            lab = lab[0]
        lab = lab.round().long() if lab.is_floating_point() else lab.long()
        unknown = torch.unique(lab[~torch.isin(lab, self.known.to(lab.device))])
        if unknown.numel():
            raise ValueError(f"label values {unknown.tolist()} are not part of the '{self.scheme}' BraTS numbering {self.known.tolist()}")
        values = torch.stack([torch.isin(lab, r.to(lab.device)) for r in self.regions])
        return values.float()


class BratsRegionsd(MapTransform):
    """Dictionary version of :class:`BratsRegions`; keeps the label's metadata (affine, file name)."""

    def __init__(self, keys: KeysCollection, scheme: str = "msd", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = BratsRegions(scheme)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            try:
                d[key] = self.converter(d[key])
            except ValueError as e:
                raise ValueError(f"{key} '{source_name(d[key])}': {e}") from e
        return d


class BratsRegionsToLabel(Transform):
    """Inverse of :class:`BratsRegions` for predictions: ``(3, H, W, D)`` binary (TC, WT, ET) to a
    ``(1, H, W, D)`` label map in the scheme's numbering.

    Nested regions are enforced from the outside in (ET wins over TC, TC over WT), so a voxel
    predicted ET but not WT still becomes enhancing tumour: ET -> enhancing value, TC without ET ->
    the core value, WT without TC -> oedema.
    """

    def __init__(self, scheme: str = "msd") -> None:
        tc, wt, et = (set(r) for r in scheme_regions(scheme))
        (self.et_value,) = et
        (self.core_value,) = tc - et
        (self.edema_value,) = wt - tc

    def __call__(self, regions: Any) -> torch.Tensor:
        r = convert_to_tensor(regions, track_meta=True)
        if r.ndim != 4 or r.shape[0] != 3:
            raise ValueError(f"expected (3, H, W, D) TC/WT/ET regions, got shape {tuple(r.shape)}")
        tc, wt, et = (r[i] > 0.5 for i in range(3))
        out = torch.zeros_like(r[:1], dtype=torch.uint8)
        out[0][wt] = self.edema_value
        out[0][tc] = self.core_value
        out[0][et] = self.et_value
        return out


class BratsRegionsToLabeld(MapTransform):
    """Dictionary version of :class:`BratsRegionsToLabel`."""

    def __init__(self, keys: KeysCollection, scheme: str = "msd", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = BratsRegionsToLabel(scheme)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d
