"""Naming the cases of a collated batch, for error messages and reports."""

from __future__ import annotations

from typing import Any


def batch_cases(batch: Any, limit: int = 8) -> list[str]:
    """Names of a collated batch's cases: the images' file names (MONAI metadata), else the plain
    ``case`` field that :func:`common.data.resolve_cases` adds (pipelines with ``track_meta=False``),
    else ``[]``."""
    if not isinstance(batch, dict):
        return []
    meta = getattr(batch.get("image"), "meta", None)
    names = meta.get("filename_or_obj") if isinstance(meta, dict) else None
    names = names or batch.get("case")
    if not names:
        return []
    return [str(n) for n in ([names] if isinstance(names, str) else list(names))[:limit]]
