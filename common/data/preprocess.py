"""Preprocess a bundle's cases into a chunked store (``cache: store``), in parallel and resumably.

    python -m common.data.preprocess --config_file bundles/btcv_finetune/configs/train.json \\
        --datalist /data/btcv/datalist.json [--store_dir /scratch/store] [--workers 16] [other overrides]

Reads the bundle's config with the same ``--key value`` overrides ``monai.bundle run`` takes, then runs
each case of the training (and validation) list through the pipeline's deterministic transforms --
loading, orientation, resampling, intensity mapping, padding: everything before the first random
one -- and writes the result to ``<store_dir>/store-<hash>/`` (:mod:`common.data.store`). A training
run with the same config and ``--cache store --cache_dir <store_dir>`` then reads only its crops.

- **Parallel**: ``--workers`` processes (default: every core), one case each at a time.
- **Resumable**: finished cases are kept and skipped; a case cut by a kill is redone (its arrays were
  under temporary names, its record not written). Rerun the same command.
- **Stale-proof**: the store's name hashes the transforms and all their settings; another ``pixdim``
  or window writes a new store next to the old one (delete old ones freely).
- **Checked**: each case is checked as the pre-flight check would (the bundle's ``case_checks``,
  unless ``--preflight False``) by the worker that reads it; bad cases are recorded with their
  problems, listed at the end (exit status 1), and a training run stops or skips them as its
  ``on_bad_case`` says, without reading them again.

Exit status: 0 every case stored; 1 some cases bad or failed (listed); 2 the command is wrong (an
override naming no config key included, as ``monai.bundle run``'s workflow refuses it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Compose
from monai.transforms.utils import map_binary_to_indices, map_classes_to_indices

from common.cli import CommandLineError, command, read_bundle_config
from common.data.cache import first_uncachable, transform_hash
from common.data.store import CODECS, FORMAT_VERSION, Store, index_chunking, case_key, checks_digest, chunking, encode_value
from common.data.store_crops import BG, FG, class_indices_name, crop_size, index_spec
from common.progress import progress_bar

logger = logging.getLogger(__name__)

FILE_FIELDS = ("image", "label")


@dataclass(frozen=True)
class StorePlan:
    """Where one pipeline's store is and how its cases are written.

    ``settings_hash`` covers the deterministic transforms with every setting, the indices the crop
    needs, and the store format: equal hashes, interchangeable arrays.
    """

    root: str
    split: int
    settings_hash: str
    roi_size: tuple[int, ...] | None
    indices: dict | None
    description: list[str]
    codec: str = "lz4hc"
    clevel: int = 8

    @property
    def store(self) -> Store:
        return Store(self.root)


def plan_store(transform: Compose, cache_dir: str | os.PathLike, codec: str = "lz4hc", clevel: int = 8) -> StorePlan:
    """The store of ``transform``'s deterministic head under ``cache_dir`` (see :class:`StorePlan`)."""
    if codec not in CODECS:
        raise CommandLineError(f"--codec {codec}: give one of {', '.join(CODECS)}")  # a ValueError, one line from the command
    split = first_uncachable(transform)
    head = transform.transforms[:split]
    first = transform.transforms[split] if split < len(transform.transforms) else None
    indices = index_spec(first) if first is not None else None
    h = hashlib.sha256()
    h.update(transform_hash(head))
    h.update(json.dumps({"indices": indices, "format": FORMAT_VERSION}, sort_keys=True).encode())
    settings_hash = h.hexdigest()
    root = Path(cache_dir) / Store.folder_name(settings_hash)
    description = [type(t).__name__ for t in head]
    return StorePlan(str(root), split, settings_hash, crop_size(first) if first is not None else None, indices, description, codec, clevel)


def source_files(entry: Mapping[str, Any]) -> list[list]:
    """``[field, path, size]`` of every file the entry names (size -1: missing or a DICOM folder)."""
    rows = []
    for f in FILE_FIELDS:
        values = entry.get(f)
        for v in values if isinstance(values, list) else [values]:
            if isinstance(v, str) and v:
                rows.append([f, v, os.path.getsize(v) if os.path.isfile(v) else -1])
    return rows


