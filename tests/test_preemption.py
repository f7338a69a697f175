"""Pre-emption: a signal mid-run writes a checkpoint of that iteration and exits 75; the same command resumes there
and ends with the weights an uninterrupted run ends with (deterministic CPU config)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import BUNDLES, REPO, TINY_SUBFORE
from ignite.engine import Events
from common.runs import BundleWorkflow

from common.cli import format_override
from common.data.sampler import StreamSampler
from common.handlers import PREEMPTED_EXIT_CODE, list_checkpoints
from common.handlers.preemption import parse_signal

CONFIGS = [BUNDLES / "subfore_pretrain" / "configs" / "train.json"]
#: 4 steps in 2 ignite epochs of 2; no periodic checkpoint before the end: what a resume finds is the pre-emption's
RUN = {**TINY_SUBFORE, "pixdim": [3.0, 3.0, 3.0], "batch_size": 1, "num_steps": 4, "epoch_length": 2, "checkpoint_interval": 100,
       "image_interval": 1000, "num_phantoms": 5, "num_phantom_validation": 1}


def run_in_process(overrides: dict, signal_after: int | None = None) -> int:
    """``monai.bundle run`` in this process; with ``signal_after``, SIGUSR1 arrives after that iteration. Returns the exit code."""
    workflow = BundleWorkflow(config_file=[str(f) for f in CONFIGS], workflow_type="train", **overrides)
    workflow.initialize()
    if signal_after is not None:
        trainer = workflow.parser.get_parsed_content("train#trainer")
        trainer.add_event_handler(Events.ITERATION_COMPLETED(once=signal_after), lambda _: os.kill(os.getpid(), signal.SIGUSR1))
    try:
        workflow.run()
    except SystemExit as e:
        return int(e.code)
    finally:
        workflow.finalize()
    return 0


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "models" / "model.pt", map_location="cpu", weights_only=True)


def test_signal_mid_run_checkpoints_exits_75_and_the_rerun_ends_where_an_uninterrupted_run_ends(tmp_path, phantom_root):
    def overrides(name: str) -> dict:
        return {**RUN, "bundle_root": str(tmp_path / name), "run_dir": str(tmp_path / name), "phantom_dir": str(phantom_root),
                "preempt_signal": "SIGUSR1"}

    assert run_in_process(overrides("straight")) == 0
    assert run_in_process(overrides("preempted"), signal_after=3) == PREEMPTED_EXIT_CODE
    checkpoints = tmp_path / "preempted" / "models" / "checkpoints"
    assert [it for it, _ in list_checkpoints(checkpoints)] == [3]  # mid-epoch: iteration 3 of epochs of 2
    record = json.loads((checkpoints / "preempted.json").read_text())
    assert record["iteration"] == 3 and record["signal"] == "SIGUSR1" and record["exit_code"] == 75
    assert not (tmp_path / "preempted" / "models" / "model.pt").exists()  # no 'final' export of an unfinished run
    assert signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, None)  # the handler is gone with the run

    assert run_in_process(overrides("preempted")) == 0  # the same command
    assert [it for it, _ in list_checkpoints(checkpoints)][-1] == 4 and not (checkpoints / "preempted.json").exists()
    straight, resumed = weights(tmp_path / "straight"), weights(tmp_path / "preempted")
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight), "the resumed run trained something else"


def test_the_stream_is_a_function_of_position_and_ranks_split_each_pass():
    stream = StreamSampler(range(10), seed=3)
    it = iter(stream)
    first = [next(it) for _ in range(25)]
    assert sorted(int(i) for i in first[:10]) == list(range(10))  # a pass visits every case once
    assert [int(i) for i in first[:10]] != [int(i) for i in first[10:20]]  # another order the next pass
    stream.start_at(13)
    again = iter(stream)
    assert [(int(i), i.seed) for i in (next(again) for _ in range(12))] == [(int(i), i.seed) for i in first[13:25]]
    ranks = [StreamSampler(range(10), seed=3, num_replicas=3, rank=r) for r in range(3)]
    passes = [[ranks[r].sample(k) for k in range(ranks[r].per_rank)] for r in range(3)]
    cases = sorted(int(i) for p in passes for i in p)
    assert len(cases) == 12 and set(cases) == set(range(10))  # padded to a multiple of 3, as DistributedSampler does
    seeds = [i.seed for p in passes for i in p]
    assert len(set(seeds)) == len(seeds)  # every sample of the pass its own seed
    one = StreamSampler(range(1), seed=0)  # fewer cases than a batch: the stream repeats the case, with other draws
    batch = [one.sample(k) for k in range(2)]
    assert [int(i) for i in batch] == [0, 0] and batch[0].seed != batch[1].seed


def test_signal_names():
    assert parse_signal("SIGUSR1") == parse_signal("usr1") == signal.SIGUSR1
    assert parse_signal("none") is None and parse_signal("") is None
    with pytest.raises(ValueError, match="SIGNOPE"):
        parse_signal("SIGNOPE")


@pytest.mark.slow
def test_sigterm_to_monai_bundle_run_then_the_same_command(tmp_path, phantom_root):
    """The real thing: ``monai.bundle run`` as a process, ``kill -TERM`` mid-run (SLURM's default signal)."""
    run_dir = tmp_path / "run"
    overrides = {**RUN, "bundle_root": str(run_dir), "run_dir": str(run_dir), "phantom_dir": str(phantom_root), "num_steps": 12, "epoch_length": 4}
    files = "[" + ",".join(f"'{f}'" for f in CONFIGS) + "]"
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--workflow_name", "common.runs.BundleWorkflow", "--config_file", files,
           *[a for k, v in overrides.items() for a in (f"--{k}", format_override(v))]]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    log = tmp_path / "first.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        start = time.monotonic()
        while len(re.findall(r"train_loss", log.read_text())) < 3:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() - start < 300
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=300) == PREEMPTED_EXIT_CODE, log.read_text()[-3000:]
    record = json.loads((run_dir / "models" / "checkpoints" / "preempted.json").read_text())
    assert 3 <= record["iteration"] < 12 and [it for it, _ in list_checkpoints(run_dir / "models" / "checkpoints")][-1] == record["iteration"]
    second = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    out = second.stdout + second.stderr
    assert second.returncode == 0, out[-3000:]
    assert f"pre-empted at iteration {record['iteration']}" in out and f"at iteration {record['iteration']}" in out
    assert [it for it, _ in list_checkpoints(run_dir / "models" / "checkpoints")][-1] == 12
