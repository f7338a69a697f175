"""Composing a bundle config from shared blocks and the bundle's own entries.

A source is a JSON object. Its optional ``"_blocks_"`` list names blocks applied first, in order
(``common/dev/config_sources/blocks/<name>.json``; a name starting with ``_`` is a block of one
bundle, ``common/dev/config_sources/bundles/<bundle>/<name>.json``, shared by its configs); blocks are
themselves sources. Its
other keys are applied on top with the overlay rules MONAI uses when it merges several
``--config_file`` files (``ConfigParser.load_config_files``), so a source reads like a MONAI overlay:

- ``"key": value`` sets (replaces) the value; ``"a#b#c"`` addresses a nested entry (MONAI's
  ``ConfigParser.set(..., recursive=True)``: missing parent dicts are created);
- ``"+key": [...]`` appends to a list, ``"+key": {...}`` updates a dict;
- ``"-key": null`` removes an entry (no MONAI counterpart: the gap this fills is a block entry a
  bundle does not want).

The first two are MONAI's own (``ConfigParser.set`` and ``merge_kv``), not a re-implementation.

A source with ``"_overlay_": true`` is an overlay file (such as ``demo.json``) that MONAI merges onto
another config at load time: ``a#b`` and ``+key`` keep their meaning (a nested entry, an append), but
MONAI applies them when the overlay is loaded, so they are written out as they are; only ``-key``
(remove a block's entry) is applied here.

A bundle's name reaches its configs as a plain entry, ``bundle_name``, from its own block
``bundles/<bundle>/_name.json`` (which the shared ``bundle`` block names), and configs refer to it
as ``@bundle_name``: no templating. The result is a plain, complete MONAI config: nothing here is
needed to read or run a written bundle (this package lives in ``common.dev`` and is never vendored).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from monai.bundle import ConfigParser
from monai.bundle.reference_resolver import ReferenceResolver
from monai.bundle.utils import merge_kv

BLOCKS_KEY = "_blocks_"
OVERLAY_KEY = "_overlay_"


class SourceError(ValueError):
    """A source or block that cannot be composed (unknown block, bad id, cycle)."""


def _remove(parser: ConfigParser, key: str, where: str) -> None:
    """``-id``: delete config id ``id`` (the one rule MONAI's merge lacks: a block entry a bundle does not want)."""
    id = key[1:]
    if id not in parser:
        raise SourceError(f"{where}: '{key}' removes an entry that is not there")
    parent_id, last = ReferenceResolver.split_id(id, last=True)
    parent = parser[parent_id] if parent_id else parser.get()
    del parent[int(last) if isinstance(parent, list) else last]


def apply(tree: dict, overlay: dict, where: str = "", literal: bool = False) -> dict:
    """Apply ``overlay``'s entries to ``tree`` in place (rules in the module docstring); returns ``tree``.

    Ids, ``+key`` and plain keys go through MONAI's own merge (``monai.bundle.utils.merge_kv`` on a
    ``ConfigParser``, as ``ConfigParser.load_config_files`` merges several files), so a source means
    what the same entries mean in an overlay given to ``monai.bundle run``; ``-key`` is the one addition.
    ``literal``: keys are written as they are (overlay files, which MONAI merges at load time); only
    ``-key`` is interpreted.
    """
    if literal:
        for key, value in overlay.items():
            if key in (BLOCKS_KEY, OVERLAY_KEY):
                continue
            if key.startswith("-"):
                if key[1:] not in tree:
                    raise SourceError(f"{where}: '{key}' removes an entry that is not there")
                del tree[key[1:]]
            else:
                tree[key] = copy.deepcopy(value)
        return tree
    parser = ConfigParser(config=tree)
    for key, value in overlay.items():
        if key in (BLOCKS_KEY, OVERLAY_KEY):
            continue
        if key.startswith("-"):
            _remove(parser, key, where)
            continue
        try:
            if key.startswith("+"):
                if key[1:] not in parser:
                    raise SourceError(f"{where}: '{key}' merges into an entry that is not there")
                merge_kv(parser, key, copy.deepcopy(value))
            else:
                parser.set(copy.deepcopy(value), key, recursive=True)  # MONAI's set: missing parent dicts are created
        except (KeyError, IndexError, ValueError, TypeError) as e:
            raise SourceError(f"{where}: '{key}' cannot be set ({type(e).__name__}: {e})") from None
    return parser.get()


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
    return tree, used
