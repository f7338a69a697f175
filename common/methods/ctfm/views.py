"""CT-FM's intra-sample positives: ``K`` random crops of one scan, two augmented views of each.

MONAI has the pieces (``RandSpatialCropSamples``, ``RandSpatialCrop(random_size=True)`` + ``Resize``
for a per-axis random resized crop, ``RandFlip``, ``RandHistogramShift``, ``RandGaussianSmooth``) but
not the grouping that NT-Xent with intra-sample negatives needs: which views belong to which crop of
which scan. This transform keeps that grouping in the tensor layout, ``(2, K, C, D, H, W)``, so a
batch is ``(B, 2, K, C, D, H, W)`` and the loss needs no bookkeeping.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.data.utils import get_random_patch, get_valid_patch_size
from monai.transforms import MapTransform, Randomizable, RandSpatialCropSamples, Resize, Transform


def _plain(x: Any) -> torch.Tensor:
    return x.as_tensor() if isinstance(x, MetaTensor) else torch.as_tensor(x)


class IntraSampleViewsd(Randomizable, MapTransform):
    """Replace ``data[key]`` ``(C, *spatial)`` by ``data[views_key]`` ``(2, K, C, *roi_size)``.

    Args:
        keys: the image key (one).
        roi_size: crop size, e.g. CT-FM's ``(32, 128, 128)``; the image must be at least this large
            (pad before, e.g. ``SpatialPadd``).
        num_crops: ``K`` crops per scan (CT-FM: 15).
        view_transform: applied independently to each crop twice (array transforms on ``(C, *roi_size)``,
            keeping the size; random ones are reseeded from this transform's state).
        views_key: output key.
    """

    def __init__(
        self,
        keys: KeysCollection,
        roi_size: Sequence[int],
        num_crops: int = 15,
        view_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        views_key: str = "views",
    ) -> None:
        MapTransform.__init__(self, keys)
        if len(self.keys) != 1:
            raise ValueError(f"IntraSampleViewsd takes one image key, got {self.keys}")
        if num_crops < 2:
            raise ValueError(f"num_crops must be >= 2 (the other crops are the negatives), got {num_crops}")
        self.roi_size = tuple(int(s) for s in roi_size)
        self.num_crops = num_crops
        self.cropper = RandSpatialCropSamples(roi_size=self.roi_size, num_samples=num_crops, random_size=False)
        self.view_transform = view_transform
        self.views_key = views_key

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> IntraSampleViewsd:
        super().set_random_state(seed, state)
        self.cropper.set_random_state(state=self.R)
        if isinstance(self.view_transform, Randomizable):
            self.view_transform.set_random_state(state=self.R)
        return self

    def randomize(self, data: Any = None) -> None:  # the sub-transforms draw from self.R
        pass

    def _patches(self, key: Hashable, spatial: Sequence[int]) -> list[tuple[slice, ...]]:
        """The ``K`` crop positions, drawn as ``RandSpatialCropSamples`` draws them (its generator is ``self.R``)."""
        small = [s for s, r in zip(spatial, self.roi_size) if s < r]
        if small:
            raise ValueError(f"IntraSampleViewsd: image '{key}' of spatial shape {tuple(spatial)} is smaller than roi_size {self.roi_size}; pad it first")
        size = get_valid_patch_size(spatial, self.roi_size)
        return [get_random_patch(spatial, size, self.cropper.cropper.R) for _ in range(self.num_crops)]

    def _views(self, crops: Sequence[torch.Tensor]) -> torch.Tensor:
        """``(2, K, C, *roi_size)``: two augmented views of each crop."""
        # `is not None`, never truthiness: bool(Compose) calls len(), which builds a flattened Compose whose
        # __init__ reseeds every child from MONAI's global seed once set_determinism(seed) has run (every
        # bundle's `initialize`), so each call would redraw the same augmentation and both views be equal
        views = [[_plain(self.view_transform(c) if self.view_transform is not None else c) for c in crops] for _ in range(2)]
        return torch.stack([torch.stack(v) for v in views]).float()

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        key = self.keys[0]
        image = _plain(d.pop(key))
        crops = [image[(slice(None), *p)] for p in self._patches(key, image.shape[1:])]
        d[self.views_key] = self._views(crops)
        return d

    def crop_from_store(self, case: Any) -> dict[Hashable, Any]:
        """The same output from a case in a chunked store (``cache: store``): only the ``K`` crops are read.

        ``case`` is a :class:`common.data.store_dataset.StoredCase`; the draws are the ones
        :meth:`__call__` makes on the whole volume.
        """
        key = self.keys[0]
        crops = [_plain(case.read(key, p)) for p in self._patches(key, case.spatial_shape(key))]
        d = case.fields(exclude=[key])
        d[self.views_key] = self._views(crops)
        return d


class RandIsotropicResizedCrop(Randomizable, Transform):
    """Random resized crop with one scale for every axis (aspect ratio kept): CT-FM's reference view crop.

    MONAI's ``RandScaleCrop(random_size=True)`` draws each axis' size independently; the reference
    (``transforms/ssl.py``: ``RandomResizedCrop``) draws one ``s ~ U(scale)`` and crops ``s`` times the
    input size on every axis at a random place, then resizes back to ``size`` (trilinear).

    Args:
        size: output spatial size ``(D, H, W)``.
        scale: range of ``s``, the crop's edge as a fraction of the input's (reference: ``(0.33, 1.0)``).
    """

    def __init__(self, size: Sequence[int], scale: Sequence[float] = (0.33, 1.0)) -> None:
        lo, hi = (float(v) for v in scale)
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"scale must satisfy 0 < low <= high <= 1, got {tuple(scale)}")
        self.scale = (lo, hi)
        self.resize = Resize(tuple(int(v) for v in size), mode="trilinear")
        self._crop: tuple[slice, ...] = ()

    def randomize(self, spatial: Sequence[int]) -> None:
        s = self.R.uniform(*self.scale)
        sizes = [max(1, int(s * n)) for n in spatial]  # as MONAI's RandScaleCrop: int(roi_scale * size)
        starts = [self.R.randint(0, n - c + 1) for n, c in zip(spatial, sizes)]
        self._crop = tuple(slice(a, a + c) for a, c in zip(starts, sizes))

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """``image`` ``(C, *spatial)`` -> ``(C, *size)``."""
        self.randomize(image.shape[1:])
        return self.resize(image[(slice(None), *self._crop)])
