"""The experiment harness's bundle runs: a run in this process is the subprocess run, bit for bit, and logs
only to its file; an override naming no config id stops it; a finished run is reused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import REPO

from common.experiments import bundle_runs

pytestmark = pytest.mark.slow  # short trainings (~40 s) and a killed one resumed (~60 s)


def test_in_process_run_equals_the_subprocess_run_and_is_reused(tmp_path, phantom_root, monkeypatch, capfd):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("OMP_NUM_THREADS", str(torch.get_num_threads()))  # bit for bit needs the same thread count
    overrides = {"phantom_dir": str(phantom_root), "num_phantoms": 5, "num_phantom_validation": 1, "num_steps": 2, "epoch_length": 2, "num_workers": 0}

    def run(name: str, in_process: bool, extra: dict | None = None) -> dict:
        run_dir = tmp_path / name
        return bundle_runs.run_one(REPO / "bundles" / "btcv_finetune", ["demo.json"], run_dir, 0.5, 0, "", {**overrides, **(extra or {})},
                                   run_dir / "train.log", in_process=in_process)

    best = run("subprocess", False)
    assert best["metric"] == "val_mean_dice" and 0.0 <= best["value"] <= 1.0
    assert "training on 2 of 4" in (tmp_path / "subprocess" / "train.log").read_text()  # train_fraction 0.5 of the 4 training phantoms
    capfd.readouterr()
    assert run("in_process", True) == best
    console = capfd.readouterr()
    log = (tmp_path / "in_process" / "train.log").read_text()
    assert "train_loss" in log and "Logging file is set to False" in log
    assert "train_loss" not in console.out + console.err and "Logging file is set to False" not in console.out + console.err
    weights = [torch.load(tmp_path / d / "models" / "model.pt") for d in ("subprocess", "in_process")]
    assert weights[0].keys() == weights[1].keys() and all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])

    # a finished run is reused: nothing retrained
    stamp = (tmp_path / "in_process" / "models" / "model.pt").stat().st_mtime_ns
    assert run("in_process", True) == best and (tmp_path / "in_process" / "models" / "model.pt").stat().st_mtime_ns == stamp
    # a complete run without the harness's finished.json (made before the harness wrote one) is entered once more: the
    # bundle finds it complete, trains nothing, and its result stands
    (tmp_path / "in_process" / bundle_runs.FINISHED).unlink()
    assert run("in_process", True) == best and (tmp_path / "in_process" / "models" / "model.pt").stat().st_mtime_ns == stamp
    assert "already complete at iteration 2: nothing to train" in (tmp_path / "in_process" / "train.log").read_text()
    assert (tmp_path / "in_process" / bundle_runs.FINISHED).is_file()
    # an override naming no config id stops an in-process run as `monai.bundle run` stops it
    with pytest.raises(RuntimeError, match="--num_stepz: no such key"):
        run("typo", True, {"num_stepz": 3})


def test_a_run_in_this_process_sees_files_as_a_new_process_would(tmp_path):
    """File sizes are asked once per process (``common.file_sizes``); a run in this process asks again, so a dataset file
    changed since an earlier run here is identified by its new size, as ``monai.bundle run`` would identify it."""
    from common.file_sizes import file_size

    scan = tmp_path / "scan.nii.gz"
    scan.write_bytes(b"x" * 10)
    assert file_size(scan) == 10
    scan.write_bytes(b"x" * 20)
    assert file_size(scan) == 10  # memoised in this process
    with pytest.raises(Exception, match="--num_stepz: no such key"):  # stops before anything is built
        bundle_runs.run_bundle_in_process([str(REPO / "bundles" / "btcv_finetune" / "configs" / "train.json")], {"num_stepz": 3},
                                          tmp_path / "run.log")
    assert file_size(scan) == 20


def test_a_one_line_stop_fails_the_in_process_run_not_the_harness(tmp_path):
    """A config that stops with ``SystemExit`` (inference before training: :func:`common.runs.require_file`) fails that
    run with its message, as a subprocess's exit status would, instead of ending the process running the harness."""
    configs = REPO / "bundles" / "btcv_finetune" / "configs"
    with pytest.raises(RuntimeError, match="no trained weights at .*model.pt"):
        bundle_runs.run_bundle([str(configs / "inference.json"), str(configs / "demo.json")], {"run_dir": str(tmp_path / "run")},
                               tmp_path / "run.log", tmp_path / "run" / "eval" / "predictions", in_process=True)


def test_a_fine_tune_killed_after_its_first_validation_is_resumed_not_reused(tmp_path, phantom_root):
    """``best_metric.json`` is written at every improvement, so a killed run has one: the harness must not take it for a
    finished run (the card would report a half-trained score). Run again, the bundle resumes the run and finishes it."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    from common.runs.checkpoints import list_checkpoints

    run_dir = tmp_path / "run"
    overrides = {"phantom_dir": str(phantom_root), "num_phantoms": 5, "num_phantom_validation": 1, "num_steps": 12, "epoch_length": 2,
                 "val_interval": 1, "checkpoint_interval": 2, "num_workers": 0}
    args = (str(REPO / "bundles" / "btcv_finetune"), ["demo.json"], str(run_dir), 0.5, 0, "", overrides, str(run_dir / "train.log"))
    code = ("import sys; from pathlib import Path; from common.experiments import bundle_runs; a = eval(sys.argv[1]); "
            "bundle_runs.run_one(Path(a[0]), a[1], Path(a[2]), *a[3:7], Path(a[7]), in_process=True)")
    proc = subprocess.Popen([sys.executable, "-c", code, repr(args)], env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True)
    best = run_dir / "models" / "best_metric.json"
    deadline = time.monotonic() + 300
    while not (best.is_file() and list_checkpoints(run_dir / "models" / "checkpoints")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = list_checkpoints(run_dir / "models" / "checkpoints")[-1][0]
    assert best.is_file() and killed_at < 12 and not (run_dir / bundle_runs.FINISHED).exists()

    result = bundle_runs.run_one(Path(args[0]), args[1], run_dir, *args[3:7], run_dir / "train.log", in_process=True)
    assert list_checkpoints(run_dir / "models" / "checkpoints")[-1][0] == 12  # resumed and finished, not reused at iteration killed_at
    assert "Resum" in (run_dir / "train.log").read_text()
    assert json.loads((run_dir / bundle_runs.FINISHED).read_text()) == result == json.loads(best.read_text())
