"""``Spacingd`` that tolerates non-metadata entries named ``<key>_*`` in the data dictionary.

MONAI 1.6's ``Spacingd`` (NIfTI inputs) calls ``.update(meta)`` on every entry whose name starts
with ``"<key>_"``, assuming each is a legacy meta dictionary. MONAI Label's inference tasks put the
input's file name in ``image_path`` (a string), so any bundle preprocessing with a plain
``Spacingd`` on ``image`` fails inside MONAI Label with ``'str' object has no attribute 'update'``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

from monai.transforms import Spacingd


class SpacingKeepExtrasd(Spacingd):
    """``monai.transforms.Spacingd`` (same arguments) that leaves ``<key>_*`` entries that are not dicts alone."""

    def __call__(self, data: Mapping[Hashable, Any], lazy: bool | None = None) -> dict[Hashable, Any]:
        d = dict(data)
        prefixes = tuple(f"{k}_" for k in self.keys)
        extras = {k: d.pop(k) for k in list(d) if isinstance(k, str) and k.startswith(prefixes) and not isinstance(d[k], Mapping)}
        out = super().__call__(d, lazy=lazy)
        out.update(extras)
        return out
