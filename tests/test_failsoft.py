"""Inference goes on past failed cases: loading and network failures are recorded, the rest is written."""

from __future__ import annotations

import json

import pytest
import torch
from ignite.engine import Events
from monai.data import Dataset

from common.data import CaseSource, CheckedThreadDataLoader
from common.engines import FailedCasesError, FailSoftDataset, FailSoftEvaluator, fail_soft_collate


def _load(d: dict) -> dict:
    if d["case"] == "unreadable":
        raise OSError("cannot read image file 'unreadable.nii.gz'")
    return {**d, "image": torch.full((1, 4, 4, 4), float(d["value"]))}


class Picky(torch.nn.Module):
    """Doubles its input; fails on an input of value 7 (as a case that runs out of memory would)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x == 7).any():
            raise RuntimeError("CUDA out of memory (simulated)")
        return 2 * x


@pytest.mark.parametrize("batch_size", [1, 2])
def test_failed_cases_are_listed_and_the_others_processed(tmp_path, batch_size):
    cases = [{"case": n, "value": v} for n, v in [("a", 1), ("unreadable", 0), ("b", 2), ("big", 7), ("c", 3)]]
    loader = CheckedThreadDataLoader(FailSoftDataset(Dataset(cases, _load)),
                                     batch_size=batch_size, collate_fn=fail_soft_collate)
    source = CaseSource()
    source.skipped["air.nii.gz"] = ["image has no foreground"]
    report = tmp_path / "failed_cases.json"
    evaluator = FailSoftEvaluator(device=torch.device("cpu"), val_data_loader=loader, network=Picky(), failure_report=str(report), case_source=source)
    written: list[tuple[str, float]] = []

    @evaluator.on(Events.ITERATION_COMPLETED)
    def write_rows(engine):  # a per-case writer (like ClassificationSaver): zip(batch, output)
        written.extend((item["case"], float(out["pred"].mean())) for item, out in zip(engine.state.batch, engine.state.output))

    with pytest.raises(FailedCasesError) as err:
        evaluator.run()
    failed = {f["case"]: f for f in json.loads(report.read_text())["failures"]}
    assert set(failed) == {"air.nii.gz", "unreadable", "big"} | ({"b"} if batch_size == 2 else set())  # "b" shares a batch with "big"
    assert "cannot read image file" in failed["unreadable"]["error"] and "out of memory" in failed["big"]["error"]
    assert failed["air.nii.gz"]["stage"] == "pre-flight"
    assert f"{len(failed)} case(s) failed" in str(err.value) and "unreadable" in str(err.value)
    expected = {"a": 2.0, "b": 4.0, "c": 6.0}
    if batch_size == 2:
        expected.pop("b")
    assert dict(written) == expected  # every other case went through the network and the writer


def test_no_failure_no_report_and_raise_can_be_turned_off(tmp_path):
    cases = [{"case": "a", "value": 1}, {"case": "unreadable", "value": 0}]
    loader = CheckedThreadDataLoader(FailSoftDataset(Dataset(cases, _load)), batch_size=1, collate_fn=fail_soft_collate)
    FailSoftEvaluator(device=torch.device("cpu"), val_data_loader=CheckedThreadDataLoader(FailSoftDataset(Dataset(cases[:1], _load)), collate_fn=fail_soft_collate),
                      network=Picky(), failure_report=str(tmp_path / "none.json")).run()
    assert not (tmp_path / "none.json").exists()
    evaluator = FailSoftEvaluator(device=torch.device("cpu"), val_data_loader=loader, network=Picky(), raise_on_failure=False)
    evaluator.run()
    assert [f["case"] for f in evaluator.failures] == ["unreadable"]
