"""Writing configs as JSON that reads like the hand-written files: short values on one line."""

from __future__ import annotations

import json
from typing import Any

WIDTH = 120


def _inline(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _dump(value: Any, indent: int, lead: int) -> str:
    """``value`` at nesting ``indent`` (spaces), ``lead`` characters already on its first line."""
    flat = _inline(value)
    if not isinstance(value, (dict, list)) or not value or lead + len(flat) <= WIDTH:
        return flat
    pad = " " * (indent + 4)
    if isinstance(value, dict):
        rows = []
        for k, v in value.items():
            key = f"{pad}{_inline(k)}: "
            rows.append(key + _dump(v, indent + 4, len(key)))
        return "{\n" + ",\n".join(rows) + "\n" + " " * indent + "}"
    rows = [pad + _dump(v, indent + 4, len(pad)) for v in value]
    return "[\n" + ",\n".join(rows) + "\n" + " " * indent + "]"


def dumps(config: dict) -> str:
    """``config`` as JSON text: top-level entries one per line, nested values inline up to 120 columns."""
    if not config:
        return "{}\n"
    rows = []
    for k, v in config.items():
        key = f"    {_inline(k)}: "
        rows.append(key + _dump(v, 4, len(key)))
    return "{\n" + ",\n".join(rows) + "\n}\n"
