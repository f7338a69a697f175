"""Random crops read from the store: the pipeline's own crop transform draws, only the crop's bytes are read.

A training pipeline's first random transform is usually a crop. With ``cache: store`` that transform
object stays in the pipeline (so MONAI's seeding and the stream's per-sample seeds reach it) and
draws its crop with its own generator, exactly as on an in-memory volume; the reader then slices the
crop from the memory-mapped file instead of from a tensor. What MONAI's crop transforms draw is
reproduced through their public pieces (``get_random_patch``, ``generate_pos_neg_label_crop_centers``
via ``randomize``, ``Crop.compute_slices``); ``tests/test_store.py`` checks that every reader gives
the crops the transform itself gives on the cached volume, for the same seed.

Supported first random transforms: ``RandSpatialCropd`` and ``RandSpatialCropSamplesd`` (random
centre, fixed size), ``RandCropByPosNegLabeld`` and ``RandCropByLabelClassesd`` (with the
foreground/background or per-class indices the store computed at preprocessing time), and any transform with a ``crop_from_store(case)`` method (e.g.
CT-FM's ``IntraSampleViewsd``). Any other transform gets the whole volume and runs as usual.

``case`` is a :class:`common.data.store_dataset.StoredCase`: ``spatial_shape(field)``,
``read(field, slices)``, ``fields(exclude)``, ``indices(name)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from copy import deepcopy
from typing import Any

import torch
from monai.data.utils import get_random_patch, get_valid_patch_size
from monai.transforms import Crop, RandCropByLabelClassesd, RandCropByPosNegLabeld, RandSpatialCropd, RandSpatialCropSamplesd
from monai.utils import fall_back_tuple

Reader = Callable[[Any], Any]

#: the store's names of the precomputed foreground / background indices of RandCropByPosNegLabeld
FG, BG = "fg_indices", "bg_indices"


def class_indices_name(c: int) -> str:
    """The store's name of the precomputed indices of class ``c`` for RandCropByLabelClassesd."""
    return f"class_{c}_indices"


def _fixed_random_crop(cropper: Any) -> bool:
    """A ``RandSpatialCrop`` that draws only a position (the kind a store can slice)."""
    return bool(cropper.random_center) and not cropper.random_size and not getattr(cropper, "lazy", False)


def _draw_patch(cropper: Any, shape: Sequence[int]) -> tuple[slice, ...]:
    """What ``RandSpatialCrop.randomize(shape)`` draws with a fixed size: the same generator calls."""
    size = fall_back_tuple(cropper.roi_size, shape)
    return get_random_patch(shape, get_valid_patch_size(shape, size), cropper.R)


def _with_crops(case: Any, keys: Sequence[str], slices: tuple[slice, ...]) -> dict:
    """The case's fields with each of ``keys`` cropped to ``slices`` (others as stored); only the crops are read."""
    d = case.fields(exclude=keys)
    d.update({k: case.read(k, slices) for k in keys if k in case.volume_fields})
    return case.ordered(d)


def _spatial_crop(t: RandSpatialCropd) -> Reader:
    def read(case: Any) -> dict:
        first = next(k for k in t.keys if k in case.volume_fields)
        return _with_crops(case, t.keys, _draw_patch(t.cropper, case.spatial_shape(first)))

    return read


def _spatial_crop_samples(t: RandSpatialCropSamplesd) -> Reader:
    def read(case: Any) -> list[dict]:
        first = next(k for k in t.keys if k in case.volume_fields)
        shape = case.spatial_shape(first)
        t.randomize()  # MONAI draws one sub-seed, then re-seeds the inner cropper with it (once per key)
        t.cropper.set_random_state(seed=int(t.sub_seed))
        patches = [_draw_patch(t.cropper.cropper, shape) for _ in range(t.cropper.num_samples)]
        base = case.fields(exclude=t.keys)
        out = []
        for slices in patches:
            d = {k: deepcopy(v) for k, v in base.items()}
            d.update({k: case.read(k, slices) for k in t.keys if k in case.volume_fields})
            out.append(case.ordered(d))
        return out

    return read


