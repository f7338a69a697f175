"""The benchmark suite: figures are ratios against a baseline of the same run, written as JSON and Markdown."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
from suite import Figure, last_json, markdown  # noqa: E402 - bench/ is a folder of scripts


def test_figures_are_ratios_with_goals():
    f = Figure("b", "masking / step", 0.5, "step", 50.0, "<= 0.02")
    assert f.ratio == 0.01 and f.met is True
    assert Figure("b", "x", 3.0, "y", 1.0, "<= 2.5").met is False
    assert Figure("b", "x", 1.0, "y", 2.0).met is None  # no goal: reported, not judged
    assert last_json('log {x}\n{\n  "a": {"b": 1}\n}\n') == {"a": {"b": 1}}


def test_markdown_lists_figures_and_what_did_not_run():
    result = {"date": "2026-11-25", "device_name": "CPU", "quick": True, "versions": {"torch": "2", "monai": "1"},
              "figures": [vars(Figure("b", "masking / step", 0.5, "step", 50.0, "<= 0.02"))], "not_run": {"ctfm": "exit 1: no CT"}}
    table = markdown(result)
    assert "| b | masking / step | 0.5 | step | 50 | 0.01 | <= 0.02 | yes |" in table and "| ctfm | not run: exit 1: no CT |" in table


@pytest.mark.slow
def test_one_command_writes_the_json_and_the_table(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "bench" / "suite.py"), "--quick", "--device", "cpu", "--only", "anatomask_masking",
                          "--output", str(tmp_path)], capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(next(tmp_path.glob("suite_*_cpu_quick.json")).read_text())
    assert result["versions"]["torch"] and result["device"] == "cpu" and not result["not_run"]
    figures = {f["figure"].split(" (")[0]: f for f in result["figures"]}
    numpy_loop = figures["mask generation"]
    assert numpy_loop["ratio"] == pytest.approx(numpy_loop["value"] / numpy_loop["baseline"], rel=1e-3)
    assert numpy_loop["ratio"] < 1  # the vectorized masking beats the per-sample loop, measured in this run
    assert (tmp_path / next(tmp_path.glob("*.json")).name.replace(".json", ".md")).read_text().count("| anatomask_masking |") == 2
