"""kill -9 of a real training process, then the same command resumes from the newest checkpoint and finishes.

A killed write leaves at most a temporary file next to the checkpoints (they are written to a temp
file and renamed); the resumed run ignores it, so the last good checkpoint is what it loads.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import BUNDLES, REPO, TINY_SUBFORE, assert_ok, run_bundle

from monai.bundle import ConfigParser
from monai.optimizers import WarmupCosineSchedule

from common.cli import format_override
from common.handlers import list_checkpoints

pytestmark = pytest.mark.slow


def start_bundle(config_files: list[Path], overrides: dict) -> subprocess.Popen:
    files = "[" + ",".join(f"'{f}'" for f in config_files) + "]"
    args = [a for k, v in overrides.items() for a in (f"--{k}", format_override(v))]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "monai.bundle", "run", "--workflow_name", "common.runs.BundleWorkflow", "--config_file", files, *args], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def kill_after_first_checkpoint(proc: subprocess.Popen, checkpoint_dir: Path, timeout: float = 300) -> int:
    """SIGKILL ``proc`` as soon as a checkpoint exists; returns the newest checkpoint's iteration."""
    start = time.monotonic()
    while not list_checkpoints(checkpoint_dir):
        assert proc.poll() is None, "the run ended before writing a checkpoint"
        assert time.monotonic() - start < timeout, "no checkpoint in time"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return list_checkpoints(checkpoint_dir)[-1][0]


CASES = {
    "subfore_pretrain": ([BUNDLES / "subfore_pretrain" / "configs" / "train.json"],
                         {**TINY_SUBFORE, "num_steps": 4, "epoch_length": 2, "checkpoint_interval": 2, "image_interval": 100}),
    "btcv_finetune": ([BUNDLES / "btcv_finetune" / "configs" / f for f in ("train.json", "demo.json")],
                      {"num_steps": 4, "epoch_length": 2, "num_workers": 0, "log_interval": 1}),
}


@pytest.mark.parametrize("bundle", CASES)
def test_kill_9_then_the_same_command_resumes(tmp_path, phantom_root, bundle):
    configs, extra = CASES[bundle]
    overrides = {**extra, "bundle_root": str(tmp_path), "run_dir": str(tmp_path), "phantom_dir": str(phantom_root), "num_phantoms": 5, "num_phantom_validation": 1}
    checkpoints = tmp_path / "models" / "checkpoints"
    killed_at = kill_after_first_checkpoint(start_bundle(configs, overrides), checkpoints)
    assert 0 < killed_at < overrides["num_steps"]
    state = torch.load(list_checkpoints(checkpoints)[-1][1], map_location="cpu", weights_only=True)
    assert {"model", "optimizer", "trainer", "nonfinite_guard"} <= set(state)  # the newest checkpoint is whole
    cut = checkpoints / f".checkpoint_{killed_at + 1}.pt.abc123.tmp"
    cut.write_bytes(b"half a checkpoint")  # a write cut by the kill

    out = assert_ok(run_bundle(configs, overrides))  # the same command
    resumed = re.search(r"Resumed from .*checkpoint_(\d+)\.pt at iteration (\d+)", out)
    assert resumed and int(resumed.group(2)) >= killed_at, out[-3000:]
    assert "Engine run finished" in out and not cut.exists()  # the cut write was cleaned up
    assert list_checkpoints(checkpoints)[-1][0] == overrides["num_steps"]  # trained to the end
    final = torch.load(list_checkpoints(checkpoints)[-1][1], map_location="cpu", weights_only=True)
    parser = ConfigParser()
    parser.read_config([str(c) for c in configs])
    parser.update(overrides)
    sched = WarmupCosineSchedule(torch.optim.SGD([torch.zeros(1)], lr=parser.get_parsed_content("learning_rate")),
                                 parser.get_parsed_content("warmup_steps"), overrides["num_steps"])
    for _ in range(overrides["num_steps"]):
        sched.step()
    assert final["optimizer"]["param_groups"][0]["lr"] == pytest.approx(sched.get_last_lr()[0])  # the schedule continued, not restarted
    assert (tmp_path / "models" / "model.pt").is_file()
