"""Inference over many cases that survives a bad one: the failure is recorded, the rest are predicted.

Three pieces, used together in the bundles' ``inference.json``:

- :class:`FailSoftDataset` wraps the dataset: a case whose loading or preprocessing raises becomes a
  marker ``{FAILED_KEY: {"case", "error"}}`` instead of an exception in the loader thread.
- :func:`fail_soft_collate` collates the good cases of a batch and carries the markers alongside.
- :class:`FailSoftEvaluator` is MONAI's ``SupervisedEvaluator`` whose iteration records those markers
  and any exception of the forward pass or postprocessing (which runs inside the iteration: saving
  the prediction included), then hands the per-case handlers an empty batch, so a CSV or an index
  writer simply gets no row. At the end it logs every failure, writes them to ``failure_report``
  (JSON, with the cases the pre-flight check skipped) and raises :class:`FailedCasesError`, so the
  command exits non-zero after every other case was written. Rerunning predicts only what is missing.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.data import list_data_collate
from monai.engines import SupervisedEvaluator

from common.data.cases import batch_cases

logger = logging.getLogger(__name__)

FAILED_KEY = "__failed__"


class FailedCasesError(RuntimeError):
    """Some cases could not be processed; every other case was. The message lists them."""


def describe(error: BaseException) -> str:
    """``Type: message`` of ``error``, unwrapping MONAI's "applying transform ..." wrappers to the real cause."""
    while error.__cause__ is not None and str(error).startswith("applying transform"):
        error = error.__cause__
    return f"{type(error).__name__}: {error}"


class FailSoftDataset(torch.utils.data.Dataset):
    """``dataset[i]``, or a failure marker naming the case when loading/preprocessing raises.

    Args:
        dataset: a MONAI dataset whose ``data`` holds the case dicts (their ``image`` names the case).
    """

    def __init__(self, dataset: torch.utils.data.Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        try:
            return self.dataset[index]
        except Exception as e:  # noqa: BLE001 - recorded and reported; the other cases go on
            entry = self.dataset.data[index] if hasattr(self.dataset, "data") else {}
            case = entry.get("case", entry.get("image", f"#{index}")) if isinstance(entry, Mapping) else f"#{index}"
            return {FAILED_KEY: {"case": str(case), "error": describe(e)}}


def fail_soft_collate(batch: Sequence[Any]) -> dict:
    """``list_data_collate`` of the cases that loaded, with the failure markers under ``FAILED_KEY``."""
    failed = [b[FAILED_KEY] for b in batch if isinstance(b, Mapping) and FAILED_KEY in b]
    good = [b for b in batch if not (isinstance(b, Mapping) and FAILED_KEY in b)]
    out = list_data_collate(good) if good else {}
    out[FAILED_KEY] = failed
    return out


class FailSoftEvaluator(SupervisedEvaluator):
    """``SupervisedEvaluator`` that records failed cases instead of stopping (see the module docstring).

    Args:
        failure_report: JSON file for the failures (written only when there are any).
        case_source: the bundle's :class:`common.data.CaseSource`; cases its pre-flight check skipped
            are listed with the failures.
        raise_on_failure: raise :class:`FailedCasesError` at the end when any case failed.
        *args, **kwargs: ``SupervisedEvaluator``'s.
    """

    def __init__(self, *args: Any, failure_report: str | os.PathLike | None = None, case_source: Any = None, raise_on_failure: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failure_report = failure_report
        self.case_source = case_source
        self.raise_on_failure = raise_on_failure
        self.failures: list[dict[str, str]] = []
        self.add_event_handler(Events.STARTED, lambda _: self.failures.clear())
        self.add_event_handler(Events.COMPLETED, self.summarise)

    def _iteration(self, engine: Engine, batchdata: dict) -> Any:
        self.failures += batchdata.pop(FAILED_KEY, []) if isinstance(batchdata, dict) else []
        if isinstance(batchdata, dict) and not batchdata:  # every case of the batch failed to load
            return self._nothing(engine)
        try:
            return super()._iteration(engine, batchdata)
        except Exception as e:  # noqa: BLE001 - recorded, reported at the end; the other cases go on
            cases = batch_cases(batchdata) or ["<unnamed case>"]
            self.failures += [{"case": c, "error": describe(e)} for c in cases]
            logger.error(f"failed on {', '.join(cases)}: {describe(e)}; going on with the other cases")
            if torch.cuda.is_available():
                torch.cuda.empty_cache()  # an out-of-memory case must not starve the next ones
            return self._nothing(engine)

    @staticmethod
    def _nothing(engine: Engine) -> list:
        engine.state.batch = []  # per-case handlers (CSV, index writers) iterate zip(batch, output): no row
        return []

    def summarise(self, engine: Engine | None = None) -> None:
        skipped = dict(getattr(self.case_source, "skipped", None) or {})
        failures = [*({"case": c, "error": "; ".join(p), "stage": "pre-flight"} for c, p in skipped.items()), *self.failures]
        if not failures:
            return
        lines = "\n".join(f"  - {f['case']}: {f['error']}" for f in failures)
        where = ""
        if self.failure_report:
            from common.io import atomic_write_text

            path = atomic_write_text(self.failure_report, json.dumps({"num_failed": len(failures), "failures": failures}, indent=2) + "\n")
            where = f" (listed in {path})"
        message = f"{len(failures)} case(s) failed{where}; every other case was processed:\n{lines}\nFix them and rerun: only missing outputs are produced."
        if self.raise_on_failure:
            raise FailedCasesError(message)
        logger.error(message)
