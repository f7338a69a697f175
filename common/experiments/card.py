"""The evidence card: tables, Markdown and plots from the runs of :mod:`common.experiments.evidence`.

``runs.csv`` (every run), ``summary.csv`` and ``README.md`` (means with 95% t intervals over seeds,
bootstrap intervals over held-out cases, and each encoder's paired difference to the comparison's
baseline per fraction), ``finetune.png`` and ``probes.png``, and ``protocol.json`` with each
encoder's provenance.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from common.experiments import stats
from common.io import atomic_write, atomic_write_text

RUN_FIELDS = ["comparison", "kind", "encoder", "fraction", "seed", "value", "per_case", "best_value", "peak_loss", "source", "made_by"]

#: a fine-tuning run whose largest training loss is over this many times its comparison's median peak
#: diverged for a while (measured on the medium card, 2026-12-06/07: runs that jumped peaked at 21-40 and
#: ended with dead classes, the others at 2.5-7.2; at a stable rate 4.8-6.1)
UNSTABLE_PEAK_RATIO = 3.0


def _peak(row: Mapping[str, Any]) -> float:
    value = row.get("peak_loss")
    return math.nan if value in (None, "") else float(value)


def unstable_runs(rows: Sequence[Mapping[str, Any]], ratio: float = UNSTABLE_PEAK_RATIO) -> tuple[list[dict], dict[str, float]]:
    """Fine-tuning runs whose ``peak_loss`` exceeds ``ratio`` x the median peak of their comparison's runs
    (all encoders, fractions and seeds), and each comparison's median: ``([{comparison, encoder,
    fraction, seed, value, peak_loss}], {comparison: median})``. Runs without a recorded peak are left out."""
    peaks: dict[str, list[float]] = {}
    for r in rows:
        if r["kind"].startswith("finetune") and not math.isnan(_peak(r)):
            peaks.setdefault(r["comparison"], []).append(_peak(r))
    medians = {c: statistics.median(v) for c, v in peaks.items()}
    flagged = [{k: r[k] for k in ("comparison", "encoder", "fraction", "seed", "value")} | {"peak_loss": _peak(r)} for r in rows
               if r["kind"].startswith("finetune") and r["comparison"] in medians and _peak(r) > ratio * medians[r["comparison"]]]
    return flagged, medians


def csv_text(rows: Sequence[Mapping[str, Any]], fields: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def summarize(rows: Sequence[Mapping[str, Any]], baselines: Mapping[str, str]) -> list[dict]:
    """One row per (comparison, kind, encoder, fraction): mean and 95% t interval over seeds, bootstrap
    interval over the held-out cases (each case's value averaged over seeds), and the paired difference
    to the comparison's baseline over the seeds both have."""
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["comparison"], r["kind"], r["encoder"], float(r["fraction"])), []).append(r)
    out = []
    for (comparison, kind, encoder, fraction), rs in groups.items():
        by_seed = {int(r["seed"]): float(r["value"]) for r in rs}
        seeds = stats.t_interval(list(by_seed.values()))
        row = {"comparison": comparison, "kind": kind, "encoder": encoder, "fraction": fraction, "seeds": seeds["n"],
               "mean": seeds["mean"], "seed_low": seeds["low"], "seed_high": seeds["high"]}
        peaks = [p for p in map(_peak, rs) if not math.isnan(p)]
        if peaks:
            row["peak_loss"] = max(peaks)
        per_case = [json.loads(r["per_case"]) for r in rs if r.get("per_case")]
        if per_case and all(len(c) == len(per_case[0]) for c in per_case):
            case_means = [sum(c[i] for c in per_case) / len(per_case) for i in range(len(per_case[0]))]
            boot = stats.bootstrap_interval(case_means)
            row |= {"cases": boot["n"], "case_low": boot["low"], "case_high": boot["high"]}
        base = baselines.get(comparison)
        if base and base != encoder and (comparison, kind, base, fraction) in groups:
            base_by_seed = {int(r["seed"]): float(r["value"]) for r in groups[(comparison, kind, base, fraction)]}
            diff = stats.paired_difference(by_seed, base_by_seed)
            shared = sorted(set(by_seed) & set(base_by_seed))
            detectable = stats.detectable_difference([base_by_seed[s] for s in shared], n=diff["n"],
                                                     differences=[by_seed[s] - base_by_seed[s] for s in shared])
            row |= {"vs": base, "diff": diff["mean"], "diff_low": diff["low"], "diff_high": diff["high"], "detectable": detectable,
                    "verdict": stats.verdict(diff, detectable)}
        out.append(row)
    return out


