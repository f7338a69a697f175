"""Composing a bundle config from shared blocks and the bundle's own entries.

A source is a JSON object. Its optional ``"_blocks_"`` list names blocks applied first, in order
(``common/config_sources/blocks/<name>.json``; a name starting with ``_`` is a block of one
bundle, ``common/config_sources/bundles/<bundle>/<name>.json``, shared by its configs); blocks are
themselves sources. Its
other keys are applied on top with the overlay rules MONAI uses when it merges several
``--config_file`` files (``ConfigParser.load_config_files``), so a source reads like a MONAI overlay:

- ``"key": value`` sets (replaces) the value; ``"a#b#c"`` addresses a nested entry;
- ``"+key": [...]`` appends to a list, ``"+key": {...}`` updates a dict (``merge_kv``'s rule);
- ``"-key": null`` removes an entry (no MONAI counterpart: the gap this fills is a block entry a
  bundle does not want).

A source with ``"_overlay_": true`` is an overlay file (such as ``demo.json``) that MONAI merges onto
another config at load time: its keys, ``a#b`` and ``+key`` included, are written as they are and
only ``-key`` (remove a block's entry) is read here.

``{{bundle}}`` in any string is replaced by the bundle's name. The result is a plain, complete MONAI
config: nothing here is needed to read or run a written bundle.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

BLOCKS_KEY = "_blocks_"
OVERLAY_KEY = "_overlay_"
SEP = "#"


class SourceError(ValueError):
    """A source or block that cannot be composed (unknown block, bad id, cycle)."""


def _split(key: str) -> list[str]:
    return key.replace("::", SEP).split(SEP)


def _parent(tree: dict, parts: list[str], key: str, create: bool) -> Any:
    node: Any = tree
    for p in parts[:-1]:
        if isinstance(node, list):
            node = node[int(p)]
        elif p in node:
            node = node[p]
        elif create:
            node = node.setdefault(p, {})
        else:
            raise SourceError(f"'{key}': no entry '{p}' to go into")
    return node


def apply(tree: dict, overlay: dict, where: str = "", literal: bool = False) -> dict:
    """Apply ``overlay``'s entries to ``tree`` in place (rules in the module docstring); returns ``tree``.

    ``literal``: keys are top-level names, not ids (overlay files); only ``-key`` is interpreted.
    """
    for key, value in overlay.items():
        if key in (BLOCKS_KEY, OVERLAY_KEY):
            continue
        value = copy.deepcopy(value)
        if literal:
            if key.startswith("-"):
                if key[1:] not in tree:
                    raise SourceError(f"{where}: '{key}' removes an entry that is not there")
                del tree[key[1:]]
            else:
                tree[key] = value
            continue
        if key.startswith("-"):
            parts = _split(key[1:])
            node = _parent(tree, parts, key, create=False)
            try:
                del node[int(parts[-1]) if isinstance(node, list) else parts[-1]]
            except (KeyError, IndexError):
                raise SourceError(f"{where}: '{key}' removes an entry that is not there") from None
        elif key.startswith("+"):
            parts = _split(key[1:])
            node = _parent(tree, parts, key, create=True)
            old = node.get(parts[-1]) if isinstance(node, dict) else node[int(parts[-1])]
            if isinstance(old, list) and isinstance(value, list):
                old.extend(value)
            elif isinstance(old, dict) and isinstance(value, dict):
                old.update(value)
            else:
                raise SourceError(f"{where}: '{key}' merges a {type(value).__name__} into {type(old).__name__}")
        else:
            parts = _split(key)
            node = _parent(tree, parts, key, create=True)
            if isinstance(node, list):
                node[int(parts[-1])] = value
            else:
                node[parts[-1]] = value
    return tree


def _substitute(obj: Any, bundle: str) -> Any:
    if isinstance(obj, str):
        return obj.replace("{{bundle}}", bundle)
    if isinstance(obj, list):
        return [_substitute(v, bundle) for v in obj]
    if isinstance(obj, dict):
        return {k: _substitute(v, bundle) for k, v in obj.items()}
    return obj


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise SourceError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise SourceError(f"{path}: a source must be a JSON object")
    return data


def block_path(name: str, blocks_dir: Path, bundle_dir: Path) -> Path:
    """File of block ``name``: a bundle's own block (``_name``) or a shared one."""
    return bundle_dir / f"{name}.json" if name.startswith("_") else blocks_dir / f"{name}.json"


def compose(source: dict, blocks_dir: Path, bundle_dir: Path, where: str = "source") -> tuple[dict, list[str]]:
    """Compose ``source`` for the bundle whose sources are in ``bundle_dir``.

    Each block's own blocks are applied before its entries, depth first, onto one config, so a
    block's ``a#b`` entries extend what earlier blocks wrote.

    Returns:
        the composed config and the names of the blocks used, in application order.
    """
    tree: dict = {}
    used: list[str] = []
    literal = bool(source.get(OVERLAY_KEY, False))

    def _apply(src: dict, label: str, stack: tuple) -> None:
        for name in src.get(BLOCKS_KEY, []):
            if name in stack:
                raise SourceError(f"{label}: block cycle {' -> '.join(stack + (name,))}")
            path = block_path(name, blocks_dir, bundle_dir)
            if not path.is_file():
                raise SourceError(f"{label}: unknown block '{name}' (no {path})")
            _apply(read_json(path), f"block {name}", stack + (name,))
            if name not in used:
                used.append(name)
        apply(tree, src, label, literal)

    _apply(source, where, ())
    return _substitute(tree, bundle_dir.name), used


def derive_overlay(base: dict, target: dict, prefix: str = "", literal: bool = False) -> dict:
    """The overlay that turns ``base`` into ``target`` (inverse of :func:`apply`).

    Used to write a bundle's own entries once its shared blocks are chosen: nested dicts become
    ``a#b`` ids, a list of components with few changed items becomes ``a#<index>`` ids, a list
    that extends the base's becomes ``+key``, missing entries become ``-key``.
    """
    out: dict = {}
    for k, v in target.items():
        kid = f"{prefix}{k}"
        if k not in base:
            out[kid] = v
        elif base[k] == v:
            continue
        elif literal:
            out[kid] = v
        elif isinstance(v, dict) and isinstance(base[k], dict) and set(v) & set(base[k]) and v.get("_target_") == base[k].get("_target_"):
            out.update(derive_overlay(base[k], v, kid + SEP))
        elif (isinstance(v, list) and isinstance(base[k], list) and len(v) == len(base[k]) and any(isinstance(x, (dict, list)) for x in v)
              and 2 * sum(a != b for a, b in zip(v, base[k])) <= len(v)):
            # a few items differ (e.g. one transform's argument): name them, ``key#3#prob``
            out.update(derive_overlay(dict(enumerate(base[k])), dict(enumerate(v)), kid + SEP))
        elif isinstance(v, list) and isinstance(base[k], list) and len(v) > len(base[k]) and v[: len(base[k])] == base[k] and base[k]:
            out["+" + kid] = v[len(base[k]):]
        else:
            out[kid] = v
    for k in base:
        if k not in target:
            out[f"-{prefix}{k}"] = None
    return out
