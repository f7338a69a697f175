"""Label maps to overlapping evaluation regions (BraTS: TC, WT, ET) and back, the regions as data.

The label numbering differs between releases, and MONAI's ``ConvertToMultiChannelBasedOnBratsClasses``
only knows the BraTS-challenge one (1 necrotic core, 2 oedema, 4 or 3 enhancing). The Medical
Segmentation Decathlon's Task01_BrainTumour renumbers them (1 oedema, 2 non-enhancing tumour,
3 enhancing tumour); applying the challenge rule to MSD labels silently puts oedema into the tumour
core. So the regions are configuration: ``{"TC": [...], "WT": [...], "ET": [...]}`` (any names, in
the network's output-channel order), or a preset name:

==================  ==============  ===================  ===========  =====================
preset              tumour core TC  whole tumour WT      enhancing    written back (WT, TC,
                                                         ET           ET own value)
==================  ==============  ===================  ===========  =====================
``msd``             2, 3            1, 2, 3              3            1, 2, 3
``brats2013_2017``  1, 3, 4         1, 2, 3, 4           4            2, 1, 4
``brats2021``       1, 4            1, 2, 4              4            2, 1, 4
``brats2023``       1, 3            1, 2, 3              3            2, 1, 3
==================  ==============  ===================  ===========  =====================

BraTS 2013-2016 label 3 (non-enhancing tumour) and label 1 (necrosis) are both tumour core without
enhancement: region masks cannot tell them apart, so a prediction is written back with 1 there (as
BraTS 2017 merged them); :func:`region_label_values` documents the rule, ``label_values`` overrides it.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import convert_to_tensor

from common.transforms.checks import source_name

Regions = Mapping[str, Sequence[int]]

#: preset name -> region name -> the label values making up that region, in output-channel order
REGION_PRESETS: dict[str, dict[str, tuple[int, ...]]] = {
    "msd": {"TC": (2, 3), "WT": (1, 2, 3), "ET": (3,)},
    "brats2013_2017": {"TC": (1, 3, 4), "WT": (1, 2, 3, 4), "ET": (4,)},
    "brats2021": {"TC": (1, 4), "WT": (1, 2, 4), "ET": (4,)},
    "brats2023": {"TC": (1, 3), "WT": (1, 2, 3), "ET": (3,)},
}


def label_regions(regions: str | Regions) -> dict[str, tuple[int, ...]]:
    """A preset name or a ``{name: [label values]}`` mapping as a checked ``{name: values}`` dict.

    Raises ``ValueError`` naming the problem: an unknown preset (with the known ones), no regions,
    a region without values, or values that are not positive integers (0 is background).
    """
    if isinstance(regions, str):
        if regions not in REGION_PRESETS:
            raise ValueError(f"unknown label region preset {regions!r}; choose one of {sorted(REGION_PRESETS)} "
                             "or give the regions themselves, e.g. {'TC': [1, 3, 4], 'WT': [1, 2, 3, 4], 'ET': [4]}")
        return dict(REGION_PRESETS[regions])
    if not isinstance(regions, Mapping) or not regions:
        raise ValueError(f"regions must be a preset name or a non-empty {{name: [label values]}} mapping, got {regions!r}")
    out = {}
    for name, values in regions.items():
        vals = tuple(int(v) for v in values)
        if not vals or any(v <= 0 or v != float(w) for v, w in zip(vals, values)):
            raise ValueError(f"region {name!r}: {list(values)} must be one or more positive integer label values (0 is background)")
        out[str(name)] = vals
    return out


def region_label_values(regions: str | Regions) -> dict[str, int]:
    """The value each region's own part (itself minus the regions inside it) gets when region masks
    are written back as a label map: the smallest such label value.

    The regions must nest (each pair disjoint or one inside the other, as BraTS' ET ⊂ TC ⊂ WT);
    otherwise a voxel in two regions has no single label and this raises.
    """
    r = {k: set(v) for k, v in label_regions(regions).items()}
    for a in r:
        for b in r:
            if a != b and r[a] & r[b] and not (r[a] <= r[b] or r[b] <= r[a]):
                raise ValueError(f"regions {a} {sorted(r[a])} and {b} {sorted(r[b])} overlap without one containing the other: "
                                 "a label map cannot be written from them; give label_values per region")
    values = {}
    for name, vals in r.items():
        own = vals - set().union(*(v for k, v in r.items() if k != name and v < vals))
        if not own:
            raise ValueError(f"region {name} {sorted(vals)} is the union of the regions inside it: it has no label value of its own")
        values[name] = min(own)
    return values


def region_value_names(regions: str | Regions, label_values: Mapping[str, int] | None = None) -> dict[int, str]:
    """``{label value: region name}`` of the written-back label map (background 0 excluded)."""
    values = dict(label_values) if label_values else region_label_values(regions)
    return {v: k for k, v in values.items()}


def _painting_order(regions: Mapping[str, tuple[int, ...]]) -> list[str]:
    """Outer regions first, so inner ones (painted later) win where they overlap."""
    return sorted(regions, key=lambda k: -len(regions[k]))


class BratsRegions(Transform):
    """``(1, H, W, D)`` or ``(H, W, D)`` integer label map to ``(R, H, W, D)`` float region masks, one
    per region of ``regions`` (a preset name or ``{name: values}``; BraTS: TC, WT, ET).

    Values that belong to no region (other than 0) raise, so a dataset in another numbering is
    caught rather than trained on.
    """

    def __init__(self, regions: str | Regions = "msd") -> None:
        self.name = regions if isinstance(regions, str) else "configured"
        spec = label_regions(regions)
        self.regions = [torch.tensor(r) for r in spec.values()]
        self.known = torch.tensor(sorted({0, *(v for r in spec.values() for v in r)}))

    def __call__(self, label: Any) -> torch.Tensor:
        lab = convert_to_tensor(label, track_meta=True)
        if lab.ndim == 4:
            if lab.shape[0] != 1:
                raise ValueError(f"expected a single-channel label map, got shape {tuple(lab.shape)}")
            lab = lab[0]
        lab = lab.round().long() if lab.is_floating_point() else lab.long()
        unknown = torch.unique(lab[~torch.isin(lab, self.known.to(lab.device))])
        if unknown.numel():
            raise ValueError(f"label values {unknown.tolist()} are not part of the '{self.name}' label regions {self.known.tolist()}; "
                             "set label_scheme to the dataset's preset or regions to its own {name: [values]}")
        values = torch.stack([torch.isin(lab, r.to(lab.device)) for r in self.regions])
        return values.float()


class BratsRegionsd(MapTransform):
    """Dictionary version of :class:`BratsRegions`; keeps the label's metadata (affine, file name)."""

    def __init__(self, keys: KeysCollection, regions: str | Regions = "msd", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = BratsRegions(regions)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            try:
                d[key] = self.converter(d[key])
            except ValueError as e:
                raise ValueError(f"{key} '{source_name(d[key])}': {e}") from e
        return d


class BratsRegionsToLabel(Transform):
    """Inverse of :class:`BratsRegions` for predictions: ``(R, H, W, D)`` binary region masks to a
    ``(1, H, W, D)`` label map in the dataset's numbering.

    Regions are painted from the outside in (BraTS: WT, then TC, then ET), each with its own value
    (:func:`region_label_values`, or ``label_values``), so a voxel predicted ET but not WT still
    becomes enhancing tumour: ET -> enhancing value, TC without ET -> the core value, WT without TC
    -> oedema.
    """

    def __init__(self, regions: str | Regions = "msd", label_values: Mapping[str, int] | None = None) -> None:
        spec = label_regions(regions)
        self.values = dict(label_values) if label_values else region_label_values(spec)
        if set(self.values) != set(spec):
            raise ValueError(f"label_values {self.values} must give one value for each region {list(spec)}")
        self.channels = {name: i for i, name in enumerate(spec)}
        self.order = _painting_order(spec)

    def __call__(self, regions: Any) -> torch.Tensor:
        r = convert_to_tensor(regions, track_meta=True)
        if r.ndim != 4 or r.shape[0] != len(self.channels):
            raise ValueError(f"expected ({len(self.channels)}, H, W, D) masks of regions {list(self.channels)}, got shape {tuple(r.shape)}")
        out = torch.zeros_like(r[:1], dtype=torch.uint8)
        for name in self.order:
            out[0][r[self.channels[name]] > 0.5] = self.values[name]
        return out


class BratsRegionsToLabeld(MapTransform):
    """Dictionary version of :class:`BratsRegionsToLabel`."""

    def __init__(self, keys: KeysCollection, regions: str | Regions = "msd", label_values: Mapping[str, int] | None = None,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = BratsRegionsToLabel(regions, label_values)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d
