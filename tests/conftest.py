"""Shared fixtures: repository paths, a small phantom dataset, real-data locations, bundle runner."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from common.cli import format_override


def _threads_in_test_process() -> int:
    """CPU threads for torch in each test process: the CPUs shared out over pytest-xdist's workers (``-n 2`` on 2
    cores: 1 each) unless ``OMP_NUM_THREADS`` is set. The bundle subprocesses keep 2 (:func:`run_bundle`).

    More torch threads than cores in total makes OpenMP threads wait on each other in work of small tensors:
    measured 2026-12-06 on 2 cores, ``test_linear_probe_sees_a_supervised_encoder_above_a_random_one`` (in process)
    took 273 s with 2 threads next to a 2-thread bundle run, 67 s with 1 (38 s alone). Bundle subprocesses, whose
    3D convolutions use a second core when the other worker waits, ran slower with 1 thread: the full suite took
    25 min 08 s with them at 1, 23 min 50 s with them at 2."""
    if "OMP_NUM_THREADS" in os.environ:
        return int(os.environ["OMP_NUM_THREADS"])
    return max(1, len(os.sched_getaffinity(0)) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))


torch.set_num_threads(_threads_in_test_process())

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
BUNDLES = REPO / "bundles"


def tiny(bundle: str) -> dict:
    """The CPU-sized network of ``bundles/<bundle>``: its demo overlay's network entries (one source for every test;
    ``common.zoo.verify.demo_network``), without the metadata shapes a run does not read."""
    from common.zoo.verify import demo_network

    return {k: v for k, v in demo_network(BUNDLES / bundle).items() if not k.startswith("_meta_")}


#: Overrides that shrink SubFore to a CPU-sized network and ROI (the configs keep the paper settings).
TINY_SUBFORE = {
    **tiny("subfore_pretrain"),
    "roi_size": [64, 64, 64],
    "batch_size": 2,
    "num_workers": 0,
    "learning_rate": 0.002,
    "warmup_steps": 1,
    "log_interval": 1,
}


def real_data(*parts: str) -> Path:
    """Path under ../shared/data, skipping the test when it is absent (a user's fresh clone)."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real data not available: {p}")
    return p


@pytest.fixture(scope="session")
def phantom_root(tmp_path_factory) -> Path:
    """A folder holding a small phantom dataset (5 cases: 4 training, 1 validation)."""
    from common.data import ensure_phantom_dataset

    root = tmp_path_factory.mktemp("phantoms")
    ensure_phantom_dataset(root, num_cases=5, num_validation=1)
    return root


def free_port() -> int:
    """A TCP port no one listens on now, for torchrun's rendezvous (no clash with another run on the machine)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_bundle(
    config_files: list[Path], overrides: dict, cwd: Path = REPO, env: dict | None = None, timeout: int = 600, torchrun: int = 0
) -> subprocess.CompletedProcess:
    """Run ``python -m monai.bundle run`` (or torchrun with ``torchrun`` processes) and return the result: for tests where
    the process is the point (kill, signals, torchrun, the command line's own output) and for long runs, whose 3D
    convolutions use a second core when the other xdist worker waits; short runs use :func:`run_bundle_here`."""
    files = "[" + ",".join(f"'{f}'" for f in config_files) + "]"
    args = []
    for k, v in overrides.items():
        args += [f"--{k}", format_override(v)]
    launcher = [sys.executable, "-m"]
    if torchrun:
        launcher += ["torch.distributed.run", f"--nproc_per_node={torchrun}", f"--master_port={free_port()}", "-m"]
    cmd = launcher + ["monai.bundle", "run", "--workflow_name", "common.runs.BundleWorkflow", "--config_file", files] + args
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1" if torchrun else os.environ.get("OMP_NUM_THREADS", "2"), **(env or {})}
    return subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def run_bundle_here(config_files: list[Path], overrides: dict) -> subprocess.CompletedProcess:
    """:func:`run_bundle` in this test process, for tests where the process itself is not the point (no kill, signal,
    torchrun, environment or working directory of its own): the same workflow, checks and log lines
    (:func:`common.experiments.bundle_runs.run_bundle_in_process`) without a subprocess's interpreter and import start-up
    (about 7 s of CPU a run on this machine). The result reads as a subprocess's: ``returncode`` 1 (or a ``SystemExit``'s
    code) and the log, the error last, in ``stdout`` for a run that failed."""
    import tempfile

    from common.experiments.bundle_runs import run_bundle_in_process

    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "run.log"
        code, error = 0, ""
        try:
            run_bundle_in_process([str(f) for f in config_files], overrides, log)
        except SystemExit as e:  # a command's one-line stop (common.runs.required)
            code, error = (e.code if isinstance(e.code, int) else 1), f"{e}\n"
        except Exception as e:  # noqa: BLE001 - the log holds its traceback; its last line, as a subprocess's stderr ends
            code, error = 1, f"{type(e).__name__}: {e}\n"
        return subprocess.CompletedProcess(["run_bundle_here", *map(str, config_files)], code, log.read_text() + error, "")


def train_losses(out: str) -> list[float]:
    """The ``train_loss`` values a bundle run logged (StatsHandler lines), in order."""
    return [float(v) for v in re.findall(r"train_loss: ([0-9.]+)", out)]


def assert_ok(result: subprocess.CompletedProcess) -> str:
    """The combined output of a bundle run that must have succeeded (else its tail is the failure message)."""
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    return out
