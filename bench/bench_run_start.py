"""What a training run does with its case list before the first step, at 10^5 cases; prints JSON.

A run resolves its datalist (does every file exist?), runs the pre-flight check, computes its identity
(every file's name and size) and opens its dataset. With ``cache: store`` the store's manifest holds
what preprocessing recorded -- each file's size and pre-flight result -- so none of this touches the
source files. Measured on a generated datalist of ``--cases`` entries (image + label each) and a
store manifest of them, against the same steps asking the file system (``stat`` of every file) on
``--stat_cases`` empty files (the baseline, scaled to ``--cases`` per case).

    python bench/bench_run_start.py [--cases 100000] [--stat_cases 20000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def make_cases(root: Path, n: int, create: bool) -> Path:
    """A datalist of ``n`` image/label pairs under ``root`` (empty files when ``create``)."""
    entries = []
    for i in range(n):
        image, label = root / "imagesTr" / f"{i // 1000:03d}" / f"case_{i:06d}.nii.gz", root / "labelsTr" / f"{i // 1000:03d}" / f"case_{i:06d}.nii.gz"
        if create:
            for p in (image, label):
                p.parent.mkdir(parents=True, exist_ok=True)
                p.touch()
        entries.append({"image": str(image), "label": str(label)})
    path = root / "datalist.json"
    root.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"training": entries}))
    return path


def write_manifest(cache_dir: Path, entries: list[dict], checks) -> None:
    """A store's manifest as preprocessing writes it: every case checked, its files' sizes recorded."""
    from common.data.store import Store, case_key, checks_digest

    store = Store(cache_dir / "store-0123456789abcdef")
    store.write_settings({"settings_hash": "0123456789abcdef" * 4})
    digest = checks_digest(checks)
    store.write_manifest([{"key": case_key(e), "case": e["image"], "sources": [["image", e["image"], 21_000_000], ["label", e["label"], 400_000]],
                           "checks": {"digest": digest, "problems": []}, "shape": [1, 250, 267, 267], "spacing": [1.5, 1.5, 1.5]}
                          for e in entries])


def run_start(datalist: Path, cache_dir: Path | None, checks) -> dict[str, float]:
    """Seconds of each step a run takes before training: datalist, pre-flight, identity, dataset lookup."""
    from common.data.datalist import CaseSource
    from common.runs.identity import case_files, digest

    t0 = time.perf_counter()
    source = CaseSource(datalist=str(datalist), checks=checks, store_dir=str(cache_dir) if cache_dir else "")
    cases = source.cases(["training"])  # datalist, existence, pre-flight
    t1 = time.perf_counter()
    rows = case_files(cases)
    fingerprint = digest(rows)
    t2 = time.perf_counter()
    out = {"cases_and_preflight_s": t1 - t0, "identity_s": t2 - t1, "num_cases": len(cases), "fingerprint": fingerprint[:12]}
    if cache_dir is not None:
        from common.data.store import Store, case_key

        t3 = time.perf_counter()
        manifest = Store(next(cache_dir.glob("store-*"))).manifest()
        missing = sum(case_key(c) not in manifest for c in cases)
        out["store_lookup_s"] = time.perf_counter() - t3
        out["missing"] = missing
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--stat_cases", type=int, default=20_000, help="cases of empty files for the file-system baseline")
    ap.add_argument("--device", default="cpu", help="unused")
    args = ap.parse_args()
    from common.data.case_checks import CaseChecks

    # header-only checks (what a run reads of each file at the least); empty files fail them, so the
    # baseline's report lists every case: it measures the time, not the outcome
    checks = CaseChecks(read_voxels=False, check_labels=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        listed = make_cases(root / "listed", args.cases, create=False)
        write_manifest(root / "cache", json.loads(listed.read_text())["training"], checks)
        stored = run_start(listed, root / "cache", checks)

        from common.data.datalist import CaseSource, load_datalist
        from common.runs.identity import case_files

        on_disk = make_cases(root / "files", args.stat_cases, create=True)
        t = time.perf_counter()
        CaseSource(datalist=str(on_disk), checks=checks).report(["training"])  # existence + header of every file
        case_files(load_datalist(on_disk, ["training"]))
        baseline = time.perf_counter() - t
        t = time.perf_counter()
        case_files(CaseSource(datalist=str(on_disk)).cases(["training"]))  # a fresh run, pre-flight off: stats only
        stat_only = time.perf_counter() - t
    scale = args.cases / args.stat_cases
    report = {
        "cases": args.cases,
        "store": stored,
        "store_total_s": stored["cases_and_preflight_s"] + stored["identity_s"] + stored.get("store_lookup_s", 0.0),
        "baseline_stat_cases": args.stat_cases,
        "baseline_header_preflight_s": baseline,
        "baseline_header_preflight_scaled_s": baseline * scale,
        "baseline_stat_only_s": stat_only,
        "baseline_stat_only_scaled_s": stat_only * scale,
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
