"""Finding a bundle's folder, so configs work from any working directory.

MONAI's ``bundle_root`` is conventionally ``"."`` (run from inside the bundle). In this collection a
bundle may be run from the repository root (``--config_file bundles/<name>/configs/train.json``), from
inside its folder, or from anywhere once ``common`` is installed (``pip install -e .``); an exported
standalone bundle carries its own copy of ``common``. :func:`locate_bundle` resolves all of these;
:func:`bundle_on_path` puts a bundle folder on ``sys.path`` for code that reads an exported bundle's
configs outside ``monai.bundle run``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import common

#: First key of every bundle config written by the config generator (``common.dev.config_sources``): names its sources.
GENERATED_KEY = "_generated_"

#: Repository root when ``common`` is used from a checkout (``<root>/common/__init__.py``).
PACKAGE_PARENT = Path(common.__file__).resolve().parent.parent


def _is_bundle(folder: Path, name: str) -> bool:
    meta = folder / "configs" / "metadata.json"
    if not meta.is_file():
        return False
    try:
        return json.loads(meta.read_text()).get("name") == name or folder.name == name
    except (json.JSONDecodeError, OSError):
        return folder.name == name


def locate_bundle(name: str) -> str:
    """Absolute path of bundle ``name``.

    Looks, in order, at: the folder that holds ``common`` when it is vendored inside an exported
    bundle (that copy of the code belongs to that bundle), the working directory (run from inside
    the bundle), ``./bundles/<name>`` (run from the repository root), and ``bundles/<name>`` next to
    the ``common`` package (installed checkout).

    Raises:
        FileNotFoundError: with the places tried; pass ``--bundle_root`` to set it explicitly.
    """
    cwd = Path(os.getcwd())
    candidates = [PACKAGE_PARENT, cwd, cwd / "bundles" / name, PACKAGE_PARENT / "bundles" / name]
    for c in candidates:
        if _is_bundle(c, name):
            return str(c.resolve())
    tried = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"cannot find bundle '{name}' (tried {tried}); pass --bundle_root <folder of the bundle>")


@contextlib.contextmanager
def bundle_on_path(bundle_dir: str | Path) -> Iterator[None]:
    """The bundle folder on ``sys.path`` (as ``ConfigWorkflow.run`` and MONAI Label put it there), so an
    exported bundle's vendored package resolves."""
    root = str(Path(bundle_dir).resolve())
    sys.path.insert(0, root)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(root)
