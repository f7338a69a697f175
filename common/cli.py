"""Command-line overrides checked before a bundle runs.

``python -m monai.bundle run --config_file train.json --learning_rat 1e-3`` silently *adds* a key
``learning_rat`` and trains with the default rate; ``--resume false`` passes the string ``'false'``
(Python Fire only reads ``False``/``True`` as booleans), which every ``if`` treats as true. The
collection's workflow (:class:`common.runs.BundleWorkflow`, ``--workflow_name common.runs.BundleWorkflow``)
calls :func:`check_overrides` with the overrides MONAI hands it, before anything is built, and refuses
both with the key, a close match, and the fix. Set ``BUNDLE_ALLOW_NEW_KEYS=1`` to add keys on purpose.

The collection's own commands (``python -m common.data.check``, ``common.data.preprocess``, ``common.zoo.*``) read
their command lines as ``monai.bundle run`` does, with Python Fire (:func:`command`), and the config overrides
they take with the same check (:func:`read_bundle_config`): one syntax, one set of rules.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

#: Arguments of ``monai.bundle run`` itself (not config ids).
RUN_ARGS = {"config_file", "meta_file", "logging_file", "args_file", "run_id", "init_id", "final_id", "tracking",
            "workflow_type", "workflow_name", "properties_path", "bundle_root_key"}
ALLOW_ENV = "BUNDLE_ALLOW_NEW_KEYS"


class CommandLineError(ValueError):
    """A ``--key value`` override that would not do what it says; the message names it and the fix."""


def _default(parser: Any, key: str) -> Any:
    try:
        return parser[key]
    except (KeyError, IndexError, ValueError, TypeError):
        return None


def check_overrides(files: Sequence[str], overrides: Mapping[str, Any], tracking: bool = False, parser: Any = None) -> None:
    """Raise :class:`CommandLineError` for overrides naming no config id, or a lower-case boolean string.

    ``overrides`` as ``monai.bundle run`` hands them to the workflow (Python Fire has parsed them: ``--resume false``
    arrives as the string ``'false'``). ``tracking``: MONAI's tracking settings read their own keys (``experiment_name``, ...).
    ``parser``: a ``ConfigParser`` that has already read ``files`` (and no overrides), to save reading them again.
    """
    if parser is None:
        from monai.bundle import ConfigParser

        parser = ConfigParser()
        parser.read_config(list(files))
    problems = []
    known = [k for k in parser.get() if isinstance(k, str)]
    allowed = set(RUN_ARGS)
    if tracking:
        from monai.bundle.utils import DEFAULT_MLFLOW_SETTINGS

        allowed |= set(DEFAULT_MLFLOW_SETTINGS["configs"])
    for key, value in overrides.items():
        if key in allowed:
            continue
        parent = _default(parser, key.rpartition("#")[0]) if "#" in key else None
        adds_argument = isinstance(parent, dict) and "_target_" in parent  # a new keyword for a constructor: legitimate
        if key not in parser and not adds_argument and not os.environ.get(ALLOW_ENV):
            guess = difflib.get_close_matches(key.split("#")[-1], known, n=1)
            hint = f" (did you mean --{guess[0]}?)" if guess else ""
            problems.append(f"--{key}: no such key in {', '.join(files)}{hint}; monai.bundle would silently add it and ignore your value")
        elif isinstance(value, str) and value.lower() in ("true", "false") and isinstance(_default(parser, key), bool):
            problems.append(f"--{key} {value}: read as the string '{value}', which counts as true; write --{key} {value.capitalize()}")
    if problems:
        raise CommandLineError(
            "command-line overrides that would not take effect:\n  " + "\n  ".join(problems)
            + f"\n(set {ALLOW_ENV}=1 to add new keys on purpose)"
        )


def config_file_list(config_file: str | Sequence[str]) -> list[str]:
    """``config_file`` as a list of paths: a list as given, else one path (MONAI also splits a string at commas when it names no file)."""
    if isinstance(config_file, (str, Path)):
        text = str(config_file)
        return [p for p in text.split(",") if p] if "," in text and not Path(text).is_file() else [text]
    return [str(f) for f in config_file]


def value_list(value: str | Sequence[str] | None) -> list[str]:
    """A command-line option that takes one name or a list of them, as a list: Fire hands a single value as a string."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def read_bundle_config(config_file: str | Sequence[str], overrides: Mapping[str, Any]) -> Any:
    """A ``ConfigParser`` of the config files merged in order, ``overrides`` checked (:func:`check_overrides`) and applied:
    what the collection's commands other than ``monai.bundle run`` (pre-flight check, preprocessing) read a bundle with."""
    from monai.bundle import ConfigParser

    files = config_file_list(config_file)
    if missing := [f for f in files if not Path(f).is_file()]:
        raise CommandLineError(f"--config_file: no such file {', '.join(missing)}")
    parser = ConfigParser()
    parser.read_config(files)
    check_overrides(files, overrides, parser=parser)
    parser.update(dict(overrides))
    return parser


def command(main: Callable[..., Any] | Mapping[str, Callable[..., Any]], argv: Sequence[str] | None = None) -> int:
    """Run ``main`` (a function, or a map of sub-command names to functions) on a command line (``argv``, default
    ``sys.argv[1:]``) read as ``monai.bundle run`` reads its own: by Python Fire (``--key value`` with values as Python
    literals, a bare ``--flag`` is True). Returns main's exit status without printing it; a main that returns something
    else (e.g. a path it has logged) ends with 0. A command line Fire cannot read, or a :class:`CommandLineError` (an
    override :func:`check_overrides` refuses, a value out of range), ends with status 2."""
    import sys

    import fire

    try:
        status = fire.Fire(main, command=None if argv is None else list(argv), serialize=lambda _: None)
        return status if isinstance(status, int) else 0
    except CommandLineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def format_override(value: Any) -> str:
    """A value as ``monai.bundle run`` (Python Fire) must receive it: ``True``/``False``/``None`` as Python
    literals (JSON's ``true`` would arrive as a string), other non-strings as JSON."""
    import json

    if isinstance(value, str):
        return value
    if value is None or isinstance(value, bool):
        return repr(value)
    return json.dumps(value)


def choose(setting: str, value: Any, choices: dict[str, Any]) -> Any:
    """``choices[value]`` for a config option with named choices, e.g.
    ``"$common.cli.choose('augmentation', @augmentation, {'paper': @a, 'reference': @b})"``.

    Raises:
        ValueError: naming the setting, the value and the choices (MONAI would show a bare KeyError).
    """
    if value not in choices:
        raise ValueError(f"{setting} must be one of {sorted(choices)}, got {value!r}; pass --{setting} <choice>")
    return choices[value]
