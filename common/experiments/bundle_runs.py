"""Running a bundle for the experiment harness: its config files, one run (a subprocess, or in this
process as ``monai.bundle run`` would run it), and one fine-tuning run with its labelled fraction and
seed, reused when finished.

Every run is the bundle's own ``train.json`` (plus the given configs) through the collection's
workflow (:class:`common.runs.BundleWorkflow`), so an experiment trains exactly what a user's
``python -m monai.bundle run`` trains.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import common
from common.cli import format_override
from common.io import atomic_write_text
from common.paths import locate_bundle
from common.runs.workflow import WORKFLOW_NAME

logger = logging.getLogger(__name__)

#: written by :func:`run_one` once the bundle ended successfully: the sign that a run is finished
FINISHED = "finished.json"


def bundle_config_files(bundle: str | os.PathLike, configs: Sequence[str] = ()) -> tuple[Path, list[str]]:
    """``(bundle folder, [train.json, *configs])``: ``bundle`` a name or folder; ``configs`` relative to its
    ``configs/`` unless absolute."""
    bundle_dir = Path(bundle) if Path(bundle).is_dir() else Path(locate_bundle(str(bundle)))
    files = [str(bundle_dir / "configs" / "train.json")] + [c if os.path.isabs(c) else str(bundle_dir / "configs" / c) for c in configs]
    return bundle_dir, files


def run_bundle(files: Sequence[str], args: Mapping, log_file: Path, expect: Path, in_process: bool = False, threads: int | None = None) -> None:
    """``python -m monai.bundle run`` of ``files`` with ``--key value`` ``args``, logging to ``log_file``;
    raise with the log's tail unless it succeeds and writes ``expect``.

    ``in_process``: run it in this process (:func:`run_bundle_in_process`), saving the interpreter and
    import start-up (about 7 s a run on 2 CPU cores) that a sweep of many short runs pays each time;
    otherwise in a subprocess, which isolates a crash. ``threads``: the subprocess's CPU threads
    (``OMP_NUM_THREADS``), for several runs side by side; in process it cannot be set per run.
    """
    if in_process and threads is not None:
        raise ValueError("threads applies to subprocess runs: a run in this process uses this process's threads")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    logger.info(f"Running {files[0]} into {args.get('run_dir')} ({'in process' if in_process else 'subprocess'}; log: {log_file})")
    if in_process:
        try:
            run_bundle_in_process(files, args, log_file)
            code: int | str = 0
        except (Exception, SystemExit) as e:  # reported with the log below, as a failed subprocess is (SystemExit: a one-line stop)
            code = f"{type(e).__name__}: {e}"
    else:
        cmd = [sys.executable, "-m", "monai.bundle", "run", "--workflow_name", WORKFLOW_NAME, "--config_file", json.dumps([str(f) for f in files])]
        for k, v in args.items():
            cmd += [f"--{k}", format_override(v)]
        env = subprocess_env(threads)
        with open(log_file, "a") as log:
            if threads is not None:
                log.write(f"OMP_NUM_THREADS={threads}\n")
                log.flush()
            code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    if code != 0 or not expect.is_file():
        tail = log_file.read_text()[-2000:] if log_file.is_file() else ""
        raise RuntimeError(f"run {args.get('run_dir')} failed ({'exit code ' if isinstance(code, int) else ''}{code}, "
                           f"{expect.name} {'written' if expect.is_file() else 'missing'}); see {log_file}:\n{tail}")


def subprocess_env(threads: int | None = None) -> dict[str, str]:
    """The environment of a bundle subprocess: this process's, with the folder holding the ``common`` package this
    process runs first on ``PYTHONPATH`` (from any working directory the run imports the same code as its caller,
    not another checkout's), and ``threads`` CPU threads when given."""
    root = str(Path(common.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])}
    if threads is not None:
        env |= {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    return env


def run_bundle_in_process(files: Sequence[str], args: Mapping, log_file: Path) -> None:
    """What ``monai.bundle run`` does (``ConfigWorkflow`` initialize, run, finalize), in this process,
    with every log record going to ``log_file`` only while it runs.

    The collection's workflow (:class:`common.runs.BundleWorkflow`) checks the overrides (an override
    naming no config id stops the run) and checks the run identity, as ``--workflow_name`` gives them to
    ``monai.bundle run``. The bundle's ``logging.conf`` is not applied (it would replace this process's handlers).
    Process-wide state a new process would not have is reset around the run: memoised file sizes before it, shared
    TensorBoard writers after it.
    """
    import gc

    from common.file_sizes import forget_sizes
    from common.handlers.tensorboard import close_writers
    from common.runs import BundleWorkflow

    forget_sizes()  # sizes a new process would ask again: the files may have changed since an earlier run here

    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s - %(name)s - %(levelname)s - %(message)s"))
    # the root logger, and every logger that does not propagate to it: MONAI's get_logger makes those
    # (StatsHandler, monai.bundle.workflows, monai.networks.utils, ...), each printing to stdout
    loggers = [logging.getLogger(), logging.getLogger("monai.handlers.StatsHandler"), *_own_handler_loggers()]
    saved = {lg: (lg.handlers[:], lg.level) for lg in loggers}
    for lg in saved:
        lg.handlers[:] = [handler]
        lg.setLevel(logging.INFO)
    try:  # progress bars and warnings (stdout, stderr) go to the log too, as a subprocess's would
        with open(log_file, "a") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            workflow = BundleWorkflow(config_file=[str(f) for f in files], workflow_type="train", logging_file=False, **args)
            workflow.initialize()
            try:
                workflow.run()
            finally:
                workflow.finalize()
    except Exception:
        logging.getLogger(__name__).exception("the run failed")
        raise
    finally:
        for lg, (handlers, level) in saved.items():
            lg.handlers[:] = handlers
            lg.setLevel(level)
        for lg in _own_handler_loggers():  # made during the run: their stdout was the log, closed now
            for h in lg.handlers:
                if isinstance(h, logging.StreamHandler) and getattr(h.stream, "closed", False):
                    h.setStream(sys.stdout)
        handler.close()
        close_writers()  # the run's event files are complete; a later run in this process opens its own
        gc.collect()  # the run's datasets and network: a sweep runs many


def _own_handler_loggers() -> list[logging.Logger]:
    """Every logger that does not propagate to the root and has handlers of its own."""
    return [lg for lg in logging.root.manager.loggerDict.values()
            if isinstance(lg, logging.Logger) and not lg.propagate and lg.handlers]


def run_one(
    bundle_dir: Path, configs: Sequence[str], run_dir: Path, fraction: float, seed: int, pretrained: str, overrides: Mapping, log_file: Path,
    in_process: bool = False, threads: int | None = None,
) -> dict:
    """Train one configuration (or reuse its finished result); return its ``best_metric.json``.
    ``in_process``, ``threads``: as :func:`run_bundle`.

    A run counts as finished when this function saw the bundle end successfully and wrote
    ``run_dir/finished.json``. ``best_metric.json`` alone is no such sign: the bundle writes it at every
    improvement, so a run interrupted after its first validation has one. Such a run is run again,
    and the bundle resumes it from its newest checkpoint (same settings: the same run)."""
    finished = run_dir / FINISHED
    if finished.is_file():
        logger.info(f"{run_dir}: finished earlier, reusing its result")
        return json.loads(finished.read_text())
    result = run_dir / "models" / "best_metric.json"
    bundle_dir, files = bundle_config_files(bundle_dir, configs)
    args = {
        "bundle_root": str(bundle_dir),
        "run_dir": str(run_dir),
        "train_fraction": fraction,
        "fraction_seed": seed,
        "seed": seed,
        "pretrained": pretrained,
        **overrides,
    }
    run_bundle(files, args, log_file, result, in_process, threads)
    atomic_write_text(finished, result.read_text())
    return json.loads(result.read_text())
