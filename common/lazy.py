"""Package attributes imported on first use (PEP 562), so ``import common.handlers`` stays cheap and
an exported bundle can ship only the modules its configs use.

A package ``__init__`` declares ``EXPORTS = {"Name": "common.pkg.module", ...}`` (a literal dict, read
without importing by :mod:`common.zoo.export`) and binds ``__getattr__, __dir__ = exports(__name__, EXPORTS)``.
``from common.handlers import BestModelSaver`` and MONAI's ``"_target_": "common.handlers.BestModelSaver"``
then import only ``common.handlers.best_model``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def exports(package: str, names: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` resolving each of ``names`` from its module."""
    module_globals = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        if name not in names:
            try:  # a submodule not imported yet (``common.handlers.tensorboard.shared_writer``)
                return importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as e:
                if e.name != f"{package}.{name}":
                    raise
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(names[name]), name)
        module_globals[name] = value  # next access is a plain attribute
        return value

    def __dir__() -> list[str]:
        return sorted(set(module_globals) | set(names))

    return __getattr__, __dir__