def _label_crop(t: RandCropByPosNegLabeld | RandCropByLabelClassesd) -> Reader:
    """Crops centred by a label: the transform draws its centres from the stored indices (MONAI's own
    ``randomize`` with the indices it would have computed), then only those crops are read."""
    def read(case: Any) -> list[dict]:
        shape = case.spatial_shape(t.label_key)
        placeholder = torch.zeros((), dtype=torch.uint8).expand(1, *shape)  # the label's shape, no memory
        if isinstance(t, RandCropByPosNegLabeld):
            t.randomize(label=placeholder, fg_indices=case.indices(FG), bg_indices=case.indices(BG))
        else:
            channels = case.volume_fields[t.label_key]["shape"][0]  # as map_classes_to_indices: one-hot, or num_classes
            count = channels if channels > 1 else t.cropper.num_classes
            t.randomize(label=placeholder, indices=[case.indices(class_indices_name(c)) for c in range(count)])
        roi = fall_back_tuple(t.cropper.spatial_size, default=shape)
        base = case.fields(exclude=t.keys)
        out = []
        for center in t.cropper.centers:
            slices = Crop.compute_slices(roi_center=[int(c) for c in center], roi_size=roi)
            d = {k: deepcopy(v) for k, v in base.items()}
            d.update({k: case.read(k, slices) for k in t.keys if k in case.volume_fields})
            out.append(case.ordered(d))
        return out

    return read


def crop_reader(transform: Any) -> Reader | None:
    """How to read ``transform``'s random crop from the store, or None (read the whole volume)."""
    if hasattr(transform, "crop_from_store"):
        return transform.crop_from_store
    if isinstance(transform, RandSpatialCropd) and _fixed_random_crop(transform.cropper):
        return _spatial_crop(transform)
    if isinstance(transform, RandSpatialCropSamplesd) and _fixed_random_crop(transform.cropper.cropper):
        return _spatial_crop_samples(transform)
    if (isinstance(transform, RandCropByPosNegLabeld) and transform.fg_indices_key is None and transform.bg_indices_key is None
            and not transform.lazy):
        return _label_crop(transform)
    if isinstance(transform, RandCropByLabelClassesd) and transform.indices_key is None and not transform.lazy:
        return _label_crop(transform)
    return None


def index_spec(transform: Any) -> dict | None:
    """What the store must precompute for ``transform``: foreground/background indices for
    ``RandCropByPosNegLabeld`` (its label and image keys and image threshold), per-class indices for
    ``RandCropByLabelClassesd`` (also its number of classes and per-class cap), else None."""
    if crop_reader(transform) is None or not isinstance(transform, (RandCropByPosNegLabeld, RandCropByLabelClassesd)):
        return None
    spec = {"label_key": transform.label_key, "image_key": transform.image_key, "image_threshold": float(transform.cropper.image_threshold)}
    if isinstance(transform, RandCropByPosNegLabeld):
        return spec
    return {**spec, "num_classes": transform.cropper.num_classes, "max_samples_per_class": transform.cropper.max_samples_per_class}


def crop_size(transform: Any) -> tuple[int, ...] | None:
    """The crop size ``transform`` reads, to size the store's chunks (None: whole volumes)."""
    if crop_reader(transform) is None:
        return None
    if isinstance(transform, (RandCropByPosNegLabeld, RandCropByLabelClassesd)):
        size = transform.cropper.spatial_size
    elif isinstance(transform, RandSpatialCropSamplesd):
        size = transform.cropper.cropper.roi_size
    elif isinstance(transform, RandSpatialCropd):
        size = transform.cropper.roi_size
    else:
        size = getattr(transform, "roi_size", None)
    if size is None or isinstance(size, int):
        return None
    return tuple(int(s) for s in size)
