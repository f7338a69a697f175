"""One command that compares the methods' pretraining under one protocol and writes a results card.

For each pretraining in the protocol it runs the bundle (what ``python -m monai.bundle run`` runs, in
this process by default; bit-identical to a subprocess run) on the protocol's unlabelled cases; then
for each comparison (a downstream bundle and its encoders: scratch and the pretrained weights that
transfer to its network, or two training variants) it runs

- frozen probes (:mod:`common.experiments.probes`) per encoder and seed, plus the raw-intensity
  floor: a linear voxel probe scored by Dice, a k-NN patch probe scored by balanced accuracy, each
  trained once and scored on the held-out phantoms and the protocol's real scans;
- fine-tuning (with the comparison's ``overrides`` and ``finetune_overrides``; the probes see only
  ``overrides``) at each labelled fraction and seed (:func:`common.experiments.bundle_runs.run_one`,
  the bundle's own ``train.json``), the same ``train_fraction``/``fraction_seed`` split for every
  encoder; the runs share one disk cache of preprocessed cases (``<output_dir>/cache``, the bundles'
  ``cache: disk``, which draws the same random crops as the default memory cache), so each case is
  preprocessed once for the whole card, not once a run (a comparison's own ``cache`` override wins);

and writes ``<output_dir>/card/`` (:mod:`common.experiments.card`): ``runs.csv`` (every run), ``summary.csv`` and ``README.md``
(means with 95% t intervals over seeds, bootstrap intervals over held-out cases for the probes, and
each encoder's paired difference to the comparison's baseline per fraction), ``finetune.png`` and
``probes.png``, and ``protocol.json`` with each encoder's provenance and how the runs were executed
(runs side by side, threads each, this machine's CPUs, this invocation's wall time: thread counts change
the numbers to rounding) and by which version of the code (``made_by``: also per run in ``runs.csv``; the README
warns when more than one did, or the protocol's real scans were absent). Everything finished is reused, so an
interrupted card resumes. Example::

    python -m common.experiments.evidence --protocol common/experiments/protocols/small.json \\
        --output_dir runs/evidence_small
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import torch

from common.cli import CommandLineError, command, value_list
from common.experiments import bundle_runs, probes
from common.experiments.card import RUN_FIELDS, csv_text, write_card
from common.experiments.downstream import bundle_parser, labelled_cases, labelled_items, network_with_weights
from common.experiments.protocol import PRETRAINED_PREFIX, protocol_file, read_protocol
from common.io import atomic_write_text
from common.progress import progress_bar
from common.runs.provenance import code_version, machine, read_record, software, weights_made_by

logger = logging.getLogger(__name__)

T = TypeVar("T")


class SpecChangedError(RuntimeError):
    """A finished run's folder was made with other settings than the protocol now asks for."""


def same_spec(folder: Path, spec: Mapping[str, Any]) -> None:
    """Record ``spec`` in ``folder/evidence_spec.json`` or check it against the recorded one, so a
    changed protocol never reuses runs made under the old one."""
    path = folder / "evidence_spec.json"
    text = json.dumps(spec, sort_keys=True, default=str)
    if path.is_file():
        if path.read_text() != text:
            raise SpecChangedError(f"{folder} was run with other settings ({path}: {path.read_text()[:300]}; now: {text[:300]}); "
                                   "delete that folder or choose another --output_dir")
        return
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)


