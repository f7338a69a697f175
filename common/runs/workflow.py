"""The collection's bundle workflow: MONAI's ``ConfigWorkflow`` that also owns the checks of a run.

    python -m monai.bundle run --workflow_name common.runs.BundleWorkflow --config_file bundles/<name>/configs/train.json [--key value ...]

MONAI's ``ConfigWorkflow`` reads the config files, applies the ``--key value`` overrides and runs the
``initialize``/``run``/``finalize`` lists; a config component has no handle on the configuration it
belongs to (the upstream gap). This subclass fills it without reaching into MONAI:

- before anything is built it checks the overrides it was given (:func:`common.cli.check_overrides`):
  a key that names no config id (``--learning_rat``), or ``--resume false`` (a string, which counts
  as true), stops the command with the fix;
- it puts one :class:`BundleRun` (the parser, the config files, the overrides) into the config as
  ``bundle_run``, which the components that need the whole configuration take as an explicit argument
  (``"bundle_run": "@bundle_run"``): the run identity (:class:`common.runs.RunIdentity`), the
  pretrained-weights check's override hints, and the "make it with" command of a missing file.

Configs default ``bundle_run`` to ``null``, so plain ``ConfigWorkflow`` runners (MONAI Label, a bare
``monai.bundle run``) keep working; there the run identity says once that it is not checked.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from monai.bundle import ConfigParser, ConfigWorkflow

from common.cli import check_overrides, config_file_list

logger = logging.getLogger(__name__)

#: the config id the workflow fills; configs set it to null for plain ConfigWorkflow runners
BUNDLE_RUN_KEY = "bundle_run"
#: the value of ``--workflow_name`` (also in messages that tell users how to get the checks)
WORKFLOW_NAME = "common.runs.BundleWorkflow"


@dataclass(frozen=True, eq=False)
class BundleRun:
    """What a component may need about the command that runs it (``@bundle_run`` in a config).

    Attributes:
        parser: the workflow's ``ConfigParser`` (config files, meta file and overrides applied).
        config_files: the config files, in the order given.
        overrides: the ``--key value`` overrides, as MONAI received them.
    """

    parser: ConfigParser
    config_files: list[str]
    overrides: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:  # a config value that is printed or logged: not the whole parser
        return f"BundleRun(config_files={self.config_files!r}, overrides={sorted(self.overrides)!r})"


class BundleWorkflow(ConfigWorkflow):
    """``ConfigWorkflow`` with the override check and ``@bundle_run`` (see the module docstring).

    Takes exactly ``ConfigWorkflow``'s arguments; ``override`` are the config overrides.
    """

    def __init__(self, config_file: str | Sequence[str], meta_file: str | Sequence[str] | None = None,
                 logging_file: str | bool | None = None, init_id: str = "initialize", run_id: str = "run", final_id: str = "finalize",
                 tracking: str | dict | None = None, workflow_type: str | None = "train", properties_path: Any = None,
                 **override: Any) -> None:
        files = config_file_list(config_file)
        check_overrides(files, override, tracking=tracking is not None)
        super().__init__(config_file=config_file, meta_file=meta_file, logging_file=logging_file, init_id=init_id, run_id=run_id,
                         final_id=final_id, tracking=tracking, workflow_type=workflow_type, properties_path=properties_path, **override)
        if BUNDLE_RUN_KEY in self.parser:
            self.parser[BUNDLE_RUN_KEY] = BundleRun(self.parser, files, dict(override))
