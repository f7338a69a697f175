"""SubFore training step under AMP, channels-last and torch.compile against plain fp32, in one run; prints JSON.

One step = the bundle's masking, the network of ``subfore_pretrain/configs/train.json``, the bundle's
masked L1, backward, AdamW (``timing.subfore_step``) -- on a fixed batch of CT-like crops, median of ``--repeats`` after warm-up.
Variants (``--variants``, each against ``fp32`` measured in the same run):

- ``fp32``: no autocast (the baseline);
- ``amp``: ``torch.autocast`` in bf16 where the device supports it, else fp16 (the bundles' ``amp``);
- ``channels_last``: ``amp`` with network and input in ``torch.channels_last_3d``;
- ``compile``: ``amp`` with ``torch.compile(network)`` (MONAI's ``SupervisedTrainer(compile=True)``);
  its first-call compile time is reported separately as ``compile_s``.

On a GPU each variant also reports ``peak_gib`` (``torch.cuda.max_memory_allocated``). The bundles keep
what wins: ``amp`` is on with a GPU (``amp_dtype`` bf16 where supported); ``compile`` and SubFore's
``channels_last`` are settings, off by default until a GPU run of this benchmark shows they win there
(channels-last won on the 2-core CPU).

    python bench/bench_training_speed.py [--feature_size 48] [--depths 2 2 2 2] [--window 7] [--roi 96] [--batch 4]
        [--variants fp32 amp channels_last compile] [--repeats 5] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
from timing import median_time, subfore_config, subfore_step

VARIANTS = ("fp32", "amp", "channels_last", "compile")


def amp_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16


def make_step(args: argparse.Namespace, variant: str, device: torch.device):
    """A closure running one training step of ``variant``; the network, data and optimizer are built fresh."""
    from bench_subfore_masking import synthetic_batch

    parser = subfore_config(**{"device": f"$torch.device('{device}')", "roi_size": [args.roi] * 3,
                   "feature_size": args.feature_size, "network_def#depths": args.depths, "network_def#window_size": args.window})
    torch.manual_seed(0)
    network = parser.get_parsed_content("network_def").to(device)
    images = synthetic_batch(args.batch, args.roi, device)
    if variant == "channels_last":
        network = network.to(memory_format=torch.channels_last_3d)
        images = images.contiguous(memory_format=torch.channels_last_3d)
    model = torch.compile(network) if variant == "compile" else network
    step = subfore_step(parser, model, None if variant == "fp32" else amp_dtype(device))
    return lambda: step(images)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--feature_size", type=int, default=48)
    ap.add_argument("--depths", type=int, nargs=4, default=[2, 2, 2, 2])
    ap.add_argument("--window", type=int, default=7)
    ap.add_argument("--roi", type=int, default=96)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    variants = ["fp32", *(v for v in args.variants if v != "fp32")]
    results: dict[str, dict] = {}
    for variant in variants:
        step = make_step(args, variant, device)
        t = time.perf_counter()
        step()  # warm-up: cuDNN autotuning, lazy init, compilation
        first = time.perf_counter() - t
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        entry = {"s_per_step": round(median_time(step, args.repeats, device), 4)}
        if variant == "compile":
            entry["compile_s"] = round(first, 1)
        if device.type == "cuda":
            entry["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
        entry["speedup_vs_fp32"] = round(results["fp32"]["s_per_step"] / entry["s_per_step"], 3) if results else 1.0
        results[variant] = entry
        del step
        # the report so far after every variant: a run stopped during a long compile keeps the variants measured (the suite reads the last one)
        print(json.dumps(report(args, device, results, done=variant == variants[-1])), flush=True)


def report(args: argparse.Namespace, device: torch.device, results: dict[str, dict], done: bool) -> dict:
    return {
        "benchmark": "training_speed", "device": str(device), "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
        "host": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads(),
        "network": f"SwinUNETR fs{args.feature_size} depths {args.depths} window {args.window}", "roi": args.roi, "batch": args.batch,
        "amp_dtype": str(amp_dtype(device)).removeprefix("torch."), "repeats": args.repeats, "variants": results, "complete": done,
    }

if __name__ == "__main__":
    main()
