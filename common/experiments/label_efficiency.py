"""Label-efficiency harness: fine-tune at several labelled fractions, from scratch and from pretrained
weights, with several seeds; write a CSV and a PNG of Dice against labelled fraction.

Every run is the bundle's own ``train.json`` through ``python -m monai.bundle run`` in a subprocess
(or, ``in_process``, the same ``ConfigWorkflow`` in this process), with ``train_fraction``,
``fraction_seed``, ``seed`` and ``pretrained`` overridden and its outputs in ``<output_dir>/<init>/fraction_<f>/seed_<s>/``. A run whose ``models/best_metric.json`` exists is
not repeated, and the CSV is rewritten after each run, so an interrupted sweep resumes and loses
nothing. Example (embedded phantoms, CPU-sized)::

    python -m common.experiments.label_efficiency --bundle btcv_finetune \\
        --configs "['demo.json']" --fractions "[0.25,0.5,1.0]" --seeds "[0,1]" \\
        --pretrained "{'subfore': 'bundles/subfore_pretrain/models/encoder.pt'}" \\
        --output_dir runs/label_efficiency
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from common.cli import format_override
from common.io import atomic_write, atomic_write_text
from common.paths import locate_bundle

logger = logging.getLogger(__name__)

CSV_FIELDS = ["init", "pretrained", "fraction", "seed", "num_train_cases", "metric", "best_value", "best_epoch", "run_dir"]


def _run_dir(output_dir: Path, init: str, fraction: float, seed: int) -> Path:
    return output_dir / init / f"fraction_{fraction:g}" / f"seed_{seed}"


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
        except Exception as e:  # reported with the log below, as a failed subprocess is
            code = f"{type(e).__name__}: {e}"
    else:
        cmd = [sys.executable, "-m", "monai.bundle", "run", "--workflow_name", "common.runs.BundleWorkflow", "--config_file", json.dumps([str(f) for f in files])]
        for k, v in args.items():
            cmd += [f"--{k}", format_override(v)]
        env = None if threads is None else {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        with open(log_file, "a") as log:
            if threads is not None:
                log.write(f"OMP_NUM_THREADS={threads}\n")
                log.flush()
            code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    if code != 0 or not expect.is_file():
        tail = log_file.read_text()[-2000:] if log_file.is_file() else ""
        raise RuntimeError(f"run {args.get('run_dir')} failed ({'exit code ' if isinstance(code, int) else ''}{code}, "
                           f"{expect.name} {'written' if expect.is_file() else 'missing'}); see {log_file}:\n{tail}")


def run_bundle_in_process(files: Sequence[str], args: Mapping, log_file: Path) -> None:
    """What ``monai.bundle run`` does (``ConfigWorkflow`` initialize, run, finalize), in this process,
    with every log record going to ``log_file`` only while it runs.

    The collection's workflow (:class:`common.runs.BundleWorkflow`) checks the overrides (an override
    naming no config id stops the run) and checks the run identity, as ``--workflow_name`` gives them to
    ``monai.bundle run``. The bundle's ``logging.conf`` is not applied (it would replace this process's handlers).
    """
    import gc

    from common.runs import BundleWorkflow

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
    ``in_process``, ``threads``: as :func:`run_bundle`."""
    result = run_dir / "models" / "best_metric.json"
    if result.is_file():
        logger.info(f"{run_dir}: finished earlier, reusing its result")
        return json.loads(result.read_text())
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
    return json.loads(result.read_text())


def _num_train_cases(log_file: Path) -> int | None:
    for line in reversed(log_file.read_text().splitlines()) if log_file.is_file() else []:
        if "train_fraction" in line and "training on " in line:
            return int(line.split("training on ")[1].split(" of ")[0])
    return None


def plot(rows: Sequence[Mapping], path: Path, metric: str) -> Path:
    """Mean (and min-max over seeds) of the best validation metric against labelled fraction, one line per init."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for init in dict.fromkeys(r["init"] for r in rows):
        fr = sorted({float(r["fraction"]) for r in rows if r["init"] == init})
        vals = [[float(r["best_value"]) for r in rows if r["init"] == init and float(r["fraction"]) == f] for f in fr]
        mean = [sum(v) / len(v) for v in vals]
        ax.plot([100 * f for f in fr], mean, marker="o", label=init)
        ax.fill_between([100 * f for f in fr], [min(v) for v in vals], [max(v) for v in vals], alpha=0.2)
    ax.set_xlabel("labelled training cases (%)")
    ax.set_ylabel(f"best validation {metric}")
    ax.set_title("Label efficiency")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120))
    plt.close(fig)
    return path


def main(
    bundle: str = "btcv_finetune",
    fractions: Sequence[float] = (0.1, 0.25, 0.5, 1.0),
    seeds: Sequence[int] = (0, 1, 2),
    pretrained: Mapping[str, str] | None = None,
    scratch: bool = True,
    configs: Sequence[str] = (),
    output_dir: str = "runs/label_efficiency",
    overrides: Mapping | None = None,
    in_process: bool = False,
) -> str:
    """Run the sweep; return the CSV path.

    Args:
        bundle: downstream bundle name or folder (``btcv_finetune``, ``brats_finetune``, ...).
        fractions: labelled fractions of the training cases (``train_fraction``; nested per seed).
        seeds: seeds for the case subset, the initialisation and the data order.
        pretrained: ``{name: weights path}``, one curve each (e.g. ``{'subfore': '.../encoder.pt'}``).
        scratch: also run from random initialisation (curve ``scratch``).
        configs: extra config files merged after ``train.json`` (relative to the bundle's ``configs/``).
        output_dir: where runs, ``label_efficiency.csv`` and ``label_efficiency.png`` go.
        overrides: extra ``--key value`` overrides for every run (e.g. ``{'num_steps': 5000}``).
        in_process: run each training in this process rather than a subprocess (:func:`run_bundle`).
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    bundle_dir = Path(bundle) if Path(bundle).is_dir() else Path(locate_bundle(bundle))
    out = Path(output_dir).resolve()
    inits = ({"scratch": ""} if scratch else {}) | {k: str(Path(v).resolve()) for k, v in (pretrained or {}).items()}
    if not inits:
        raise ValueError("nothing to run: scratch=False and no pretrained weights given")
    for name, path in inits.items():
        if path and not Path(path).is_file():
            raise FileNotFoundError(f"pretrained weights for '{name}' not found: {path}")
    rows: list[dict] = []
    csv_path = out / "label_efficiency.csv"
    for init, weights in inits.items():
        for fraction in fractions:
            for seed in seeds:
                run_dir = _run_dir(out, init, fraction, seed)
                log_file = run_dir / "train.log"
                best = run_one(bundle_dir, configs, run_dir, float(fraction), int(seed), weights, dict(overrides or {}), log_file, in_process)
                rows.append({
                    "init": init, "pretrained": weights, "fraction": fraction, "seed": seed,
                    "num_train_cases": _num_train_cases(log_file), "metric": best["metric"], "best_value": best["value"],
                    "best_epoch": best.get("epoch"), "run_dir": str(run_dir),
                })
                buf = io.StringIO()
                writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS)
                writer.writeheader()
                writer.writerows(rows)
                atomic_write_text(csv_path, buf.getvalue())
    plot(rows, out / "label_efficiency.png", rows[0]["metric"])
    logger.info(f"Wrote {csv_path} and {out / 'label_efficiency.png'}")
    return str(csv_path)


if __name__ == "__main__":
    import fire

    fire.Fire(main)
