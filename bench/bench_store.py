"""Random crops from a chunked store (``cache: store``) against PersistentDataset and NIfTI, in one run; prints JSON.

The data path that a 10^4-10^5-volume pretraining needs: a random ``roi^3`` crop of a preprocessed CT
(oriented, resampled to ``pixdim``, HU-windowed), read with a cold page cache -- each case's files are
dropped from the cache before its crop is read (``posix_fadvise(DONTNEED)``), as a dataset far larger
than RAM behaves. Three ways, the same crops:

- ``store``: ``make_dataset(cache="store")``, the blosc2 store read through a memory map: only the
  chunks the crop touches;
- ``persistent``: ``make_dataset(cache="disk")``, MONAI's ``PersistentDataset``: the whole ``.pt``
  case is loaded for each crop (the baseline);
- ``nifti``: no cache: the raw ``.nii.gz`` read and preprocessed for each crop.

Each is measured in a fresh process per case count (``--cases 50 200``): seconds and bytes read from
storage per crop (``/proc/self/io`` ``read_bytes``), and the loader's peak RSS (``VmHWM``, reset after
the imports; ``loader_rss_mb`` is the peak above the RSS before the dataset was built). Also the disk
footprint per case of each form. Cases are ``--bases`` distinct synthetic CTs (the project's phantoms,
resampled to ``--shape`` at ``--spacing`` with CT-like noise, 16-bit), repeated to the case count; the
NIfTI figure uses ``--nifti`` files (its cost per crop does not depend on how many there are).

    python bench/bench_store.py [--shape 300 512 512] [--spacing 0.78 0.78 1.25] [--pixdim 1.5] [--roi 96]
        [--cases 50 200] [--crops 40] [--workdir DIR] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def read_bytes() -> int:
    """Bytes this process has fetched from storage (page cache misses), per Linux's /proc/self/io."""
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("read_bytes"):
                return int(line.split()[1])
    return 0


def memory_mb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak since the last reset) of this process, in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> None:
    """Start ``VmHWM`` again from the current RSS (Linux ``clear_refs``; the peak of imports is not the loader's)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def drop_cache(paths: list[Path]) -> None:
    """Evict these files from the page cache (clean pages only: the files were synced when written)."""
    for p in paths:
        try:
            fd = os.open(p, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def base_volumes(n: int, shape: tuple[int, int, int], seed: int = 0) -> list[np.ndarray]:
    """``n`` synthetic abdominal CTs in HU (int16) of ``shape``: phantoms resampled, with 12 HU noise."""
    from scipy.ndimage import zoom

    from common.data.phantoms import generate_case

    out = []
    rng = np.random.default_rng(seed)
    for i in range(n):
        case = generate_case(seed, i).image.astype(np.float32)
        vol = zoom(case, [s / c for s, c in zip(shape, case.shape)], order=1)
        vol += rng.normal(0.0, 12.0, vol.shape).astype(np.float32)
        out.append(np.clip(np.rint(vol), -1024, 3071).astype(np.int16))
    return out


def preprocessing(pixdim: float) -> list:
    """SubFore's deterministic transforms: load, orient, resample to ``pixdim``, HU window."""
    from monai.transforms import LoadImaged, Orientationd, ScaleIntensityRanged, Spacingd

    return [LoadImaged("image", ensure_channel_first=True, image_only=True), Orientationd("image", axcodes="RAS", labels=None),
            Spacingd("image", pixdim=[pixdim] * 3, mode="bilinear"),
            ScaleIntensityRanged("image", a_min=-175.0, a_max=250.0, b_min=0.1, b_max=1.0, clip=True)]


def pipeline(pixdim: float, roi: int, loader: bool):
    """The preprocessing (or its saved result, ``LoadNpyd``), padding to the ROI, then the random crop."""
    from monai.transforms import Compose, EnsureTyped, RandSpatialCropd, SpatialPadd

    head = preprocessing(pixdim) if loader else [LoadNpyd()]
    head += [SpatialPadd("image", spatial_size=[roi] * 3, value=0.1), EnsureTyped("image", track_meta=False)]
    return Compose([*head, RandSpatialCropd("image", roi_size=[roi] * 3, random_size=False)])