SUMMARY_FIELDS = ["comparison", "kind", "encoder", "fraction", "seeds", "mean", "seed_low", "seed_high", "cases", "case_low", "case_high",
                  "vs", "diff", "diff_low", "diff_high", "detectable", "verdict", "peak_loss"]


def _fmt(value: Any) -> str:
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def stability_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The card's training-stability paragraph (:func:`unstable_runs`); empty when no run recorded its losses."""
    flagged, medians = unstable_runs(rows)
    if not medians:
        return ""
    lines = ["## Training stability", "",
             f"`peak_loss` (runs.csv; summary.csv: the largest over seeds) is the largest training loss a fine-tuning run logged. A run "
             f"whose peak is over {UNSTABLE_PEAK_RATIO:g}x its comparison's median peak diverged for a while, and its final score "
             "measures that more than its initial weights. Median peaks: " + ", ".join(f"{c} {m:.2f}" for c, m in medians.items()) + ".", ""]
    if not flagged:
        return "\n".join(lines + ["No run's peak is over that bar.", ""])
    lines += [f"- {r['comparison']}, {r['encoder']}, fraction {float(r['fraction']):g}, seed {r['seed']}: peak {r['peak_loss']:.1f}, "
              f"final {float(r['value']):.3f}" for r in flagged]
    return "\n".join(lines + ["", "Lower the comparison's learning rate (or lengthen its warm-up) before reading its differences.", ""])


def conditions(absent: Mapping[str, Sequence[str]] | None, made_by: Sequence[str] | None) -> list[str]:
    """What the card's README says under the protocol's description about how its runs were made: the protocol's real
    files that were absent (``absent``, :func:`common.experiments.evidence.absent_scans`; the description assumes
    them), and the versions of the collection's code that made the runs (``made_by``,
    :func:`common.runs.provenance.code_version`; ``""`` for runs that did not record theirs). Nothing for what a card
    made before these were recorded does not know (``None``)."""
    lines = []
    if absent:
        lines += ["**Absent when this card was made, so not in its runs** (the description assumes them): "
                  + "; ".join(f"{where}: {', '.join(files)}" for where, files in absent.items()), ""]
    known = [v for v in made_by or () if v]
    if made_by and not known:
        lines += ["Which version of the collection's code made the runs is not recorded (they ran outside a git checkout).", ""]
    elif len(known) == 1 and len(made_by) == 1 and not known[0].endswith("+changes"):
        lines += [f"Every run (pretraining, probes, fine-tuning) was made by the collection's code at commit {known[0]}.", ""]
    elif made_by:
        unknown = " and by code that was not recorded" if len(known) < len(made_by) else ""
        lines += [f"**Made by more than one version of the code, or by uncommitted changes**: {', '.join(known)}{unknown} "
                  "(`made_by` in runs.csv and in protocol.json's encoder records). Check that what changed "
                  "between them touches no training or scoring path before reading the differences.", ""]
    return lines