def _is_volume(value: Any) -> bool:
    return isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim >= 4


def _intensity(volume: np.ndarray) -> dict[str, list[float]]:
    """Per channel min, max, mean and standard deviation (the manifest's intensity record)."""
    flat = volume.reshape(volume.shape[0], -1).astype(np.float64)
    return {"min": flat.min(1).tolist(), "max": flat.max(1).tolist(), "mean": flat.mean(1).tolist(), "std": flat.std(1).tolist()}


def preprocess_case(entry: Mapping[str, Any], transform: Compose, plan: StorePlan, checks: Any = None) -> dict[str, Any]:
    """Run ``entry`` through the store's transforms and write it (arrays, then the record); returns the record.

    With ``checks`` the case is checked first (:func:`common.data.case_checks.check_case`); a bad case,
    or one whose transforms fail, gets a record with its problems and no arrays.
    """
    from common.data.case_checks import case_name, check_case

    store, key = plan.store, case_key(entry)
    record: dict[str, Any] = {"key": key, "case": str(entry.get("case") or case_name(entry)), "sources": source_files(entry),
                              "checks": {"digest": checks_digest(checks), "problems": []}}
    problems = check_case(entry, checks) if checks is not None else []
    if not problems:
        try:
            data = Compose(transform.transforms[: plan.split])(dict(entry)) if plan.split else dict(entry)
            if not isinstance(data, Mapping):
                raise TypeError(f"the cached transforms returned a {type(data).__name__}, not one case")
            record.update(_write_fields(store, key, data, plan))
        except Exception as e:  # noqa: BLE001 - recorded and reported with the case, the others go on
            problems = [f"preprocessing failed: {type(e).__name__}: {e}"]
    record["checks"]["problems"] = problems
    store.write_record(record)
    return record


def _write_fields(store: Store, key: str, data: Mapping[str, Any], plan: StorePlan) -> dict[str, Any]:
    volumes, values, nbytes = {}, {}, 0
    arrays: dict[str, np.ndarray] = {}
    for name, value in data.items():
        if not _is_volume(value):
            values[name] = encode_value(value)
            continue
        array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        meta = None
        if isinstance(value, MetaTensor):
            meta = {"affine": value.affine.tolist(), "filename_or_obj": str(value.meta.get("filename_or_obj", ""))}
        chunks, blocks = chunking(array.shape, plan.roi_size, array.dtype.itemsize)
        nbytes += store.write_array(key, name, array, chunks, blocks, plan.codec, plan.clevel).stat().st_size
        volumes[name] = {"shape": list(array.shape), "dtype": str(array.dtype), "meta": meta}
        arrays[name] = array
    if not volumes:
        raise ValueError("the cached transforms produced no volume (a (C, D, H, W) array) to store")
    out: dict[str, Any] = {"order": list(data), "volumes": volumes, "values": values}
    if plan.indices:
        spec = plan.indices
        image = arrays.get(spec["image_key"]) if spec["image_key"] else None
        if "num_classes" in spec:  # RandCropByLabelClassesd's per-class indices
            classes = map_classes_to_indices(arrays[spec["label_key"]], spec["num_classes"], image, spec["image_threshold"],
                                             spec["max_samples_per_class"])
            named = [(class_indices_name(c), idx) for c, idx in enumerate(classes)]
        else:  # RandCropByPosNegLabeld's foreground and background
            named = list(zip((FG, BG), map_binary_to_indices(arrays[spec["label_key"]], image, spec["image_threshold"])))
        out["indices"] = {}
        for name, idx in named:
            idx = np.asarray(idx)
            idx = idx.astype(np.int32 if idx.size == 0 or idx.max() < 2**31 else np.int64)
            chunks, blocks = index_chunking(idx.size)
            nbytes += store.write_array(key, name, idx, chunks, blocks, "zstd", 5).stat().st_size
            out["indices"][name] = {"length": int(idx.size)}
    first = next(iter(volumes))
    meta = volumes[first]["meta"]
    out["shape"] = volumes[first]["shape"]
    if meta is not None:
        out["spacing"] = np.linalg.norm(np.asarray(meta["affine"])[:3, :3], axis=0).round(6).tolist()
    if "image" in arrays:
        out["intensity"] = _intensity(arrays["image"])
    out["bytes"] = nbytes
    return out


