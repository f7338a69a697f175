"""The sources of the bundles' configs: shared blocks written once, each bundle's own entries.

Every ``bundles/<bundle>/configs/*.json`` except datalists and ``metadata.json`` is written from
``common/dev/config_sources/bundles/<bundle>/<same name>.json`` and the blocks it names (rules in
:mod:`common.dev.config_sources.compose`). Written files stay complete, standalone MONAI configs, marked
by a first key ``"_generated_"`` naming their sources. After editing a source or a block::

    python -m common.dev.config_sources write     # rewrite the bundle configs
    python -m common.dev.config_sources check     # exit 1 when a committed config differs from its sources
    python -m common.dev.config_sources stats     # share of source entries written in more than one place

Block folders: ``blocks/`` (shared by several bundles), ``bundles/<bundle>/_*.json`` (shared by the
configs of one bundle, e.g. its class names and network in both train.json and inference.json).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from common.dev.config_sources.compose import BLOCKS_KEY, OVERLAY_KEY, SourceError, compose, read_json
from common.dev.config_sources.writer import dumps
from common.paths import GENERATED_KEY, PACKAGE_PARENT

SOURCES = Path(__file__).resolve().parent
BLOCKS_DIR = SOURCES / "blocks"
BUNDLE_SOURCES = SOURCES / "bundles"

__all__ = ["GENERATED_KEY", "SOURCES", "GeneratedConfig", "SourceError", "generated_configs", "write", "stale", "duplication"]


@dataclass
class GeneratedConfig:
    """One bundle config and the text its sources give."""

    bundle: str
    name: str
    source: Path
    blocks: list[str]
    text: str

    def target(self, bundles_dir: Path) -> Path:
        return bundles_dir / self.bundle / "configs" / self.name


def _marker(bundle: str, name: str, blocks: list[str]) -> str:
    shared = [b for b in blocks if not b.startswith("_")]
    own = [b for b in blocks if b.startswith("_")]
    parts = [f"common/dev/config_sources/bundles/{bundle}/{name}"]
    parts += [f"common/dev/config_sources/bundles/{bundle}/{b}.json" for b in own]
    text = f"written by 'python -m common.dev.config_sources write' from {', '.join(parts)}"
    if shared:
        text += f" and the blocks {', '.join(shared)} (common/dev/config_sources/blocks)"
    return text + "; edit those, not this file"


def generated_configs(sources: Path = BUNDLE_SOURCES, blocks_dir: Path = BLOCKS_DIR) -> list[GeneratedConfig]:
    """Every bundle config the sources define, composed (sorted by bundle, then file name)."""
    out = []
    for bundle_dir in sorted(p for p in sources.iterdir() if p.is_dir()):
        for path in sorted(bundle_dir.glob("*.json")):
            if path.name.startswith("_"):
                continue  # a block of this bundle, not a config
            source = read_json(path)
            config, used = compose(source, blocks_dir, bundle_dir, where=str(path.relative_to(PACKAGE_PARENT)))
            text = dumps({GENERATED_KEY: _marker(bundle_dir.name, path.name, used), **config})
            out.append(GeneratedConfig(bundle_dir.name, path.name, path, used, text))
    return out


def write(bundles_dir: Path) -> list[Path]:
    """Write every generated config under ``bundles_dir``; returns the files whose text changed."""
    changed = []
    for g in generated_configs():
        target = g.target(bundles_dir)
        if not target.parent.is_dir():
            raise SourceError(f"{g.source}: no bundle folder {target.parent}")
        if not target.is_file() or target.read_text() != g.text:
            target.write_text(g.text)
            changed.append(target)
    return changed


def stale(bundles_dir: Path) -> list[str]:
    """Problems that make the committed configs differ from the sources (empty when in sync)."""
    problems = []
    made = set()
    for g in generated_configs():
        target = g.target(bundles_dir)
        made.add(target.resolve())
        if not target.is_file():
            problems.append(f"{target}: missing; run python -m common.dev.config_sources write")
        elif target.read_text() != g.text:
            problems.append(f"{target}: differs from {g.source.relative_to(PACKAGE_PARENT)} and its blocks; "
                            "edit the source and run python -m common.dev.config_sources write")
    for f in sorted(bundles_dir.glob("*/configs/*.json")):
        if f.name.startswith("datalist") or f.name == "metadata.json" or f.resolve() in made:
            continue
        problems.append(f"{f}: has no source; add common/dev/config_sources/bundles/{f.parent.parent.name}/{f.name}")
    return problems


def _leaves(obj: object, path: tuple = ()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in (BLOCKS_KEY, OVERLAY_KEY):
                continue
            key = k.lstrip("+-").replace("::", "#").split("#")
            yield from _leaves(v, path + tuple(key))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _leaves(v, path + (i,))
    else:
        yield path, json.dumps(obj)


def duplication() -> dict:
    """How much of what is written by hand is written in more than one place.

    A place is a shared block file or one bundle's source folder (its configs and own blocks);
    an entry is a (config id, value) leaf. Mirrors ``arch_metrics.py`` (which counts per bundle
    folder), applied to the sources instead of the generated files.
    """
    places: dict[str, set] = {}
    for f in sorted(BLOCKS_DIR.glob("*.json")):
        places[f"blocks/{f.stem}"] = set(_leaves(read_json(f)))
    for d in sorted(p for p in BUNDLE_SOURCES.iterdir() if p.is_dir()):
        places[f"bundles/{d.name}"] = set().union(*(set(_leaves(read_json(f))) for f in d.glob("*.json")))
    count = Counter(e for entries in places.values() for e in entries)
    total = sum(len(e) for e in places.values())
    repeated = sum(c for c in count.values() if c >= 2)
    return {"entries": total, "in_2plus_places": repeated, "share": round(repeated / total, 4) if total else 0.0,
            "places": len(places)}