def LoadNpyd():  # noqa: N802 - reads as the transform it builds
    """Stands for load + orient + resample + window: the preprocessed volume, saved once per base as ``.npy``."""
    from monai.transforms import Lambdad

    return Lambdad("image", lambda path: __import__("torch").from_numpy(np.load(path)))


def setup(args: argparse.Namespace, work: Path) -> dict:
    """Write the NIfTI files, the preprocessed bases, the store and the PersistentDataset files."""
    import nibabel as nib
    import torch

    from common.data import make_dataset

    t0 = time.perf_counter()
    bases = base_volumes(args.bases, tuple(args.shape))
    affine = np.diag([*args.spacing, 1.0])
    nifti_dir, npy_dir = work / "nifti", work / "npy"
    nifti_dir.mkdir(parents=True)
    npy_dir.mkdir()
    for i in range(args.nifti):
        nib.save(nib.Nifti1Image(bases[i % len(bases)], affine), nifti_dir / f"ct_{i:03d}.nii.gz")
    from monai.transforms import Compose

    prep = Compose(preprocessing(args.pixdim))
    for b in range(len(bases)):
        d = prep({"image": str(nifti_dir / f"ct_{b:03d}.nii.gz")})
        np.save(npy_dir / f"base_{b}.npy", np.ascontiguousarray(d["image"].numpy()))
    setup_s = time.perf_counter() - t0
    transform = pipeline(args.pixdim, args.roi, loader=False)
    entries = [{"image": str(npy_dir / f"base_{i % len(bases)}.npy"), "copy": i} for i in range(max(args.cases))]  # "copy": distinct cases
    t = time.perf_counter()
    make_dataset(entries, transform, cache="store", cache_dir=work / "store", num_workers=2)
    store_s = time.perf_counter() - t
    t = time.perf_counter()
    persistent = make_dataset(entries, transform, cache="disk", cache_dir=work / "pt")
    for i in range(len(entries)):
        persistent[i]  # writes the case's .pt file
    pt_s = time.perf_counter() - t
    os.sync()
    shape = list(np.load(npy_dir / "base_0.npy", mmap_mode="r").shape)
    del torch
    return {"setup_s": round(setup_s, 1), "store_build_s": round(store_s, 1), "persistent_build_s": round(pt_s, 1), "preprocessed_shape": shape}


def files_of(method: str, work: Path) -> list[Path]:
    root = {"store": work / "store", "persistent": work / "pt", "nifti": work / "nifti"}[method]
    return [p for p in root.rglob("*") if p.is_file()]


def measure(args: argparse.Namespace, work: Path) -> dict:
    """In this (fresh) process: ``--crops`` cold random crops by ``--measure`` over the first ``--n`` cases."""
    from common.data import make_dataset

    import blosc2  # noqa: F401 - imported before the baseline, as a running loader has it
    import nibabel  # noqa: F401

    method, n = args.measure, args.n
    reset_peak()
    baseline = memory_mb("VmRSS")
    if method == "nifti":
        entries = [{"image": str(p)} for p in sorted((work / "nifti").glob("*.nii.gz"))][:n]
        dataset = make_dataset(entries, pipeline(args.pixdim, args.roi, loader=True), cache="none")
    else:
        entries = [{"image": str(work / "npy" / f"base_{i % args.bases}.npy"), "copy": i} for i in range(n)]
        dataset = make_dataset(entries, pipeline(args.pixdim, args.roi, loader=False), cache="store" if method == "store" else "disk",
                               cache_dir=work / ("store" if method == "store" else "pt"))
    dataset.transform.set_random_state(seed=0)
    files = files_of(method, work)
    dataset[0]  # warm-up: lazy imports and first-call set-up are not the data path
    pick = np.random.default_rng(1).integers(0, len(entries), args.crops)
    seconds, nbytes = 0.0, 0
    for i in pick:
        drop_cache(files)
        r0, t = read_bytes(), time.perf_counter()
        crop = dataset[int(i)]
        seconds += time.perf_counter() - t
        nbytes += read_bytes() - r0
        assert tuple(crop["image"].shape[1:]) == (args.roi,) * 3
    peak = memory_mb("VmHWM")
    return {"s_per_crop": seconds / args.crops, "bytes_per_crop": nbytes / args.crops, "peak_rss_mb": peak, "loader_rss_mb": peak - baseline}


