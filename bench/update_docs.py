"""Write the benchmark suite's latest figures into the docs, so that every figure there comes from a suite run.

A docs file marks where figures go, naming the benchmarks::

    <!-- bench: subfore_masking subfore_datapath -->
    (generated: do not edit)
    <!-- /bench -->

and this fills each block with those benchmarks' figures: for every kind of result (device and
quick/full) in ``bench/results``, each benchmark's figures come from the newest result of that kind
that ran it (a run of one benchmark, ``--only``, does not hide the others' figures); one table per
result file, headed by its file, date, device and versions. ``--check`` changes nothing and exits 1 when a block differs from what the results say
(the test suite runs it, so hand-edited or stale figures fail).

    python bench/update_docs.py [--check] [--results bench/results]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from suite import TABLE_HEADER, figure_rows

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
BLOCK = re.compile(r"(<!-- bench: ([a-z_ ]+) -->\n)(.*?)(<!-- /bench -->)", re.S)


def docs_files() -> list[Path]:
    return [REPO / "README.md", *sorted(REPO.glob("bundles/*/docs/README.md"))]


def latest_results(folder: Path) -> list[tuple[Path, dict]]:
    """Every ``suite_<date>_<device>[_quick].json``, grouped by kind (full sizes first, GPU first), newest first within a kind."""
    results = [(path, json.loads(path.read_text())) for path in sorted(folder.glob("suite_*.json"))]  # ISO dates sort in time order
    results.reverse()
    return sorted(results, key=lambda pr: (pr[1]["quick"], pr[1]["device"] != "cuda"))  # stable: newest first within a kind


def _newest_holding(names: list[str], results: list[tuple[Path, dict]]) -> list[tuple[Path, dict, list[str]]]:
    """For each kind, the newest result that ran each of ``names``: ``(path, result, the names it serves)``."""
    chosen: dict[tuple[str, bool, str], list[str]] = {}
    by_path = {str(p): (p, r) for p, r in results}
    for name in names:
        kinds_done: set[tuple[str, bool]] = set()
        for path, r in results:
            kind = (r["device"], r["quick"])
            if kind in kinds_done or not any(b == name for b, _ in figure_rows(r)):
                continue
            kinds_done.add(kind)
            chosen.setdefault((*kind, str(path)), []).append(name)
    order = {str(p): i for i, (p, _) in enumerate(results)}
    return [(*by_path[k[2]], served) for k, served in sorted(chosen.items(), key=lambda kv: order[kv[0][2]])]


def render(names: list[str], results: list[tuple[Path, dict]]) -> str:
    parts = []
    for path, r, served in _newest_holding(names, results):
        rows = [row for b, row in figure_rows(r) if b in served]
        if not rows:
            continue
        parts.append(
            f"From `bench/results/{path.name}` ({'quick' if r['quick'] else 'full'} sizes), {r['date']}, {r['device_name']}, "
            f"torch {r['versions']['torch']}, MONAI {r['versions']['monai']}; `python bench/suite.py{' --quick' if r['quick'] else ''} --device {r['device']}`:\n\n"
            f"{TABLE_HEADER}\n" + "\n".join(rows) + "\n"
        )
    if not parts:
        return f"No suite result holds {', '.join(names)} yet: run `python bench/suite.py`.\n"
    return "\n".join(parts)


def update(text: str, results: list[tuple[Path, dict]]) -> str:
    return BLOCK.sub(lambda m: m.group(1) + render(m.group(2).split(), results) + m.group(4), text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a docs block is stale")
    ap.add_argument("--results", default=str(RESULTS))
    args = ap.parse_args(argv)
    results = latest_results(Path(args.results))
    stale = []
    for path in docs_files():
        text = path.read_text()
        new = update(text, results)
        if new != text:
            stale.append(path.relative_to(REPO))
            if not args.check:
                path.write_text(new)
    if args.check and stale:
        print("stale benchmark figures (run python bench/update_docs.py): " + ", ".join(map(str, stale)))
        return 1
    print(("updated: " + ", ".join(map(str, stale))) if stale and not args.check else "docs figures match the suite results")
    return 0


if __name__ == "__main__":
    sys.exit(main())
