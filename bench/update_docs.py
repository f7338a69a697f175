"""Write the benchmark suite's latest figures into the docs, so that every figure there comes from a suite run.

A docs file marks where figures go, naming the benchmarks::

    <!-- bench: subfore_masking subfore_datapath -->
    (generated: do not edit)
    <!-- /bench -->

and this fills each block with those benchmarks' figures from the newest suite result of every kind
(device and quick/full) in ``bench/results``: one table per result, headed by its file, date, device
and versions. ``--check`` changes nothing and exits 1 when a block differs from what the results say
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
    """The newest ``suite_<date>_<device>[_quick].json`` of each device and mode, full sizes first."""
    newest: dict[tuple[str, bool], tuple[Path, dict]] = {}
    for path in sorted(folder.glob("suite_*.json")):  # ISO dates sort in time order
        result = json.loads(path.read_text())
        newest[(result["device"], result["quick"])] = (path, result)
    return [newest[k] for k in sorted(newest, key=lambda k: (k[1], k[0] != "cuda"))]


def render(names: list[str], results: list[tuple[Path, dict]]) -> str:
    parts = []
    for path, r in results:
        rows = [row for b, row in figure_rows(r) if b in names]
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
