"""Resume only the run that was asked for.

:class:`RunIdentity` is one config item of every training config. Its :meth:`~RunIdentity.check`
runs first in the ``run`` list, before the trainer or any writer is built, and decides:

- no earlier run in ``checkpoint_dir``: a fresh run; its identity goes to ``checkpoint_dir/run.json``;
- an earlier run with the same identity: resume from its newest checkpoint (a pre-empted job);
- the same identity except the run length (``num_steps``): continue the earlier run to the new
  length; the learning-rate schedule is re-planned for the new length from the current iteration
  (see :class:`common.handlers.ResumeFromLatest`), and the log says so;
- weights in the output folders but no recorded run (a downloaded bundle): a fresh run, with a warning
  that it replaces them;
- anything else: stop before anything is written, naming every differing setting (old -> new) and
  the two ways out: ``--resume False`` (a fresh run; the earlier run's folders are renamed to
  ``<folder>.superseded-<time>``, never deleted) or another ``--run_dir``.

The identity is also stored in every checkpoint (``state_dict``) and in the provenance record of
every exported weight file (:mod:`common.runs.provenance`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from common.distributed import barrier, is_main_process, world_size
from common.io import atomic_write_text
from common.runs.checkpoints import list_checkpoints
from common.runs.workflow import WORKFLOW_NAME
from common.runs.identity import (
    CASE_IDS,
    CASE_LIST_IDS,
    LENGTH_KEYS,
    OPERATIONAL_KEYS,
    WEIGHT_KEYS,
    case_files,
    diff_cases,
    diff_settings,
    digest,
    flatten_settings,
    short,
    weights_setting,
)

logger = logging.getLogger(__name__)

RUN_RECORD = "run.json"
SUPERSEDED = ".superseded-"


class RunMismatchError(RuntimeError):
    """The command would resume (or overwrite) a run with other settings; the message lists them and the ways out."""


def supersede(folders: Sequence[str | os.PathLike], stamp: str | None = None) -> list[tuple[Path, Path]]:
    """Rename each existing, non-empty folder to ``<folder>.superseded-<stamp>`` (nothing is deleted).

    Folders inside another listed folder move with it. A folder holding a ``configs`` folder (a
    bundle itself) is refused: outputs must have their own folders.
    """
    stamp = stamp or time.strftime("%Y%m%d-%H%M%S")
    paths = sorted({Path(f).resolve() for f in folders if f}, key=lambda p: len(p.parts))
    moved: list[tuple[Path, Path]] = []
    for p in paths:
        if any(p.is_relative_to(m) for m, _ in moved) or not p.is_dir() or not any(p.iterdir()):
            continue
        if (p / "configs").is_dir():
            raise RunMismatchError(f"{p} holds a bundle's configs folder, so it cannot be moved aside as a run's output; set --run_dir to a folder of its own")
        target = p.with_name(p.name + SUPERSEDED + stamp)
        n = 1
        while target.exists():
            target, n = p.with_name(f"{p.name}{SUPERSEDED}{stamp}-{n}"), n + 1
        p.rename(target)
        moved.append((p, target))
    return moved


_said_unchecked: set[str] = set()


def _say_unchecked_once(checkpoint_dir: Path) -> None:
    if str(checkpoint_dir) not in _said_unchecked:
        _said_unchecked.add(str(checkpoint_dir))
        logger.warning(f"run identity not checked for {checkpoint_dir}: this workflow gives no @bundle_run (a plain ConfigWorkflow); "
                       f"an earlier run there is resumed without comparing settings. Run with --workflow_name {WORKFLOW_NAME} for the check.")


class RunIdentity:
    """The identity of a training run, checked against the run found in ``checkpoint_dir``.

    Args:
        checkpoint_dir: the run's checkpoint folder.
        outputs: the run's output folders (models, eval, tensorboard): moved aside together with the
            checkpoints when ``resume`` is false and an earlier run is there.
        resume: the bundle's ``resume`` setting.
        case_ids: config id -> name of the case lists whose files identify the data (absent ids are skipped).
        length_keys: settings that may differ on resume (the run is continued to the new length).
        weight_keys: settings naming weight files, identified by content.
        ignore: more operational keys, on top of :data:`common.runs.identity.OPERATIONAL_KEYS`.
        bundle: bundle name for records (default: the config's ``_meta_`` name or ``bundle_root``'s folder).
        bundle_run: the command's :class:`common.runs.BundleRun` (``@bundle_run``, given by
            :class:`common.runs.BundleWorkflow`): its parser holds the whole configuration the identity
            is made of. Without it (a plain ``ConfigWorkflow``, e.g. MONAI Label) the run is not checked,
            and the log says so once; checkpoints then carry no identity.
        parser: the ``ConfigParser`` itself, for code that builds an identity outside a workflow.
    """

    def __init__(
        self,
        checkpoint_dir: str,
        outputs: Sequence[str] = (),
        resume: bool = True,
        case_ids: Mapping[str, str] = CASE_IDS,
        length_keys: Sequence[str] = LENGTH_KEYS,
        weight_keys: Sequence[str] = WEIGHT_KEYS,
        ignore: Sequence[str] = (),
        bundle: str | None = None,
        bundle_run: Any = None,
        parser: Any = None,
    ) -> None:
        self.parser = parser if parser is not None else (bundle_run.parser if bundle_run is not None else None)
        self.checkpoint_dir = Path(checkpoint_dir)
        self.outputs = [str(o) for o in outputs if o]
        self.resume = resume
        self.checked = self.parser is not None
        if not self.checked:
            _say_unchecked_once(self.checkpoint_dir)
            self.bundle, self.settings, self.length, self.weights, self.cases, self.num_cases = bundle or "", {}, {}, {}, None, {}
            return
        self.case_ids = dict(case_ids)
        self.length_keys = list(length_keys)
        self.weight_keys = list(weight_keys)
        self.ignore = OPERATIONAL_KEYS | set(ignore)
        self.bundle = bundle or self._bundle_name()
        self.settings: dict[str, Any] = self._settings()
        # processes share the batch (batch_size is per process): another count is another global batch and data order
        self.settings["world_size"] = world_size()
        self.length = {k: self.settings.pop(k) for k in self.length_keys if k in self.settings}
        self.weights = {k: self.parser.get_parsed_content(k) for k in self.weight_keys if k in self.parser}
        self.cases: dict[str, list] | None = None
        self.num_cases: dict[str, int] = {}

    # -- identity -------------------------------------------------------------------------------------
    def _bundle_name(self) -> str:
        meta = self.parser.get("_meta_", {}) or {}
        if meta.get("name"):
            return str(meta["name"])
        root = self.parser.get_parsed_content("bundle_root") if "bundle_root" in self.parser else ""
        return Path(str(root)).name

    def _settings(self) -> dict[str, Any]:
        settings = flatten_settings(self.parser.get(), self.ignore)
        # the case lists are identified by their files (the case digest), not by how they are written
        lists = {*self.case_ids, *CASE_LIST_IDS}
        settings = {k: v for k, v in settings.items() if not any(k == c or k.startswith(c + "#") for c in lists)}
        for key in self.weight_keys:
            if key in settings:
                settings[key] = weights_setting(self.parser.get_parsed_content(key))
        return settings

    def _resolve_cases(self) -> dict[str, list]:
        out = {}
        for cid in self.case_ids:
            if cid in self.parser:
                cases = self.parser.get_parsed_content(cid)
                name = self.case_ids[cid]
                self.num_cases[name] = len(cases)
                out[name] = case_files(cases)
        return out

    @property
    def fingerprint(self) -> str:
        """SHA-256 over settings and cases (not the run length)."""
        return digest({"settings": self.settings, "cases": self.cases or {}})

    def summary(self) -> dict[str, Any]:
        """What identifies the run, JSON-ready (also the content of ``run.json``)."""
        return {
            "bundle": self.bundle,
            "fingerprint": self.fingerprint,
            "length": self.length,
            "settings": self.settings,
            "cases": self.cases or {},
            "num_cases": self.num_cases,
            "weights": {k: str(v) for k, v in self.weights.items() if v},
        }

    def provenance(self) -> dict[str, Any]:
        """:meth:`summary` plus the bundle's version: the ``run`` argument of :func:`common.runs.build_record`."""
        if not self.checked:
            return {"bundle": self.bundle, "checked": False}
        meta = self.parser.get("_meta_", {}) or {}
        return {**self.summary(), "bundle_version": meta.get("version")}

    # checkpoint entry (weights_only-safe: strings only)
    def state_dict(self) -> dict[str, str]:
        if not self.checked:
            return {}
        return {"fingerprint": self.fingerprint, "summary": json.dumps(self.summary(), sort_keys=True)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Nothing to restore: :meth:`check` compared the stored identity before the trainer was built."""

    # -- the earlier run ------------------------------------------------------------------------------
    def _earlier(self) -> tuple[dict[str, Any] | None, int | None, str]:
        """``(summary, iteration, where)`` of the run in ``checkpoint_dir``; summary None if there is none."""
        for _, path in reversed(list_checkpoints(self.checkpoint_dir)):
            try:
                ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except Exception as e:  # noqa: BLE001 - ResumeFromLatest reports it and falls back the same way
                logger.warning(f"cannot read {path} ({type(e).__name__}); looking at the next older checkpoint")
                continue
            iteration = (ckpt.get("trainer") or {}).get("iteration")
            if not ckpt.get("run_identity"):
                raise RunMismatchError(
                    f"{path} carries no run identity (written by an older version, or by a run without {WORKFLOW_NAME}), so it cannot be "
                    "checked against this command. "
                    f"Ways out: --resume False (a fresh run; {self.checkpoint_dir} and the run's outputs are moved aside, not deleted), "
                    "or --run_dir <another folder>."
                )
            return json.loads(ckpt["run_identity"]["summary"]), iteration, str(path)
        record = self.checkpoint_dir / RUN_RECORD
        if record.is_file():
            return json.loads(record.read_text()), 0, f"{record} (no checkpoint yet)"
        return None, None, ""

    def _stop(self, where: str, differences: list[str]) -> RunMismatchError:
        lines = "\n  ".join(differences)
        return RunMismatchError(
            f"{where} belongs to another run; this command differs in:\n  {lines}\n"
            f"Ways out: --resume False (a fresh run; the earlier run's folders are renamed to <folder>{SUPERSEDED}<time>, nothing is deleted), "
            "or --run_dir <another folder> to keep both. Nothing was written."
        )

    # -- the decision ---------------------------------------------------------------------------------
    def check(self) -> None:
        """Decide fresh / resume / continue / stop (see the module docstring). Call before building the trainer."""
        if not self.checked:
            return
        try:
            self._check()
        except RunMismatchError as e:
            logger.error(str(e))  # the message, not only MONAI's wrapped traceback, ends the log
            raise

    def _check(self) -> None:
        earlier, iteration, where = self._earlier() if self.resume else (None, None, "")
        weights = self._weights_in_outputs()
        if not self.resume:
            if (self.checkpoint_dir / RUN_RECORD).is_file() or any(self.checkpoint_dir.glob("*.pt")) or weights:
                if is_main_process():
                    moved = supersede([str(self.checkpoint_dir), *self.outputs])
                    for old, new in moved:
                        logger.warning(f"--resume False: the earlier run's {old} was moved to {new}")
                barrier()
        elif earlier is not None:
            changed = [f"{k}: {short(a)} -> {short(b)}" for k, a, b in diff_settings(earlier["settings"], self.settings)]
            if changed:
                raise self._stop(where, changed)
        elif weights:
            # weights no checked run made here (a downloaded Model Zoo bundle, MONAI Label's starting model): the new run
            # replaces them as it writes its own; said, not stopped, since loading them as a start is a legitimate use
            found = ", ".join(str(p) for p in weights[:3])
            logger.warning(f"{found}: not made by a run recorded in {self.checkpoint_dir}; this run replaces them when it writes its weights "
                           "(--run_dir <another folder> keeps them).")
        self.cases = self._resolve_cases()
        if earlier is not None:
            changed_cases = diff_cases(earlier.get("cases", {}), self.cases)
            if changed_cases:
                raise self._stop(where, ["cases: " + c for c in changed_cases])
            self._report_length(earlier, iteration or 0, where)
        elif is_main_process():
            atomic_write_text(self.checkpoint_dir / RUN_RECORD, json.dumps(self.summary(), indent=1, sort_keys=True) + "\n")
            logger.info(f"Fresh run {self.fingerprint[:12]} of {self.bundle}: checkpoints in {self.checkpoint_dir}.")
        barrier()

    def _report_length(self, earlier: Mapping[str, Any], iteration: int, where: str) -> None:
        old, new = earlier.get("length", {}), self.length
        for key in self.length_keys:
            if key not in new or old.get(key) == new.get(key):
                continue
            if isinstance(new[key], (int, float)) and iteration > new[key]:
                raise RunMismatchError(
                    f"{where} is at iteration {iteration}, past this command's {key} {new[key]}: raise --{key} to at least {iteration} to "
                    "continue it, or start a fresh run with --resume False (the earlier one is moved aside) or another --run_dir."
                )
            logger.warning(
                f"Continuing run {self.fingerprint[:12]} from iteration {iteration} with {key} {old.get(key)} -> {new[key]}: the "
                f"learning-rate schedule is re-planned for {new[key]} steps from here on."
            )
        if all(old.get(k) == new.get(k) for k in self.length_keys) and self.length and all(
            isinstance(v, (int, float)) and iteration >= v for v in self.length.values()
        ):
            logger.warning(f"Run {self.fingerprint[:12]} in {where} is already complete at iteration {iteration}: nothing to train "
                           f"(raise {', '.join('--' + k for k in self.length_keys)} to continue it).")

    def _weights_in_outputs(self) -> list[Path]:
        found = []
        for folder in self.outputs:
            p = Path(folder)
            if p.is_dir():
                found += sorted(q for q in p.glob("*.pt") if q.is_file())
        return found
