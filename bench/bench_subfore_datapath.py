"""SubFore data path: samples/s of the bundle's loader against a plain MONAI pipeline, in one run; prints JSON.

Both deliver the same batches (``batch`` random ``roi^3`` crops of CT, loaded, oriented, resampled to
``pixdim`` and HU-windowed), drawn from the same cases:

- ``plain``: ``monai.data.Dataset`` + ``torch.utils.data.DataLoader`` with ``--workers`` processes
  running every transform for every sample on the CPU (the reference scripts' pattern);
- ``bundle``: ``subfore_pretrain``'s own ``train#dataloader`` -- ``CacheDataset`` holding the
  deterministic part, random crops in a ``ThreadDataLoader`` -- with ``cache_on_device`` as given
  (``True`` on a GPU: cached volumes on the device, crops there);
- ``disk``: the same loader with ``cache: disk`` (``PersistentDataset``), timed once its files exist (a
  later run on the same cases); each batch reads the preprocessed cases back from disk;
- ``store``: the same loader with ``cache: store`` (the chunked store, ``--workers`` thread workers
  reading only each crop's chunks), timed once the store is written.

``speedup`` = plain time per batch / bundle time per batch in the steady state (the cache is built
once per run and reported separately as ``cache_build_s``; so is the plain loader's worker start-up).
Cases: the real CTs under ``../shared/data`` when present (``--data real``; listed repeatedly up to two
batches, each repeat loaded again by the plain pipeline and cached again by the bundle's), else the
embedded phantoms.

With ``--train_step`` every batch also goes through the bundle's training step (masking, SwinUNETR of
``--feature_size``, masked L1, AdamW, AMP on a GPU): the pretraining samples/s, the issue's GPU figure;
``step_only_s`` is the same step on one fixed batch with no loader, so ``store_s_per_batch / step_only_s``
says how long the GPU waits for the store's data (1.0: never).

    python bench/bench_subfore_datapath.py [--data real|phantoms] [--roi 96] [--batch 4] [--batches 12] [--workers 2]
        [--train_step [--feature_size 48]] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch
from monai.data import DataLoader, Dataset
from timing import median_time, subfore_config, subfore_step

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
REAL_CT = [DATA / "ts_ct_full" / "example_ct.nii.gz", DATA / "ts_ct_small" / "example_ct_sm.nii.gz", DATA / "msd_spleen_crop" / "sub-spleen2_ct.nii.gz"]


def real_cases() -> list[dict]:
    return [{"image": str(p)} for p in REAL_CT if p.is_file()]


def time_batches(loader, n: int, device: torch.device, step=None) -> tuple[float, float]:
    """(seconds for the first batch, mean seconds per batch over the next ``n``, restarting epochs as needed);
    with ``step``, each batch also goes through ``step(images)`` (a training step)."""
    it = iter(loader)
    t = time.perf_counter()
    next(it)
    first = time.perf_counter() - t
    t = time.perf_counter()
    done = 0
    while done < n:
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            continue
        images = batch["image"].to(device, non_blocking=True)
        if step is not None:
            step(images)
        done += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    return first, (time.perf_counter() - t) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", choices=("real", "phantoms"), default="real")
    ap.add_argument("--roi", type=int, default=96)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--train_step", action="store_true", help="time loader + training step (the pretraining samples/s), not the loader alone")
    ap.add_argument("--feature_size", type=int, default=48, help="network size for --train_step")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    cases = real_cases() if args.data == "real" else []
    with tempfile.TemporaryDirectory() as root:
        parser = subfore_config(**{"bundle_root": root, "roi_size": [args.roi] * 3, "batch_size": args.batch, "num_workers": args.workers,
                       "device": f"$torch.device('{device}')", "cache_on_device": device.type == "cuda", "preflight": False,
                       "feature_size": args.feature_size})
        files = cases or parser.get_parsed_content("train#files")
        files = (files * (2 * args.batch // len(files) + 1))[: max(len(files), 2 * args.batch)]  # a few real CTs: list each again
        parser["train#files"] = files
        transforms = parser.get_parsed_content("train#deterministic_transforms") + parser.get_parsed_content("train#random_transforms")

        from monai.transforms import Compose

        plain = DataLoader(Dataset(files, Compose(transforms)), batch_size=args.batch, shuffle=True, num_workers=args.workers,
                           drop_last=True, persistent_workers=args.workers > 0)
        dtype = parser.get_parsed_content("amp_dtype") if parser.get_parsed_content("amp") else None
        step = subfore_step(parser, parser.get_parsed_content("network"), dtype) if args.train_step else None
        plain_first, plain_s = time_batches(plain, args.batches, device, step)

        t = time.perf_counter()
        loader = parser.get_parsed_content("train#dataloader")  # builds the cache
        cache_s = time.perf_counter() - t
        bundle_first, bundle_s = time_batches(loader, args.batches, device, step)

        parser.update({"cache": "disk", "cache_dir": f"{root}/cache"})
        disk = parser.get_parsed_content("train#dataloader", lazy=False)
        t = time.perf_counter()
        batches = iter(disk)  # the training stream does not end (common.data.StreamSampler): one pass over the cases writes the files
        for _ in range(-(-len(files) // args.batch)):
            next(batches)
        disk_build_s = time.perf_counter() - t
        _, disk_s = time_batches(disk, args.batches, device, step)

        parser.update({"cache": "store", "cache_dir": f"{root}/store", "cache_on_device": False})  # the store reads on the host
        t = time.perf_counter()
        store = parser.get_parsed_content("train#dataloader", lazy=False)  # writes the store
        store_build_s = time.perf_counter() - t
        _, store_s = time_batches(store, args.batches, device, step)
        step_only_s = None
        if step is not None:
            fixed = next(iter(store))["image"].to(device)
            step_only_s = median_time(lambda: step(fixed), args.batches, device)
    print(json.dumps({
        "benchmark": "subfore_datapath", "device": str(device), "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
        "host": platform.processor() or platform.machine(), "cases": len(files), "data": args.data if cases or args.data == "phantoms" else "phantoms (no real CT)",
        "roi": args.roi, "batch": args.batch,
        "timed": f"loader + training step (SwinUNETR fs{args.feature_size})" if args.train_step else "loader only", "workers": args.workers, "batches_timed": args.batches,
        "plain_s_per_batch": round(plain_s, 4), "plain_first_batch_s": round(plain_first, 3),
        "bundle_s_per_batch": round(bundle_s, 4), "bundle_first_batch_s": round(bundle_first, 3), "cache_build_s": round(cache_s, 3),
        "plain_samples_per_s": round(args.batch / plain_s, 2), "bundle_samples_per_s": round(args.batch / bundle_s, 2),
        "disk_s_per_batch": round(disk_s, 4), "disk_cache_build_s": round(disk_build_s, 3), "disk_samples_per_s": round(args.batch / disk_s, 2),
        "store_s_per_batch": round(store_s, 4), "store_build_s": round(store_build_s, 3), "store_samples_per_s": round(args.batch / store_s, 2),
        "step_only_s": round(step_only_s, 4) if step_only_s is not None else None,
        "speedup": round(plain_s / bundle_s, 2), "disk_speedup": round(plain_s / disk_s, 2), "goal_speedup": 1.5,
    }, indent=2))


if __name__ == "__main__":
    main()
