"""A medium-protocol comparison (default CT-FM's, SegResNetDS; all 8 labelled phantoms) at two learning rates; prints JSON.

Why it matters: in the 2026-12-06 medium card (bench/results/evidence_medium_2026-12-06_lr5e-3) CT-FM's all-labels
fine-tune of seed 0 ended at 0.06 Dice after its training loss jumped to 28, at the protocol's rate for SegResNetDS
then (5e-3; since this measurement the protocol fine-tunes SegResNetDS at 1e-3).
This runs both arms (scratch, CT-FM pretraining run ``seed mod 2``, as the evidence runner pairs them) for
seeds 0-2 at the protocol's rate and at a lower one, with every other setting of the protocol, and reports
each run's final mean Dice on the 4 held-out phantoms, the largest training loss of its first 50 steps
(the jump: TensorBoard's ``train/loss`` every ``log_interval`` steps, the card's ``peak_loss`` measure; the two
``*finetune_lr*_2026-12-07_cpu.json`` results read it from train.log, which prints step 1 as well), and the paired
difference per rate. The baseline is the first rate (by default 5e-3, the rate that
jumped), in the same run.

Runs are the evidence runner's (``common.experiments.evidence``: its pretraining, datalists and
``bundle_runs.run_one``), one subprocess per run with 1 CPU thread, two at a time; finished runs in
``--output_dir`` are reused. About 45 minutes on 2 cores (12 fine-tunes, 2 pretrainings). Run it from the
repository root, as the evidence runner: the protocol names the real scans relative to it.

    python bench/bench_finetune_lr.py [--rates "[0.005,0.001]"] [--output_dir /tmp/finetune_lr]
    python bench/bench_finetune_lr.py --comparison anatomask_dynunet --rates "[0.01,0.002]"
"""

from __future__ import annotations

import json
import sys
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # `common` when run as python bench/<script>.py

from common.cli import command  # noqa: E402
from common.experiments import bundle_runs, evidence, stats  # noqa: E402
from common.experiments.protocol import read_protocol  # noqa: E402
from common.runs.provenance import machine, software, weights_made_by  # noqa: E402

PROTOCOL = REPO / "common" / "experiments" / "protocols" / "medium.json"
COMPARISON = "ctfm_segresnetds"


def main(rates: tuple[float, ...] = (0.005, 0.001), seeds: tuple[int, ...] = (0, 1, 2), output_dir: str = "/tmp/finetune_lr",
         comparison: str = COMPARISON) -> int:
    """Run (or reuse) the fine-tunes and print the JSON report; the first rate is the baseline. ``comparison``: another
    of the protocol's comparisons (its pretrained encoder is the arm compared with its baseline)."""
    spec = read_protocol(PROTOCOL)
    out = Path(output_dir)
    execution = evidence.Execution(in_process=False, parallel=2, threads=1)  # two runs at a time, 1 thread each
    chosen = next(c for c in spec["comparisons"] if c["name"] == comparison)
    baseline = chosen["baseline"]
    method = next(e for e in chosen["encoders"] if e != baseline)
    name = chosen["encoders"][method]["weights"][len(evidence.PRETRAINED_PREFIX):]
    datalist = evidence.pretraining_datalist(spec, out)
    pretrained = execution.map([partial(evidence.run_pretraining, name, spec["pretraining"][name], datalist, out, execution, s)
                                for s in spec["pretraining_seeds"]])
    weights_by_seed = {arm: evidence.resolve_encoder(chosen["encoders"][arm].get("weights"), {name: pretrained}, seeds) for arm in (baseline, method)}
    bundle_dir, _ = bundle_runs.bundle_config_files(chosen["bundle"])
    jobs = [(rate, arm, seed) for rate in rates for seed in seeds for arm in (baseline, method)]

    def run(job: tuple[float, str, int]) -> dict:
        rate, arm, seed = job
        run_dir = out / "finetune" / comparison / f"lr{rate:g}" / arm / f"seed_{seed}"
        weights = weights_by_seed[arm][seed]
        overrides = {**evidence.finetune_overrides(chosen, chosen["encoders"][arm].get("overrides")), "learning_rate": rate,
                     "cache": "disk", "cache_dir": str(out / "cache")}
        best = bundle_runs.run_one(bundle_dir, chosen["configs"], run_dir, 1.0, seed, weights, overrides, run_dir / "train.log", False, 1)
        per_case = evidence.final_per_case(run_dir / "eval" / "validation_metrics.csv", best["metric"])
        made_by = weights_made_by(run_dir / "models" / "model.pt")
        return {"rate": rate, "arm": arm, "seed": seed, "final_dice": round(sum(per_case) / len(per_case), 4),
                "early_peak_loss": round(evidence.peak_training_loss(run_dir, until=50), 3), "commit": made_by}

    runs = execution.map([partial(run, job) for job in jobs])
    by = {(r["rate"], r["arm"], r["seed"]): r["final_dice"] for r in runs}
    per_rate = {}
    for rate in rates:
        scratch, pre = {s: by[(rate, baseline, s)] for s in seeds}, {s: by[(rate, method, s)] for s in seeds}
        per_rate[f"{rate:g}"] = {f"{baseline}_mean": round(sum(scratch.values()) / len(seeds), 4), f"{method}_mean": round(sum(pre.values()) / len(seeds), 4),
                                 f"{method}_minus_{baseline}": {k: round(v, 4) for k, v in stats.paired_difference(pre, scratch).items()}}
    base = per_rate[f"{rates[0]:g}"]
    report = {"bench": "finetune_lr", "protocol": str(PROTOCOL.relative_to(REPO)), "comparison": comparison, "baseline_rate": rates[0],
              "runs": runs, "per_rate": per_rate,
              **{f"ratio_{arm}_mean_vs_baseline": {k: round(v[f"{arm}_mean"] / base[f"{arm}_mean"], 3) for k, v in per_rate.items()}
                 for arm in (baseline, method)},
              "threads_per_run": 1, "machine": machine(), "software": software()}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(command(main))
