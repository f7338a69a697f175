"""Image loading whose errors name the file and key that failed.

MONAI's ``LoadImaged`` reports a truncated or corrupt NIfTI as a bare decoder error (e.g. "Compressed
file ended before the end-of-stream marker was reached"), wrapped in "applying transform ...". With
thousands of cases that does not say which scan to fix; this wrapper does.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

from monai.config import KeysCollection
from monai.transforms import LoadImaged, MapTransform


class ImageReadError(RuntimeError):
    """An image or label file could not be read; the message names key and path."""


class LoadImageCheckedd(MapTransform):
    """``LoadImaged`` per key, re-raising read failures as :class:`ImageReadError` naming the file.

    Args:
        keys: keys of the file paths to load.
        allow_missing_keys: skip keys absent from the data.
        loader_kwargs: passed to ``monai.transforms.LoadImaged`` (``image_only``,
            ``ensure_channel_first``, ``reader``, ...).
    """

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False, **loader_kwargs: Any) -> None:
        super().__init__(keys, allow_missing_keys)
        self.loaders = {k: LoadImaged(keys=k, allow_missing_keys=allow_missing_keys, **loader_kwargs) for k in self.keys}

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            path = d[key]
            try:
                d = self.loaders[key](d)
            except Exception as e:  # any reader failure: corrupt, truncated, unsupported, unreadable
                raise ImageReadError(f"cannot read {key} file '{path}': {type(e).__name__}: {e}") from e
        return d