def pretraining_datalist(protocol: Mapping[str, Any], out: Path) -> Path:
    """The unlabelled pretraining cases: phantoms of another seed than the downstream ones (so no
    held-out case is seen in pretraining) plus the protocol's real scans that exist here. A
    pretraining's own ``datalist`` override replaces this list (paper-scale data)."""
    from common.data.phantoms import ensure_phantom_dataset

    spec = protocol.get("pretraining_data", {})
    items = []
    if int(spec.get("num_phantoms", 12)) > 0:
        folder = ensure_phantom_dataset(out / "phantoms", num_cases=int(spec["num_phantoms"]), num_validation=0, seed=int(spec.get("phantom_seed", 1)))
        items = [{"image": str(folder / d["image"])} for d in json.loads((folder / "dataset.json").read_text())["training"]]
    absent = absent_scans(protocol).get("pretraining_data", [])
    real = [protocol_file(p) for p in spec.get("real_images", []) if p not in absent]
    missing = [str(protocol_file(p)) for p in absent]
    if missing:
        logger.warning(f"pretraining_data: {len(missing)} real scan(s) absent here, pretraining on phantoms without them: {missing}")
    path = out / "pretraining_datalist.json"
    atomic_write_text(path, json.dumps({"training": items + [{"image": str(p.resolve())} for p in real]}, indent=1))
    return path


