"""File sizes, asked of the file system once per process.

At 10^5 cases on network storage every ``stat`` costs: listing the datalist (does each file exist?),
the run identity (each file's size) and the pre-flight check would otherwise each ask again. Sizes
are memoised here, and a chunked store's manifest (:mod:`common.data.store`) hands in the sizes it
recorded when it read the files, so a run on a stored dataset stats no source file at all.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

_SIZES: dict[str, int] = {}


def remember_sizes(sizes: Mapping[str, int]) -> None:
    """Record known sizes (``-1``: not a regular file), e.g. those a store's manifest holds."""
    _SIZES.update({str(k): int(v) for k, v in sizes.items()})


def file_size(path: str | os.PathLike) -> int:
    """Size of a regular file in bytes, ``-1`` if it is missing or not a regular file (asked once)."""
    key = str(path)
    if key not in _SIZES:
        try:
            st = os.stat(key)
            _SIZES[key] = st.st_size if os.path.isfile(key) else -1
        except OSError:
            _SIZES[key] = -1
    return _SIZES[key]


def forget_sizes() -> None:
    """Drop every memoised size (files changed on disk within this process, e.g. in tests)."""
    _SIZES.clear()