def markdown(summary: Sequence[Mapping[str, Any]], protocol: Mapping[str, Any], notes: Sequence[str] = ()) -> str:
    """The card's table: one line per summary row; ``notes``: lines under the protocol's description (:func:`conditions`)."""
    lines = [f"# Evidence card: protocol `{protocol.get('name', '?')}`", "",
             protocol.get("description", ""), "", *notes,
             f"Seeds {protocol.get('seeds')}, labelled fractions {protocol.get('fractions')}. Intervals are 95%: Student t over seeds, "
             "percentile bootstrap over the held-out cases (each case averaged over seeds); the paired difference is taken per seed "
             "(same split, same seed) against the comparison's baseline. Fine-tuning is scored by the final model's mean Dice on the "
             "held-out cases (not the best validation epoch, which would be chosen on those same cases). Probes: a linear voxel probe "
             "(Dice) and a k-NN patch probe (balanced accuracy) on the frozen encoder; `raw_intensity` is the floor. "
             "A difference is resolved when its interval excludes 0; otherwise the card gives the smallest difference this protocol "
             "would resolve 8 times in 10 ((t_0.975 + t_0.8) x s / sqrt(seeds), s the larger of sqrt(2) x the baseline's spread over "
             "seeds and the observed differences' spread), so a null "
             "result reads as \"not detectable at this size\" below that figure, not as \"no effect\".", "",
             *([protocol["real_check"].get("description", ""), ""] if protocol.get("real_check") else []),
             *[line for c in protocol.get("real_checks", []) for line in (f"`real_{c['name']}_*` rows: {c.get('description', '')}", "")],
             *([f"Pretraining seeds {protocol['pretraining_seeds']}: fine-tuning seed number i starts from pretraining run i mod "
                f"{len(protocol['pretraining_seeds'])}, so each seed is a whole replicate (pretraining, split, fine-tuning) and the "
                "intervals over seeds include the pretraining's own variance.", ""] if len(protocol.get("pretraining_seeds", [])) > 1 else []),
             "| comparison | like for like? |", "|---|---|",
             *[f"| {c['name']} | {c.get('like_for_like', 'not stated')} |" for c in protocol.get("comparisons", [])], "",
             "| comparison | measure | encoder | labelled fraction | seeds | mean | 95% over seeds | 95% over cases | paired difference to baseline (95%) | resolved? |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in summary:
        seed_ci = f"[{_fmt(r.get('seed_low'))}, {_fmt(r.get('seed_high'))}]"
        case_ci = f"[{_fmt(r['case_low'])}, {_fmt(r['case_high'])}]" if not math.isnan(r.get("case_low", math.nan)) else "—"
        diff = f"{r['diff']:+.3f} [{_fmt(r['diff_low'])}, {_fmt(r['diff_high'])}] vs {r['vs']}" if "diff" in r else "—"
        lines.append(f"| {r['comparison']} | {r['kind']} | {r['encoder']} | {r['fraction']:g} | {r['seeds']} | {_fmt(r['mean'])} | {seed_ci} | {case_ci} | {diff} "
                     f"| {r.get('verdict', '—')} |")
    return "\n".join(lines) + "\n"


def plot(summary: Sequence[Mapping[str, Any]], out: Path) -> list[Path]:
    """``finetune.png`` (metric vs labelled fraction with seed intervals, one panel per comparison) and
    ``probes.png`` (probe scores per encoder with seed intervals)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    comparisons = list(dict.fromkeys(r["comparison"] for r in summary))
    for name, select in (("finetune", lambda k: k.startswith("finetune")), ("probes", lambda k: "probe" in k)):
        rows = [[(c, k) for k in dict.fromkeys(r["kind"] for r in summary if r["comparison"] == c and select(r["kind"]))] for c in comparisons]
        rows = [row for row in rows if row]
        if not rows:
            continue
        if name == "finetune":  # one panel per comparison: a single row reads best
            rows = [[p for row in rows for p in row]]
        ncols = max(len(row) for row in rows)
        fig, axes = plt.subplots(len(rows), ncols, figsize=(4.2 * ncols, 3.6 * len(rows)), squeeze=False)
        for axes_row, row in zip(axes, rows):
            for ax in axes_row[len(row):]:
                ax.set_visible(False)
        for ax, (c, k) in ((ax, p) for axes_row, row in zip(axes, rows) for ax, p in zip(axes_row, row)):
            rs = [r for r in summary if r["comparison"] == c and r["kind"] == k]
            encoders = list(dict.fromkeys(r["encoder"] for r in rs))
            for x, e in enumerate(encoders):
                er = sorted((r for r in rs if r["encoder"] == e), key=lambda r: r["fraction"])
                lo = [r["mean"] - r["seed_low"] if not math.isnan(r["seed_low"]) else 0 for r in er]
                hi = [r["seed_high"] - r["mean"] if not math.isnan(r["seed_high"]) else 0 for r in er]
                if name == "finetune":
                    ax.errorbar([100 * r["fraction"] for r in er], [r["mean"] for r in er], yerr=[lo, hi], marker="o", capsize=3, label=e)
                else:
                    ax.bar(x, er[0]["mean"], yerr=[[lo[0]], [hi[0]]], capsize=3, label=e)
            if name == "probes":
                ax.set_xticks(range(len(encoders)), encoders, rotation=30, ha="right", fontsize=7)
            else:
                ax.set_xlabel("labelled training cases (%)")
                ax.legend(fontsize=7)
            ax.set_title(f"{c}\n{k}", fontsize=8)
            ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out / f"{name}.png"
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
        plt.close(fig)
        written.append(path)
    return written


CURVE_FIELDS = ["comparison", "encoder", "fraction", "seed", "iteration", "value"]


def plot_learning_curves(curves: Sequence[Mapping[str, Any]], out: Path) -> Path:
    """``learning_curve.png``: the baseline's validation metric against fine-tuning iterations, mean over
    seeds (min-max shaded), one line per labelled fraction, one panel per comparison."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    comparisons = list(dict.fromkeys(c["comparison"] for c in curves))
    fig, axes = plt.subplots(1, len(comparisons), figsize=(4.2 * len(comparisons), 3.4), squeeze=False)
    for ax, name in zip(axes[0], comparisons):
        rs = [c for c in curves if c["comparison"] == name]
        for fraction in sorted({float(c["fraction"]) for c in rs}):
            by_it: dict[int, list[float]] = {}
            for c in rs:
                if float(c["fraction"]) == fraction:
                    by_it.setdefault(int(c["iteration"]), []).append(float(c["value"]))
            its = sorted(by_it)
            ax.plot(its, [sum(by_it[i]) / len(by_it[i]) for i in its], marker=".", label=f"{100 * fraction:g}% labelled")
            ax.fill_between(its, [min(by_it[i]) for i in its], [max(by_it[i]) for i in its], alpha=0.2)
        ax.set_title(f"{name}: {rs[0]['encoder']}", fontsize=8)
        ax.set_xlabel("fine-tuning iteration")
        ax.set_ylabel("validation mean Dice")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "learning_curve.png"
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)
    return path