@dataclass(frozen=True)
class Execution:
    """How the protocol's bundle runs are executed: one at a time in this process (``in_process``), or
    as subprocesses, ``parallel`` side by side with ``threads`` CPU threads each.

    Two single-thread runs side by side train about 1.4-1.5x faster in total than one two-thread run on 2 CPU
    cores (measured 2026-12-05: SwinUNETR-12 fine-tune, 64x64x32 patches, 22.6 s per 25 steps each vs
    15.6 s), because small networks do not keep two threads busy. Thread counts change the
    floating-point summation order, so a run's numbers agree to rounding, not bit for bit, across them.
    """

    in_process: bool = False
    parallel: int = 1
    threads: int | None = None

    @classmethod
    def choose(cls, in_process: bool | None, parallel: int) -> Execution:
        """``parallel`` runs at a time (subprocesses sharing this machine's CPUs when above 1);
        ``in_process`` (default: when ``parallel`` is 1) as :func:`common.experiments.bundle_runs.run_bundle`."""
        if parallel < 1:
            raise CommandLineError(f"--parallel {parallel}: give 1 or more runs at a time")
        if parallel > 1 and in_process:
            raise CommandLineError(f"--in_process True runs one bundle at a time; --parallel {parallel} runs subprocesses: drop one of them")
        if parallel == 1:
            return cls(in_process=True if in_process is None else bool(in_process))
        return cls(in_process=False, parallel=parallel, threads=max(1, len(os.sched_getaffinity(0)) // parallel))

    def map(self, jobs: Sequence[Callable[[], T]]) -> list[T]:
        """Every job's result, in order, ``parallel`` at a time; after a failure the queued jobs are
        cancelled, the running ones finish, and the failure is raised."""
        if self.parallel == 1:
            return [job() for job in jobs]
        pool = ThreadPoolExecutor(max_workers=self.parallel)  # each thread waits on one subprocess
        try:
            return [f.result() for f in [pool.submit(job) for job in jobs]]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def run_pretraining(name: str, spec: Mapping[str, Any], datalist: Path, out: Path, execution: Execution = Execution(), seed: int | None = None) -> Path:
    """Run one pretraining bundle (reused when its weights exist); return the weights file. ``seed``: the
    pretraining's own seed (``pretraining/<name>/seed_<seed>``); ``None`` keeps the bundle's."""
    run_dir = out / "pretraining" / name / ("" if seed is None else f"seed_{seed}")
    weights = run_dir / "models" / spec.get("weights", "encoder.pt")
    spec = {**spec, "overrides": {**spec.get("overrides", {}), **({} if seed is None else {"seed": int(seed)})}}
    same_spec(run_dir, {"pretraining": dict(spec), "datalist": json.loads(datalist.read_text())})
    if weights.is_file():
        logger.info(f"pretraining {name}: finished earlier, reusing {weights}")
        return weights
    bundle_dir, files = bundle_runs.bundle_config_files(spec["bundle"], spec.get("configs", []))
    args = {"bundle_root": str(bundle_dir), "run_dir": str(run_dir), "datalist": str(datalist), **spec.get("overrides", {})}
    bundle_runs.run_bundle(files, args, run_dir / "train.log", expect=weights, in_process=execution.in_process, threads=execution.threads)
    return weights


def resolve_encoder(value: str | None, pretrained: Mapping[str, Sequence[Path]], seeds: Sequence[int]) -> dict[int, str]:
    """The weights each fine-tuning seed starts from: ``None`` (scratch: ``""``), ``"pretraining:<name>"``
    (a protocol pretraining; with several pretraining seeds, fine-tuning seed number ``i`` takes
    pretraining run ``i mod P``, so every seed is a whole replicate, pretraining included) or a weights path."""
    if not value:
        return {s: "" for s in seeds}
    if value.startswith(PRETRAINED_PREFIX):
        runs = pretrained[value[len(PRETRAINED_PREFIX):]]
        return {s: str(runs[i % len(runs)]) for i, s in enumerate(seeds)}
    if not Path(value).is_file():
        raise FileNotFoundError(f"encoder weights {value} not found")
    return {s: str(Path(value).resolve()) for s in seeds}


def weights_record(weights: str) -> dict[str, Any] | None:
    """What the card says of an encoder's weights: file, sha256, bundle, run fingerprint, steps and last
    loss from its provenance record (``None`` for scratch; ``{"file", "record": None}`` without one)."""
    if not weights:
        return None
    record = read_record(weights)
    if record is None:
        return {"file": weights, "record": None}
    return {"file": weights, "sha256": record.get("sha256"), "bundle": record.get("bundle"), "run": record.get("run"),
            "training": record.get("training"), "preprocessing": record.get("preprocessing"), "machine": record.get("machine"),
            "made_by": code_version(record.get("software"))}


PROBE_KINDS = (("linear_probe_dice", "linear", "dice"), ("knn_probe_balanced_accuracy", "knn", "balanced_accuracy"))


def _probe_encoder(net: torch.nn.Module, train_cases: Sequence, tests: Mapping[str, Sequence], num_classes: int, p: Mapping[str, Any],
                   seed: int) -> dict[str, dict]:
    """Both probes of one frozen encoder, trained once on ``train_cases`` and scored on each test set of
    ``tests`` (``{prefix: cases}``); returns ``{prefix: result}``."""
    train = probes.featurize(net, [(i, lab) for _, i, lab in train_cases])
    linear, losses = probes.fit_linear_probe(train, num_classes, steps=int(p.get("steps", 200)), seed=seed,
                                             points_per_case=int(p.get("points_per_case", 5000)))
    results = {}
    for prefix, test_cases in tests.items():
        test = probes.featurize(net, [(i, lab) for _, i, lab in test_cases])
        dice = probes.score_linear_probe(linear, test, num_classes)
        results[prefix] = {
            "linear": {"dice": sum(dice) / len(dice), "per_case": dice, "train_loss": [losses[0], losses[-1]]},
            "knn": probes.knn_probe(train, test, patch=int(p.get("knn_patch", 8)), k=int(p.get("k", 5))),
            "cases": [n for n, _, _ in test_cases], "train_cases": [n for n, _, _ in train_cases],
        }
    return results


def probe_runs(comparison: Mapping[str, Any], encoders: Mapping[str, tuple[dict[int, str], dict]], protocol: Mapping[str, Any], out: Path) -> list[dict]:
    """Linear and k-NN probes for each encoder (and the raw-intensity floor) and seed, trained on the
    labelled split and scored on the held-out cases and on each real check's scans (:func:`real_checks`:
    kinds prefixed ``real_ct_``, ``real_<name>_``; the same trained probe, scored on every set). Cached
    per run and test set; the split is shared by every encoder of a seed."""
    p = protocol.get("probe", {})
    checks = real_checks(protocol)
    probe_spec = {k: v for k, v in comparison.items() if k not in ("encoders", "finetune_overrides", "like_for_like", "baseline")}
    rows = []
    for seed in protocol["seeds"]:
        base = {**comparison.get("overrides", {}), "train_fraction": float(p.get("train_fraction", 1.0)), "fraction_seed": seed, "seed": seed,
                "run_dir": str(out / "probes" / comparison["name"] / "bundle")}
        parser = bundle_parser(comparison["bundle"], comparison.get("configs", []), base)
        num_classes = int(parser.get_parsed_content("num_classes"))
        cases: dict[str, list] = {}

        def load(key: str) -> list:
            if key not in cases:
                if key in checks:  # a real check: its scans with its label map
                    items, label_map = checks[key]
                    cases[key] = labelled_items(bundle_parser(comparison["bundle"], comparison.get("configs", []), {**base, **label_map}), items)
                else:
                    cases[key] = labelled_cases(parser, key)
            return cases[key]

        tests = {"": ("validate#files", {}),
                 **{prefix: (prefix, {"real_check": {"cases": items, **label_map}}) for prefix, (items, label_map) in checks.items()}}
        for encoder, (weights_by_seed, variant) in {"raw_intensity": ({seed: ""}, {}), **encoders}.items():
            weights = weights_by_seed[seed]
            caches, results = {}, {}
            for prefix, (_, extra_spec) in tests.items():
                name = f"{'real_' if prefix == 'real_ct_' else prefix}{encoder}"  # real_ct_: the first check's names, kept
                caches[prefix] = out / "probes" / comparison["name"] / f"{name}_seed{seed}.json"
                weights_spec = weights if len(set(weights_by_seed.values())) <= 1 else {str(k): v for k, v in sorted(weights_by_seed.items())}
                same_spec(caches[prefix].parent / name, {"comparison": probe_spec, "probe": p, "weights": weights_spec, "variant": variant, **extra_spec})
                if caches[prefix].is_file():
                    results[prefix] = json.loads(caches[prefix].read_text())
            missing = [prefix for prefix in tests if prefix not in results]
            if missing:
                if encoder == "raw_intensity":
                    net = probes.RawIntensity()
                else:
                    torch.manual_seed(seed)  # the random initialisation (scratch) and any layer the weights leave out
                    net = network_with_weights(bundle_parser(comparison["bundle"], comparison.get("configs", []), {**base, **variant}), weights)
                fresh = _probe_encoder(net, load("train#files"), {prefix: load(tests[prefix][0]) for prefix in missing}, num_classes, p, seed)
                for prefix, result in fresh.items():
                    result["made_by"] = code_version(software())
                    atomic_write_text(caches[prefix], json.dumps(result, indent=1))
                results.update(fresh)
            for prefix in tests:
                result = results[prefix]
                for kind, key, value_key in PROBE_KINDS:
                    rows.append({"comparison": comparison["name"], "kind": prefix + kind, "encoder": encoder, "fraction": p.get("train_fraction", 1.0),
                                 "seed": seed, "value": result[key][value_key], "per_case": json.dumps(result[key]["per_case"]),
                                 "source": weights if encoder != "raw_intensity" else "image intensities",
                                 "train_cases": result["train_cases"], "made_by": result.get("made_by", "")})
    return rows


def real_checks(protocol: Mapping[str, Any]) -> dict[str, tuple[list[dict[str, str]], dict[str, Any]]]:
    """``{kind prefix: (cases, label-map overrides)}`` for the protocol's real checks whose scans are here:
    ``real_check`` (prefix ``real_ct_``) and each entry of ``real_checks`` (``{"name": ..., ...}``, prefix
    ``real_<name>_``), as :func:`real_check_items` reads them."""
    specs = ([("real_ct_", protocol["real_check"])] if protocol.get("real_check") else []) + \
        [(f"real_{c['name']}_", c) for c in protocol.get("real_checks", [])]
    found = {prefix: real_check_items(spec) for prefix, spec in specs}
    return {prefix: v for prefix, v in found.items() if v[0]}


def real_check_items(spec: Mapping[str, Any] | None) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """A real check's cases that exist here (absolute paths) and its label-map overrides
    (``label_values_in``/``label_values_out``, from the ``label_map`` config file or given inline as a
    mapping); ``([], {})`` without a check or when none of its scans is here (a warning names the missing ones)."""
    if not spec:
        return [], {}
    present = [c for c in spec["cases"] if protocol_file(c["image"]).is_file() and protocol_file(c["label"]).is_file()]
    if len(present) < len(spec["cases"]):
        logger.warning(f"real_check: {len(spec['cases']) - len(present)} case(s) absent here, checking without them: "
                       f"{[c['image'] for c in spec['cases'] if c not in present]}")
    overrides = {}
    if spec.get("label_map"):
        mapping = spec["label_map"] if isinstance(spec["label_map"], Mapping) else json.loads(protocol_file(spec["label_map"]).read_text())
        overrides = {k: mapping[k] for k in ("label_values_in", "label_values_out")}
    return [{k: str(protocol_file(c[k]).resolve()) for k in ("image", "label")} for c in present], overrides


def absent_scans(protocol: Mapping[str, Any]) -> dict[str, list[str]]:
    """The protocol's real files that are not here, by the entry naming them (``pretraining_data``, ``real_check``,
    ``real_checks/<name>``); ``{}`` when all are here. The runs go on without them (with a warning), and the card
    records and states what was absent, since the protocol's description assumes every one of them."""
    def case_files(cases: Sequence[Mapping[str, str]]) -> list[str]:
        return [c[k] for c in cases for k in ("image", "label")]

    named = {"pretraining_data": protocol.get("pretraining_data", {}).get("real_images", []),
             "real_check": case_files((protocol.get("real_check") or {}).get("cases", [])),
             **{f"real_checks/{c['name']}": case_files(c["cases"]) for c in protocol.get("real_checks", [])}}
    absent = {where: [f for f in files if not protocol_file(f).is_file()] for where, files in named.items()}
    return {where: files for where, files in absent.items() if files}


def finetune_overrides(comparison: Mapping[str, Any], variant: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A comparison's fine-tuning settings: its shared ``overrides``, then ``finetune_overrides``, then one encoder's ``variant``."""
    return {**comparison.get("overrides", {}), **comparison.get("finetune_overrides", {}), **(variant or {})}


def finetune_runs(comparison: Mapping[str, Any], encoders: Mapping[str, tuple[dict[int, str], dict]], protocol: Mapping[str, Any], out: Path,
                  execution: Execution = Execution()) -> list[dict]:
    """Fine-tuning per encoder, fraction and seed (the bundle's ``train.json``); reused when finished."""
    bundle_dir, _ = bundle_runs.bundle_config_files(comparison["bundle"])
    runs = []
    for encoder, (weights_by_seed, variant) in encoders.items():
        for fraction in protocol["fractions"]:
            for seed in protocol["seeds"]:
                weights = weights_by_seed[seed]
                run_dir = out / "finetune" / comparison["name"] / encoder / f"fraction_{fraction:g}" / f"seed_{seed}"
                overrides = finetune_overrides(comparison, variant)
                same_spec(run_dir, {"bundle": comparison["bundle"], "configs": comparison.get("configs", []), "overrides": overrides,
                                    "weights": weights})
                # where preprocessed cases are kept changes no number (tested), so it is not part of the spec
                cache = {} if "cache" in overrides else {"cache": "disk", "cache_dir": str(out / "cache")}
                runs.append((encoder, fraction, seed, weights, run_dir, {**overrides, **cache}))
    bests = execution.map([partial(bundle_runs.run_one, bundle_dir, comparison.get("configs", []), run_dir, float(fraction), int(seed), weights,
                                   overrides, run_dir / "train.log", execution.in_process, execution.threads)
                           for _, fraction, seed, weights, run_dir, overrides in runs])
    rows = []
    for (encoder, fraction, seed, weights, run_dir, _), best in zip(runs, bests):
        per_case = final_per_case(run_dir / "eval" / "validation_metrics.csv", best["metric"])
        rows.append({"comparison": comparison["name"], "kind": f"finetune_final_{best['metric']}", "encoder": encoder,
                     "fraction": fraction, "seed": seed, "value": sum(per_case) / len(per_case), "per_case": json.dumps(per_case),
                     "best_value": best["value"], "peak_loss": peak_training_loss(run_dir), "source": weights or "random initialisation",
                     "made_by": weights_made_by(run_dir / "models" / "model.pt")})
    return rows


def scalar_curve(run_dir: Path, tag: str, step_scale: int = 1) -> list[tuple[int, float]]:
    """``[(step x step_scale, value)]`` of a TensorBoard scalar of a finished run, read from its events
    (``eval/tensorboard``, where the bundles write ``train/loss`` per logged iteration and the validation
    metrics per epoch: ``step_scale`` = epoch length turns those into iterations)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    points: dict[int, float] = {}
    for events in sorted((run_dir / "eval" / "tensorboard").rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        if tag in acc.Tags().get("scalars", []):
            points.update({int(e.step) * int(step_scale): float(e.value) for e in acc.Scalars(tag)})
    return sorted(points.items())


def peak_training_loss(run_dir: Path, until: int | None = None) -> float:
    """The largest training loss a finished run logged (``train/loss``, every ``log_interval`` iterations),
    in its first ``until`` iterations if given; NaN when none was logged. A run that diverged early shows
    here even when its loss came back down (see :func:`common.experiments.card.unstable_runs`)."""
    values = [v for step, v in scalar_curve(run_dir, "train/loss") if until is None or step <= until]
    return max(values) if values else math.nan


def learning_curves(comparison: Mapping[str, Any], protocol: Mapping[str, Any], out: Path, metric: str) -> list[dict]:
    """The baseline arm's validation curve (every fraction and seed) of a comparison whose runs are finished:
    what the protocol's fine-tuning length was chosen from, shown in the card."""
    overrides = finetune_overrides(comparison)
    epoch_length = int(overrides.get("epoch_length", 1))
    rows = []
    for fraction in protocol["fractions"]:
        for seed in protocol["seeds"]:
            run_dir = out / "finetune" / comparison["name"] / comparison["baseline"] / f"fraction_{fraction:g}" / f"seed_{seed}"
            rows += [{"comparison": comparison["name"], "encoder": comparison["baseline"], "fraction": fraction, "seed": seed,
                      "iteration": it, "value": v} for it, v in scalar_curve(run_dir, metric, epoch_length)]
    return rows


def final_per_case(path: Path, metric: str) -> list[float]:
    """Per-case values (the ``mean`` column) of ``metric`` at the run's last validation.

    The card scores the final model, not the best validation epoch: the held-out cases are the
    validation cases, and choosing the epoch on them would bias every encoder upwards.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the fine-tuning run did not validate at its end")
    with open(path, newline="") as f:
        values = [float(r["mean"]) for r in csv.DictReader(f) if r["metric"] == metric]
    if not values:
        raise ValueError(f"{path} has no rows for {metric}")
    return values


def main(protocol: str, output_dir: str = "runs/evidence", card_dir: str | None = None, only: str | Sequence[str] = (), in_process: bool | None = None,
         parallel: int = 1) -> str:
    """Run the protocol (resuming what is finished) and write the card; return the card folder.

    Args:
        protocol: protocol JSON (see ``common/experiments/protocols/``), checked first (:mod:`common.experiments.protocol`).
        output_dir: runs, caches and (unless ``card_dir``) ``card/``.
        card_dir: where the card goes (e.g. a folder committed to the repository).
        only: run this comparison only, or these (a list of names), e.g. to build a card in stages.
        in_process: run the pretraining and fine-tuning bundles in this process (the default with
            ``parallel`` 1), not one subprocess each: the same runs without a Python start-up each (see
            :func:`common.experiments.bundle_runs.run_bundle`).
        parallel: how many pretraining or fine-tuning runs at a time, as subprocesses sharing the CPUs
            (:class:`Execution`; 2 on 2 CPU cores trains small networks about 1.4-1.5x faster in total).
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    started = time.monotonic()
    execution = Execution.choose(in_process, int(parallel))
    spec = read_protocol(protocol)
    out = Path(output_dir).resolve()
    card = Path(card_dir).resolve() if card_dir else out / "card"
    only = value_list(only)
    comparisons = [c for c in spec["comparisons"] if not only or c["name"] in only]
    unknown = set(only) - {c["name"] for c in spec["comparisons"]}
    if unknown:
        raise CommandLineError(f"--only names no comparison of {protocol}: {sorted(unknown)}; its comparisons: {[c['name'] for c in spec['comparisons']]}")
    needed = {v[len(PRETRAINED_PREFIX):] for c in comparisons for v in (e.get("weights") for e in c["encoders"].values())
              if v and v.startswith(PRETRAINED_PREFIX)}
    pretrained: dict[str, list[Path]] = {}
    pretraining_seeds = list(spec.get("pretraining_seeds", [None]))
    bar = progress_bar(len(needed) * len(pretraining_seeds) + len(comparisons), "evidence", unit="stage")
    if needed:
        datalist = pretraining_datalist(spec, out)
        jobs = [(name, p_seed) for name in sorted(needed) for p_seed in pretraining_seeds]

        def pretrain(name: str, p_seed: int | None) -> Path:
            weights = run_pretraining(name, spec["pretraining"][name], datalist, out, execution, p_seed)
            bar.update(1)
            return weights

        for (name, _), weights in zip(jobs, execution.map([partial(pretrain, *job) for job in jobs])):
            pretrained.setdefault(name, []).append(weights)
    rows: list[dict] = []
    curves: list[dict] = []
    provenance = {}
    for comparison in comparisons:
        encoders = {e: (resolve_encoder(v.get("weights"), pretrained, spec["seeds"]), dict(v.get("overrides", {})))
                    for e, v in comparison["encoders"].items()}
        provenance[comparison["name"]] = {e: {"weights": w[spec["seeds"][0]], "overrides": o, "record": weights_record(w[spec["seeds"][0]]),
                                              **({"weights_by_seed": w} if len(set(w.values())) > 1 else {})}
                                          for e, (w, o) in encoders.items()}
        if comparison.get("probes", True):
            rows += probe_runs(comparison, encoders, spec, out)
        finetuned = finetune_runs(comparison, encoders, spec, out, execution)
        rows += finetuned
        if spec.get("learning_curve") and finetuned:
            curves += learning_curves(comparison, spec, out, finetuned[0]["kind"][len("finetune_final_"):])
        atomic_write_text(card / "runs.csv", csv_text(rows, RUN_FIELDS))
        bar.update(1)
    bar.close()
    executed = {"parallel": execution.parallel, "in_process": execution.in_process, "threads_per_run": execution.threads or torch.get_num_threads(),
                "cpus": len(os.sched_getaffinity(0)), "machine": machine(), "software": software(), "wall_s": round(time.monotonic() - started),
                "wall_s_counts": "this invocation only: runs finished earlier were reused, not repeated",
                "made_by": sorted({r.get("made_by", "") for r in rows}
                                  | {weights_made_by(w) for runs in pretrained.values() for w in runs})}
    write_card(card, rows, spec, provenance, {c["name"]: c["baseline"] for c in comparisons}, curves, executed, absent_scans(spec))
    logger.info(f"Wrote the card to {card}")
    return str(card)


if __name__ == "__main__":
    sys.exit(command(main))