# -- building a store -------------------------------------------------------------------------------

@dataclass
class BuildReport:
    """What one build did: cases already there, written now, and bad (with their problems)."""

    store: str
    kept: int = 0
    written: int = 0
    problems: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0

    def line(self) -> str:
        bad = f", {len(self.problems)} bad" if self.problems else ""
        return f"store {self.store}: {self.kept} case(s) already stored, {self.written} written{bad} in {self.seconds:.1f} s"


def missing_cases(entries: Sequence[Mapping[str, Any]], plan: StorePlan) -> tuple[list[Mapping[str, Any]], dict[str, dict]]:
    """The entries the store lacks, and the summaries of those it has (the manifest first; a record
    file is looked up only for a case the manifest does not list, so a complete store costs one read)."""
    store = plan.store
    manifest = store.manifest()
    have: dict[str, dict] = {}
    todo = []
    for entry in entries:
        key = case_key(entry)
        if key in manifest and not manifest[key]["checks"]["problems"]:
            have[key] = manifest[key]
            continue
        record = store.record(key)
        if record is None or record["checks"]["problems"]:  # a bad case is tried again: it may have been fixed
            todo.append(entry)
        else:
            have[key] = record
    return todo, have


_WORKER: dict[str, Any] = {}


def _init_worker() -> None:
    torch.set_num_threads(1)  # one case per process; the processes are the parallelism
    try:
        import blosc2

        blosc2.set_nthreads(1)
    except ImportError:
        pass


def _work(entry: Mapping[str, Any]) -> dict[str, Any]:
    return preprocess_case(entry, _WORKER["transform"], _WORKER["plan"], _WORKER["checks"])


def build_store(
    entries: Sequence[Mapping[str, Any]],
    transform: Compose,
    plan: StorePlan,
    checks: Any = None,
    workers: int = 1,
    processes: bool = True,
    progress: bool | None = None,
    desc: str = "preprocessing",
) -> BuildReport:
    """Write every case of ``entries`` the store lacks; keep the others. Safe to kill and rerun.

    ``processes``: ``workers`` forked processes (the preprocessing command); else threads (a training
    run building a small store itself: its transforms need not be picklable). Called where other threads
    run, it uses threads and says so: a forked child gets the locks those threads held but not the threads,
    and can wait forever, with the pool waiting on it (Python 3.12 warns of such a fork).
    """
    t0 = time.monotonic()
    store = plan.store
    store.root.mkdir(parents=True, exist_ok=True)
    if store.settings() is None:
        store.write_settings({"settings_hash": plan.settings_hash, "transforms": plan.description, "split": plan.split,
                              "roi_size": plan.roi_size, "indices": plan.indices, "codec": plan.codec, "clevel": plan.clevel,
                              "created": time.strftime("%Y-%m-%d %H:%M:%S")})
    removed = store.remove_temporaries()
    if removed:
        logger.info(f"Removed {removed} half-written array file(s) of an interrupted preprocessing in {store.root}.")
    todo, have = missing_cases(entries, plan)
    report = BuildReport(str(store.root), kept=len(have))
    done: list[dict] = []
    if todo:
        fork = _can_fork(processes, workers)
        unit = "process" if fork or (processes and workers == 1) else "thread"
        unit += "" if workers == 1 else ("es" if fork else "s")
        logger.info(f"Preprocessing {len(todo)} case(s) into {store.root} ({len(have)} already there) with {workers} {unit}.")
        with progress_bar(len(todo), desc, enabled=progress) as bar:
            for record in _map(todo, transform, plan, checks, workers, fork):
                done.append(record)
                bar.update(1)
    report.written = sum(1 for r in done if not r["checks"]["problems"])
    all_records = [*have.values(), *done]
    report.problems = {r["case"]: r["checks"]["problems"] for r in all_records if r.get("checks", {}).get("problems")}
    if done or not (store.root / "manifest.json").is_file():
        store.write_manifest({**store.manifest(), **{r["key"]: r for r in all_records}}.values())
    report.seconds = time.monotonic() - t0
    return report


