"""Per-case, per-class segmentation metrics: a CSV, a JSON summary and a log line per class.

MONAI's metric handlers keep per-case, per-class values in ``engine.state.metric_details[name]``
(``(cases, classes)``) but report only the mean; ``MetricsSaver`` writes them with class indices as
column names. This writes one table with class names, gathered across ranks:

- ``<output_dir>/<prefix>metrics.csv``: one row per case and metric, one column per class, and the
  case mean (NaN where a class is absent from both label and prediction).
- ``<output_dir>/<prefix>summary.json``: per metric, the mean over cases and classes, and per
  class the mean, std, median and number of cases it was defined for.

Per-class means are logged, and written to TensorBoard as ``<metric>/<class>`` when ``log_dir`` is
given (step: the evaluator's epoch, i.e. the training epoch during validation).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from ignite.engine import Engine, Events
from monai.utils import string_list_all_gather

from common.handlers.checkpoint import is_main_process
from common.handlers.tensorboard import shared_writer
from common.io import atomic_write_text
from common.transforms.checks import source_name
from common.transforms.save import case_name

logger = logging.getLogger(__name__)


class SegmentationReport:
    """Attach to an evaluator whose metric handlers have ``save_details=True``.

    Args:
        metrics: metric names as registered on the evaluator (e.g. ``["val_mean_dice", "val_nsd"]``).
        class_names: one name per metric column (foreground classes when background is excluded).
        output_dir: folder for the CSV and JSON; ``None`` only logs (and writes TensorBoard).
        prefix: file name prefix (``"validation_"`` during training, ``""`` for evaluate.json).
        image_key: batch key whose ``filename_or_obj`` names the case.
        log_dir: TensorBoard folder for the per-class means (``None``: none).
    """

    def __init__(
        self, metrics: Sequence[str], class_names: Sequence[str], output_dir: str | None = None, prefix: str = "", image_key: str = "image",
        log_dir: str | None = None,
    ) -> None:
        self.metrics = list(metrics)
        self.class_names = list(class_names)
        self.output_dir = Path(output_dir) if output_dir else None
        self.prefix = prefix
        self.image_key = image_key
        self.log_dir = log_dir
        self.cases: list[str] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._report)

    def _reset(self, engine: Engine) -> None:
        self.cases = []

    def _collect(self, engine: Engine) -> None:
        batch = engine.state.batch
        items = batch if isinstance(batch, list) else [batch]
        for item in items:
            image = item[self.image_key]
            names = image.meta.get("filename_or_obj") if hasattr(image, "meta") else None
            if isinstance(names, (list, tuple)):  # collated batch
                self.cases += [case_name(n) for n in names]
            else:
                self.cases.append(case_name(source_name(image, f"case_{len(self.cases)}")))

    def table(self, engine: Engine) -> dict[str, torch.Tensor]:
        """``metric name -> (cases, classes)`` float tensor from the evaluator's details."""
        out = {}
        for name in self.metrics:
            details = engine.state.metric_details.get(name) if hasattr(engine.state, "metric_details") else None
            if details is None:
                raise KeyError(f"SegmentationReport: no per-case details for metric '{name}' (is it registered with save_details=True?)")
            values = torch.as_tensor(details).float().cpu().reshape(len(details), -1)
            if values.shape[1] != len(self.class_names):
                raise ValueError(f"metric '{name}' has {values.shape[1]} classes but {len(self.class_names)} class names were given")
            out[name] = values
        return out

    def _report(self, engine: Engine) -> None:
        tables = self.table(engine)
        cases = string_list_all_gather(self.cases)
        summary: dict[str, dict] = {}
        for name, values in tables.items():
            per_class = {}
            for j, cls in enumerate(self.class_names):
                col = values[:, j]
                col = col[~torch.isnan(col)]
                per_class[cls] = {
                    "mean": float(col.mean()) if col.numel() else None,
                    "std": float(col.std(unbiased=False)) if col.numel() else None,
                    "median": float(col.median()) if col.numel() else None,
                    "num_cases": int(col.numel()),
                }
                if col.numel() and self.log_dir:  # shared_writer discards on ranks other than 0
                    shared_writer(self.log_dir).add_scalar(f"{name}/{cls}", per_class[cls]["mean"], engine.state.epoch)
            class_means = [v["mean"] for v in per_class.values() if v["mean"] is not None]
            summary[name] = {"mean": sum(class_means) / len(class_means) if class_means else None, "per_class": per_class}
            logger.info(f"{name} per class: " + ", ".join(f"{c} {v['mean']:.3f}" if v["mean"] is not None else f"{c} n/a" for c, v in per_class.items()))
        if self.output_dir is None or not is_main_process():
            return
        n = len(next(iter(tables.values()))) if tables else 0
        if len(cases) != n:  # e.g. padded DDP sampling: keep the table honest rather than mislabel rows
            logger.warning(f"{len(cases)} case names for {n} metric rows; naming rows by index")
            cases = [f"case_{i}" for i in range(n)]
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["case", "metric", *self.class_names, "mean"])
        for name, values in tables.items():
            for case, row in zip(cases, values):
                defined = row[~torch.isnan(row)]
                writer.writerow([case, name, *(_fmt(v) for v in row), _fmt(defined.mean()) if defined.numel() else "nan"])
        atomic_write_text(self.output_dir / f"{self.prefix}metrics.csv", buf.getvalue())
        doc = {"num_cases": n, "cases": cases, "metrics": summary}
        atomic_write_text(self.output_dir / f"{self.prefix}summary.json", json.dumps(doc, indent=2) + "\n")
        logger.info(f"Wrote {self.output_dir / (self.prefix + 'metrics.csv')} and {self.prefix}summary.json ({n} cases)")


def _fmt(x: torch.Tensor) -> str:
    v = float(x)
    return "nan" if math.isnan(v) else f"{v:.6f}"
