"""Every benchmark of the collection in one command: one JSON and one Markdown table of figures.

    python bench/suite.py [--quick] [--device cpu|cuda] [--only NAME ...] [--output bench/results] [--update_docs]

Each benchmark runs in its own process (``python bench/<script>.py``; they print JSON) and each
figure is a *ratio against a baseline measured in the same run* -- ``ratio = value / baseline``, both
times in seconds -- so it holds on a noisy or shared machine. ``--quick`` shrinks the problem sizes
to what a 2-core CPU runs in a few minutes (the figures in the docs name the mode); without it the
benchmarks run at the papers' sizes, which is the GPU setting. A benchmark that cannot run here (no
real CT, no GPU) is listed with its reason instead of failing the suite.

Writes ``<output>/suite_<date>_<device>[_quick].json`` (figures, every benchmark's full report, device,
versions) and the same as ``.md``, and prints the Markdown table. ``--update_docs`` then writes the
newest results into the figure blocks of the README and the bundles' docs (``bench/update_docs.py``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import operator
import platform
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
GOAL_OPS: dict[str, Callable[[float, float], bool]] = {"<=": operator.le, ">=": operator.ge}


@dataclass
class Figure:
    """One measured figure: ``value`` against ``baseline`` (seconds, unless the figure names another unit), ``ratio = value / baseline``."""

    benchmark: str
    figure: str
    value: float
    baseline_name: str
    baseline: float
    goal: str = ""  # e.g. "<= 0.02" on the ratio
    ratio: float = field(init=False)
    met: bool | None = field(init=False)

    def __post_init__(self) -> None:
        self.ratio = round(self.value / self.baseline, 4) if self.baseline else float("nan")
        op, _, threshold = self.goal.partition(" ")
        self.met = GOAL_OPS[op](self.ratio, float(threshold)) if op in GOAL_OPS else None


@dataclass
class Benchmark:
    """A script in ``bench/``, its arguments for the full and the quick run, and how to read its figures."""

    name: str
    script: str
    full_args: list[str]
    quick_args: list[str]
    figures: Callable[[dict], list[Figure]]
    cuda_args: list[str] | None = None  # full sizes on a GPU, where they differ from full_args (fewer repeats or cases to fit a lease)
    max_s: int | None = None  # at most this long under --budget_s, so one slow benchmark (a compile) leaves time for the rest
    devices: tuple[str, ...] = ("cpu", "cuda")  # ddp_scaling and run_start are host figures (gloo, file system), measured by the CPU suite

    def args(self, quick: bool, device: str) -> list[str]:
        if quick:
            return self.quick_args
        return self.cuda_args if device.startswith("cuda") and self.cuda_args is not None else self.full_args


def _subfore(r: dict) -> list[Figure]:
    return [
        Figure("subfore_masking", f"masking of a batch ({r['batch']} x {r['roi']}^3) / one training step", r["mask_s"], "training step", r["step_s"], "<= 0.02"),
        Figure("subfore_masking", "vectorized masking / per-sample Python loop", r["mask_s"], "per-sample loop", r["loop_mask_s"]),
    ]


def _datapath(r: dict) -> list[Figure]:
    setting = f"({r['batch']} x {r['roi']}^3, {r['data']}, {r.get('timed', 'loader only')})"
    goal = f"<= {1 / r['goal_speedup']:.3g}"
    figures = [
        Figure("subfore_datapath", f"SubFore pretraining, time per batch {setting}: memory cache + thread loader / plain DataLoader ({r['workers']} workers)",
               r["bundle_s_per_batch"], "plain DataLoader", r["plain_s_per_batch"], goal),
        Figure("subfore_datapath", f"SubFore pretraining, time per batch {setting}: disk cache (a later run) + thread loader / plain DataLoader ({r['workers']} workers)",
               r["disk_s_per_batch"], "plain DataLoader", r["plain_s_per_batch"], goal),
    ]
    if r.get("store_s_per_batch"):
        figures.append(Figure("subfore_datapath", f"SubFore pretraining, time per batch {setting}: store (cache: store, {r['workers']} workers) / plain DataLoader",
                              r["store_s_per_batch"], "plain DataLoader", r["plain_s_per_batch"], goal))
    if r.get("step_only_s") and r.get("store_s_per_batch"):
        figures.append(Figure("subfore_datapath", f"store loader + training step / the step alone on a fixed batch ({r['workers']} workers; 1.0: the GPU never waits for data)",
                              r["store_s_per_batch"], "step alone", r["step_only_s"], "<= 1.1"))
    return figures


def _ddp(r: dict) -> list[Figure]:
    setting = f"{r['batch']} x {r['roi']}^3, {r['network']}"
    return [
        Figure("ddp_scaling", f"{r['procs']}-process DDP step on CPU (gloo, 1 thread each) / one process ({r['single_threads']} threads), same batch ({setting})",
               r["ddp_s_per_step"], "one process", r["single_s_per_step"]),
        Figure("ddp_scaling", "DDP gradient error (max abs, first step) / largest gradient: against one process summing the same per-rank losses",
               r["max_grad_error"], "largest gradient", r["max_grad"], "<= 1e-05"),
    ]


def _memory(r: dict) -> list[Figure]:
    size = f"{r['network']}, {r['batch']} x {r['roi']}^3"
    plain, ckpt, budget = r["plain"], r["checkpointing"], r["budget_gib"]
    figures = [
        Figure("training_memory", f"saved activations (GiB, fp32, counted on the meta device), gradient_checkpointing / without ({size})",
               ckpt["saved_activations_gib"], "without", plain["saved_activations_gib"]),
        Figure("training_memory", f"training memory floor with gradient_checkpointing (GiB: activations + 4 x parameters) / {budget:g} GiB card ({size})",
               ckpt["estimated_gib"], f"{budget:g} GiB", budget, "<= 1"),
        Figure("training_memory", f"training memory floor without checkpointing (GiB) / {budget:g} GiB card ({size})", plain["estimated_gib"], f"{budget:g} GiB", budget),
    ]
    for name, entry in (("with gradient_checkpointing", ckpt), ("without checkpointing", plain)):
        if entry.get("peak_gib"):
            figures.append(Figure("training_memory", f"peak GPU memory of an AMP step {name} (GiB, {r['gpu']}) / {budget:g} GiB card ({size})",
                                  entry["peak_gib"], f"{budget:g} GiB", budget, "<= 1" if entry is ckpt else ""))
    return figures


def _speed(r: dict) -> list[Figure]:
    size = f"{r['network']}, {r['batch']} x {r['roi']}^3"
    base = r["variants"]["fp32"]["s_per_step"]
    names = {"amp": f"AMP ({r['amp_dtype']})", "channels_last": f"AMP ({r['amp_dtype']}) + channels_last_3d", "compile": f"AMP ({r['amp_dtype']}) + torch.compile"}
    return [Figure("training_speed", f"SubFore training step, {names[v]} / fp32 ({size})", e["s_per_step"], "fp32 step", base)
            for v, e in r["variants"].items() if v != "fp32"]


def _anatomask(r: dict) -> list[Figure]:
    return [
        Figure("anatomask_masking", f"mask generation ({r['batch']} x {r['patches']} patches) / per-sample NumPy loop", r["vectorized_s"],
               "per-sample NumPy loop", r["per_sample_numpy_s"], f"<= {1 / r['goal_speedup']:.3g}"),
        Figure("anatomask_masking", "mask generation / Algorithm 1 as written (Python)", r["vectorized_s"], "Algorithm 1 in Python", r["algorithm1_python_s"]),
    ]


def _medcontext(r: dict) -> list[Figure]:
    size = f"({r['network']} {r['size']})"
    return [
        Figure("medcontext_step", f"MedContext step, batched student passes (train.json) / supervised step {size}", r["medcontext_s"], "supervised step",
               r["supervised_s"], f"<= {r['bar']}"),
        Figure("medcontext_step", f"MedContext step, separate student passes (demo.json, CPU) / supervised step {size}", r["medcontext_unbatched_s"],
               "supervised step", r["supervised_s"], f"<= {r['bar']}"),
    ]


def _inference(r: dict) -> list[Figure]:
    figures = [Figure("segmentation_inference", f"btcv inference.json on a full CT ({r['network']}) / plain sliding window", r["bundle_s"], "plain sliding window", r["plain_sw_s"])]
    if r.get("onnx_sw_s"):
        figures.append(Figure("segmentation_inference", f"sliding window with ONNX Runtime (CPU provider) / with PyTorch, same network and weights ({r['network']})",
                              r["onnx_sw_s"], "PyTorch sliding window", r["plain_sw_s"]))
    return figures


def _tensorrt(r: dict) -> list[Figure]:
    size = f"{r['network']}, {'x'.join(map(str, r['preprocessed_shape']))} voxels"
    return [
        Figure("tensorrt", f"btcv sliding window with trt_compile ({r['precision']}) / PyTorch AMP ({size})", r["trt_sw_s"], "PyTorch AMP", r["torch_sw_s"]),
        Figure("tensorrt", "voxels whose label differs between TensorRT and PyTorch / all voxels", r["label_disagreement"], "all voxels", 1.0, "<= 0.001"),
    ]


def _ctfm(r: dict) -> list[Figure]:
    s = r["step"]
    figures = [Figure("ctfm", f"contrastive step ({s['views']} views of {'x'.join(map(str, s['crop_size']))}) / plain encoder step", s["contrastive_s"], "plain encoder step", s["plain_s"])]
    e = r.get("embedding", {})
    if "embed_s" in e:
        figures.append(Figure("ctfm", f"scan embedding ({e['patches']} patches, batched) / one patch per pass", e["embed_s"], "one patch per pass", e["baseline_one_patch_per_pass_s"], "<= 1"))
    return figures


def _store(r: dict) -> list[Figure]:
    lo, hi = sorted(r["cases"], key=int)[0], sorted(r["cases"], key=int)[-1]
    big, small = r["cases"][hi], r["cases"][lo]
    crop = f"cold {r['roi']}^3 crop of a {'x'.join(map(str, r['shape']))} 16-bit CT at {r['pixdim']} mm, {hi} cases"
    fp = r["footprint"]
    return [
        Figure("store_datapath", f"{crop}: store (mmap) / PersistentDataset (.pt)", big["store"]["s_per_crop"], "PersistentDataset",
               big["persistent"]["s_per_crop"], "<= 0.2"),
        Figure("store_datapath", f"bytes read from storage per crop (B), {crop}: store / PersistentDataset", big["store"]["bytes_per_crop"],
               "PersistentDataset", big["persistent"]["bytes_per_crop"], "<= 0.2"),
        Figure("store_datapath", f"{crop}: store / NIfTI read + preprocessing (no cache)", big["store"]["s_per_crop"], "NIfTI + preprocessing",
               r["nifti"]["s_per_crop"]),
        Figure("store_datapath", f"store loader peak RSS (MB), {hi} / {lo} cases", big["store"]["peak_rss_mb"], f"{lo} cases",
               small["store"]["peak_rss_mb"], "<= 1.1"),
        Figure("store_datapath", f"loader memory above its start (MB), {hi} cases: store / PersistentDataset", big["store"]["loader_rss_mb"],
               "PersistentDataset", big["persistent"]["loader_rss_mb"]),
        Figure("store_datapath", f"PersistentDataset time per crop, {hi} / {lo} cases", big["persistent"]["s_per_crop"], f"{lo} cases",
               small["persistent"]["s_per_crop"]),
        Figure("store_datapath", f"store time per crop, {hi} / {lo} cases", big["store"]["s_per_crop"], f"{lo} cases", small["store"]["s_per_crop"]),
        Figure("store_datapath", "disk per case (B): store / raw NIfTI (.nii.gz)", fp["store_bytes_per_case"], "raw NIfTI", fp["nifti_bytes_per_case"]),
        Figure("store_datapath", "disk per case (B): store / PersistentDataset (.pt)", fp["store_bytes_per_case"], "PersistentDataset",
               fp["persistent_bytes_per_case"]),
    ]


def _run_start(r: dict) -> list[Figure]:
    n = f"{r['cases']:,} cases"
    return [
        Figure("run_start", f"case list + pre-flight + run identity + store lookup at {n}, from the store's manifest (no file stat) / "
               f"existence + header pre-flight + identity asking the file system (local disk, scaled from {r['baseline_stat_cases']:,})",
               r["store_total_s"], "file system", r["baseline_header_preflight_scaled_s"]),
        Figure("run_start", f"run identity of {n} (sizes from the manifest) / a stat of every file (scaled)", r["store"]["identity_s"],
               "stat of every file", r["baseline_stat_only_scaled_s"]),
    ]


# In order of what a GPU lease must measure first (the suite stops starting benchmarks once --budget_s is spent).
BENCHMARKS = [
    Benchmark("training_speed", "bench_training_speed.py", [], ["--feature_size", "12", "--depths", "1", "1", "1", "1", "--window", "4", "--roi", "64",
                                                                "--batch", "2", "--repeats", "3", "--variants", "fp32", "amp", "channels_last"], _speed,
              cuda_args=["--repeats", "3"], max_s=200),
    Benchmark("training_memory", "bench_training_memory.py", [], [], _memory),
    Benchmark("subfore_masking", "bench_subfore_masking.py", [], ["--roi", "64", "--batch", "2", "--repeats", "3"], _subfore),
    Benchmark("segmentation_inference", "bench_segmentation_inference.py", ["--full_size", "--pixdim", "1.5"], ["--repeats", "1"], _inference, max_s=120),
    Benchmark("tensorrt", "bench_tensorrt.py", [], [], _tensorrt, devices=("cuda",)),
    Benchmark("subfore_datapath", "bench_subfore_datapath.py", ["--train_step"], ["--roi", "64", "--batch", "2", "--batches", "6"], _datapath,
              cuda_args=["--train_step", "--workers", "4"], max_s=150),
    Benchmark("store_datapath", "bench_store.py", [], ["--shape", "160", "256", "256", "--roi", "48", "--cases", "8", "16", "--crops", "16",
                                                       "--bases", "2", "--nifti", "2"], _store,
              cuda_args=["--cases", "8", "16", "--crops", "16", "--bases", "2", "--nifti", "2", "--nifti_crops", "2"], max_s=150),
    Benchmark("medcontext_step", "bench_medcontext_step.py", ["--size", "paper"], ["--size", "tiny", "--repeats", "3"], _medcontext),
    Benchmark("anatomask_masking", "bench_anatomask_masking.py", ["--step"], ["--repeats", "10"], _anatomask),
    Benchmark("ctfm", "bench_ctfm.py", [], ["--crops", "2", "--crop_size", "16", "64", "64", "--repeats", "2", "--skip_embedding"], _ctfm, max_s=120),
    Benchmark("ddp_scaling", "bench_ddp_scaling.py", ["--batch", "4", "--steps", "5"], ["--batch", "2", "--steps", "4"], _ddp, devices=("cpu",)),
    Benchmark("run_start", "bench_run_start.py", [], ["--cases", "10000", "--stat_cases", "2000"], _run_start, devices=("cpu",)),
]


def cross_figures(reports: dict[str, dict]) -> list[Figure]:
    """Figures that need two benchmarks of the same run: can the store's loader keep the GPU's training step fed?"""
    speed, store = reports.get("training_speed"), reports.get("store_datapath")
    if not (speed and store and speed.get("gpu") and "amp" in speed.get("variants", {})):
        return []
    big = store["cases"][max(store["cases"], key=int)]["store"]
    step = speed["variants"]["amp"]["s_per_step"]
    return [Figure("store_datapath", f"cold store crops of one batch ({speed['batch']} x {store['roi']}^3 of a {'x'.join(map(str, store['shape']))} CT) in one "
                   f"loader worker / one AMP training step ({speed['network']}, {speed['gpu']}): the loader workers that keep the GPU busy",
                   big["s_per_crop"] * speed["batch"], "AMP training step", step)]


def last_json(stdout: str) -> dict:
    """The JSON object a benchmark printed (its last top-level ``{...}``; logs may precede it)."""
    start = stdout.rfind("\n{")
    return json.loads(stdout[start + 1 if start >= 0 else stdout.find("{"):])


def run_benchmark(b: Benchmark, quick: bool, device: str, timeout: int) -> tuple[dict, list[Figure], str | None]:
    """Run one benchmark; returns its report, its figures, and the reason it could not run (or None)."""
    cmd = [sys.executable, str(BENCH / b.script), *b.args(quick, device), "--device", device]
    t = time.perf_counter()
    try:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH.parent), os.environ.get("PYTHONPATH")]))}  # `common` from any cwd
        out = subprocess.run(cmd, cwd=BENCH, capture_output=True, text=True, timeout=timeout, check=False, env=env)
    except subprocess.TimeoutExpired as e:
        stdout = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        try:  # a benchmark that reports as it goes (training_speed) keeps what it measured
            report = last_json(stdout)
        except ValueError:
            return {}, [], f"timed out after {timeout} s"
        report.update(wall_s=round(time.perf_counter() - t, 1), timed_out_after_s=timeout)
        return report, b.figures(report), None
    if out.returncode != 0:
        tail = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["no output"]
        return {}, [], f"exit {out.returncode}: {tail[0][:300]}"
    report = last_json(out.stdout)
    report["wall_s"] = round(time.perf_counter() - t, 1)
    return report, b.figures(report), None


def versions() -> dict[str, str]:
    import monai
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "monai": monai.__version__, "platform": platform.platform()}


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


TABLE_HEADER = "| benchmark | figure | value | baseline | baseline value | ratio | goal | met |\n|---|---|---|---|---|---|---|---|"


def figure_rows(result: dict) -> list[tuple[str, str]]:
    """``(benchmark, Markdown table row)`` for every figure of a suite result, then one row per benchmark that did not run."""
    rows = []
    for f in result["figures"]:
        met = {True: "yes", False: "**no**", None: ""}[f["met"]]
        rows.append((f["benchmark"], f"| {f['benchmark']} | {f['figure']} | {f['value']:.4g} | {f['baseline_name']} | {f['baseline']:.4g} | {f['ratio']:.3g} | {f['goal']} | {met} |"))
    rows += [(name, f"| {name} | not run: {reason} | | | | | | |") for name, reason in result["not_run"].items()]
    return rows


def markdown(result: dict) -> str:
    lines = [
        f"Benchmarks, {result['date']}, {result['device_name']} ({'quick' if result['quick'] else 'full'} sizes); "
        f"torch {result['versions']['torch']}, MONAI {result['versions']['monai']}. Values in seconds unless the figure names another quantity.",
        "",
        TABLE_HEADER,
    ]
    lines += [row for _, row in figure_rows(result)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="CPU-sized problems (a few minutes on 2 cores)")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    ap.add_argument("--only", nargs="+", choices=[b.name for b in BENCHMARKS], help="run these benchmarks only")
    ap.add_argument("--output", default=str(BENCH / "results"))
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per benchmark")
    ap.add_argument("--budget_s", type=int, default=0, help="wall seconds for the whole suite (0: none): a benchmark gets what is left, none starts with under 20 s")
    ap.add_argument("--update_docs", action="store_true", help="then write the newest results into the docs' figure blocks (bench/update_docs.py)")
    args = ap.parse_args(argv)
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    result: dict[str, Any] = {
        "date": datetime.date.today().isoformat(), "device": device, "device_name": device_name(device), "quick": args.quick,
        "versions": versions(), "figures": [], "reports": {}, "not_run": {},
    }
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"suite_{result['date']}_{device.split(':')[0]}{'_quick' if args.quick else ''}"
    deadline = time.monotonic() + args.budget_s if args.budget_s else None

    def save() -> None:  # after every benchmark: a lease that ends mid-suite keeps what was measured
        (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")

    for b in BENCHMARKS:
        if args.only and b.name not in args.only:
            continue
        timeout = args.timeout
        if device.split(":")[0] not in b.devices:
            reason = f"a {'/'.join(b.devices)} figure (measured by the suite on that device)"
            report, figures = {}, []
        elif deadline is not None and deadline - time.monotonic() < 20:
            reason, report, figures = f"the suite's --budget_s {args.budget_s} s was spent", {}, []
        else:
            if deadline is not None:
                timeout = int(min(timeout, deadline - time.monotonic(), b.max_s or timeout))
            print(f"[suite] {b.name} (timeout {timeout} s)", flush=True)
            report, figures, reason = run_benchmark(b, args.quick, device, timeout)
        if reason:
            result["not_run"][b.name] = reason
        result["reports"][b.name] = report
        result["figures"] += [asdict(f) for f in figures]
        save()
    result["figures"] += [asdict(f) for f in cross_figures(result["reports"])]
    save()
    table = markdown(result)
    (out / f"{stem}.md").write_text(table)
    print(table)
    print(f"written: {out / stem}.json, .md")
    if args.update_docs:
        import update_docs

        return update_docs.main(["--results", str(out)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