def _can_fork(processes: bool, workers: int) -> bool:
    """Whether ``workers`` > 1 run as forked processes: asked for, available, and this process runs no other thread
    (else threads, with the reason logged)."""
    if not processes or workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return False
    if threading.active_count() > 1:
        logger.warning(f"{threading.active_count() - 1} other thread(s) run in this process: preprocessing with {workers} threads "
                       "instead of forked processes (run python -m common.data.preprocess for processes)")
        return False
    return True


def _map(todo: Sequence[Mapping[str, Any]], transform: Compose, plan: StorePlan, checks: Any, workers: int, fork: bool):
    if workers <= 1:
        for entry in todo:
            yield preprocess_case(entry, transform, plan, checks)
        return
    if fork:
        _WORKER.update(transform=transform, plan=plan, checks=checks)  # inherited by the forked workers
        try:
            with multiprocessing.get_context("fork").Pool(workers, initializer=_init_worker) as pool:
                yield from pool.imap_unordered(_work, todo, chunksize=1)
        finally:
            _WORKER.clear()
        return
    with ThreadPoolExecutor(workers) as pool:
        yield from pool.map(lambda e: preprocess_case(e, transform, plan, checks), todo)


# -- the command -------------------------------------------------------------------------------------

#: (list config id, pipeline config id) pairs a training config may define
PIPELINES = (("train#files", "train#preprocessing"), ("validate#files", "validate#preprocessing"))


def bundle_pipelines(config_file: str | Sequence[str], overrides: Mapping[str, Any]) -> tuple[list[tuple[str, list[dict], Compose]], Any, str]:
    """The config's ``(list name, entries, pipeline)`` triples, the bundle's case checks (None with
    ``preflight`` off) and its ``cache_dir``; the lists are resolved without the pre-flight read (the
    workers check each case as they read it)."""
    parser = read_bundle_config(config_file, overrides)
    if "case_source" not in parser or "train#preprocessing" not in parser:
        raise SystemExit(f"{config_file} is not a training config of this collection (no case_source / train#preprocessing)")
    checks = parser.get_parsed_content("case_checks") if parser.get_parsed_content("preflight") else None
    parser["preflight"] = False  # the workers check each case as they read it: one read, not two
    out = []
    for files_id, pipeline_id in PIPELINES:
        if files_id in parser and pipeline_id in parser:
            out.append((files_id.split("#")[0], parser.get_parsed_content(files_id), parser.get_parsed_content(pipeline_id)))
    return out, checks, parser.get_parsed_content("cache_dir")


def main(config_file: str | Sequence[str], store_dir: str | None = None, workers: int = os.cpu_count() or 1, codec: str = "lz4hc",
         progress: bool | None = None, **overrides: Any) -> int:
    """Preprocess the bundle's training and validation cases into a store; list the cases that could not be stored.

    Args:
        config_file: the bundle's training config, or a list of config files merged in order.
        store_dir: where the store goes (default: the config's ``cache_dir``); train with ``--cache_dir`` set to it.
        workers: parallel processes (default: every core).
        codec: blosc2 codec, one of :data:`common.data.store.CODECS`: lz4hc reads fastest, zstd packs tighter.
        progress: progress bar (default: on a terminal outside CI).
        overrides: config overrides (``--datalist /data/datalist.json``), checked as ``monai.bundle run``'s workflow checks them.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    pipelines, checks, cache_dir = bundle_pipelines(config_file, overrides)
    store_dir = store_dir or cache_dir
    bad = 0
    for name, entries, transform in pipelines:
        plan = plan_store(transform, store_dir, codec=codec)
        report = build_store(entries, transform, plan, checks=checks, workers=int(workers), progress=progress, desc=f"preprocessing {name}")
        print(f"{name}: {report.line()}")
        for case, problems in report.problems.items():
            bad += 1
            for p in problems:
                print(f"  - case {case}: {p}")
    if bad:
        print(f"{bad} case(s) could not be stored (listed above); training stops on them, or skips them with --on_bad_case skip")
        return 1
    print(f"Train with: --cache store --cache_dir {store_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(command(main))