def child(args: argparse.Namespace, work: Path, method: str, n: int) -> dict:
    crops = min(args.crops, args.nifti_crops) if method == "nifti" else args.crops
    cmd = [sys.executable, __file__, "--measure", method, "--n", str(n), "--workdir", str(work), "--crops", str(crops),
           "--pixdim", str(args.pixdim), "--roi", str(args.roi), "--bases", str(args.bases)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))})
    if out.returncode != 0:
        raise RuntimeError(f"{method} at {n} cases failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def footprint(work: Path, n: int) -> dict:
    """Bytes per case on disk: raw NIfTI (.nii.gz), the store (arrays + record), PersistentDataset (.pt)."""
    nifti = [p.stat().st_size for p in (work / "nifti").glob("*.nii.gz")]
    store = sum(p.stat().st_size for p in (work / "store").rglob("*") if p.is_file() and p.name != "manifest.json")
    pt = sum(p.stat().st_size for p in (work / "pt").glob("*.pt"))
    return {"nifti_bytes_per_case": float(np.mean(nifti)), "store_bytes_per_case": store / n, "persistent_bytes_per_case": pt / n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", type=int, nargs=3, default=[300, 512, 512], help="raw CT shape (16-bit)")
    ap.add_argument("--spacing", type=float, nargs=3, default=[1.25, 0.78, 0.78], help="raw voxel spacing (mm), per axis of --shape")
    ap.add_argument("--pixdim", type=float, default=1.5)
    ap.add_argument("--roi", type=int, default=96)
    ap.add_argument("--cases", type=int, nargs="+", default=[50, 200])
    ap.add_argument("--crops", type=int, default=40, help="cold random crops timed per method and case count")
    ap.add_argument("--bases", type=int, default=4, help="distinct synthetic CTs (cases repeat them)")
    ap.add_argument("--nifti", type=int, default=6, help="raw NIfTI files for the no-cache figure")
    ap.add_argument("--nifti_crops", type=int, default=10, help="crops timed for the no-cache figure (seconds each at full size)")
    ap.add_argument("--workdir", help="where the files go (default: a temporary folder, removed after)")
    ap.add_argument("--device", default="cpu", help="unused: the data path runs on the CPU")
    ap.add_argument("--measure", choices=("store", "persistent", "nifti"), help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(args, Path(args.workdir))))
        return
    args.nifti = max(args.nifti, args.bases)
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench_store_"))
    try:
        report = {"shape": args.shape, "spacing": args.spacing, "pixdim": args.pixdim, "roi": args.roi, "crops": args.crops, "bases": args.bases,
                  **setup(args, work), "cases": {}}
        for n in sorted(args.cases):
            report["cases"][str(n)] = {m: child(args, work, m, n) for m in ("store", "persistent")}
        report["nifti"] = child(args, work, "nifti", args.nifti)
        report["footprint"] = footprint(work, max(args.cases))
        lo, hi = str(min(args.cases)), str(max(args.cases))
        big = report["cases"][hi]
        report["speedup"] = big["persistent"]["s_per_crop"] / big["store"]["s_per_crop"]
        report["bytes_ratio"] = big["store"]["bytes_per_crop"] / max(1.0, big["persistent"]["bytes_per_crop"])
        report["store_rss_growth"] = big["store"]["peak_rss_mb"] / report["cases"][lo]["store"]["peak_rss_mb"]
        report["goals"] = {"speedup": ">= 5", "bytes_ratio": "<= 0.2", "store_rss_growth": "flat (<= 1.1)"}
        print(json.dumps(report, indent=1))
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