def write_card(card: Path, rows: Sequence[Mapping[str, Any]], protocol: Mapping[str, Any], provenance: Mapping[str, Any],
               baselines: Mapping[str, str], curves: Sequence[Mapping[str, Any]] = (), execution: Mapping[str, Any] | None = None,
               absent: Mapping[str, Sequence[str]] | None = None) -> Path:
    """Write the card's summary, Markdown, protocol record and plots into ``card`` (``runs.csv`` is the runner's;
    ``curves``: the baselines' learning curves, :func:`common.experiments.evidence.learning_curves`; ``execution``:
    how the runs were executed, and ``absent``: the protocol's real files that were not there, both recorded in
    ``protocol.json``; ``absent`` ``None``: not known, e.g. a card made before it was recorded)."""
    summary = summarize(rows, baselines)
    atomic_write_text(card / "summary.csv", csv_text(summary, SUMMARY_FIELDS))
    if curves:
        atomic_write_text(card / "learning_curve.csv", csv_text(curves, CURVE_FIELDS))
        plot_learning_curves(curves, card)
    stability = stability_markdown(rows)
    atomic_write_text(card / "README.md", markdown(summary, protocol, conditions(absent, (execution or {}).get("made_by"))) + ("\n" + stability if stability else "") + (
        "\n![learning curve](learning_curve.png)\n\nThe baseline's validation mean Dice during fine-tuning (`learning_curve.csv`): "
        "the fine-tuning length was chosen where this curve flattens with all labels.\n" if curves else ""))
    atomic_write_text(card / "protocol.json", json.dumps({"protocol": protocol, "encoders": provenance,
                                                          **({"execution": dict(execution)} if execution else {}),
                                                          **({"absent": dict(absent)} if absent is not None else {})}, indent=1))
    plot(summary, card)
    return card


def rewrite_card(card: str | Path) -> Path:
    """Write a finished card again from its own ``runs.csv`` and ``protocol.json`` (no run is repeated),
    e.g. after the card's format changed: ``python -m common.experiments.card bench/results/evidence_small``."""
    card = Path(card)
    with open(card / "runs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    curves = []
    if (card / "learning_curve.csv").is_file():
        with open(card / "learning_curve.csv", newline="") as f:
            curves = list(csv.DictReader(f))
    record = json.loads((card / "protocol.json").read_text())
    protocol = record["protocol"]
    return write_card(card, rows, protocol, record.get("encoders", {}), {c["name"]: c["baseline"] for c in protocol.get("comparisons", [])},
                      curves, record.get("execution"), record.get("absent"))


if __name__ == "__main__":
    import fire

    fire.Fire(rewrite_card)
