"""Pre-flight check of a bundle's dataset from the shell, before (or instead of) starting a run.

    python -m common.data.check --config_file bundles/btcv_finetune/configs/train.json \\
        --dataset_dir /data/btcv --datalist /data/btcv/dataset_0.json [--report preflight.json]

Reads the bundle's config (with the same ``--key value`` overrides ``monai.bundle run`` takes), then
reads and checks every case of every list the bundle uses (``train_datalist_keys``,
``val_datalist_keys``, ``datalist_keys``, ``evaluate_datalist_keys``) with the bundle's own
``case_checks``, and prints every problem. Exit status 0: all usable; 1: problems (listed); 2: the
command itself is wrong (unknown config file, bad override).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from common.data.datalist import CaseSource, DatalistError

KEY_IDS = ("train_datalist_keys", "val_datalist_keys", "datalist_keys", "evaluate_datalist_keys")


def parse_values(extra: Sequence[str]) -> dict[str, object]:
    """This command's own ``--key value`` / ``--key=value`` config overrides (what ``argparse`` left over), values parsed
    as JSON when they are; a bare ``--flag`` maps to ''."""
    out: dict[str, object] = {}
    i = 0
    while i < len(extra):
        token = extra[i]
        if token.startswith("--"):
            key, eq, raw = token[2:].partition("=")
            if not eq and i + 1 < len(extra) and not extra[i + 1].startswith("--"):
                raw, i = extra[i + 1], i + 1
            try:
                out[key] = json.loads(raw)
            except json.JSONDecodeError:
                out[key] = raw
        i += 1
    return out


def bundle_source(config_files: Sequence[str], overrides: dict[str, object]) -> tuple[CaseSource, list[str]]:
    """The bundle's case source (with its checks on) and datalist keys, with ``overrides`` applied."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(list(config_files))
    for key, value in overrides.items():
        parser[key] = value
    if "case_source" not in parser:
        raise SystemExit(f"{', '.join(config_files)} defines no 'case_source': not a bundle of this collection, or too old")
    parser["preflight"] = True
    keys: list[str] = []
    for key_id in KEY_IDS:
        if key_id in parser:
            keys += [k for k in parser.get_parsed_content(key_id) if k not in keys]
    return parser.get_parsed_content("case_source"), keys or ["training"]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m common.data.check", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config_file", nargs="+", required=True, help="the bundle's config file(s), merged in order")
    ap.add_argument("--keys", nargs="+", help="datalist lists to check (default: every list the bundle uses)")
    ap.add_argument("--report", help="also write the full report as JSON here")
    args, extra = ap.parse_known_args(argv)
    source, keys = bundle_source(args.config_file, parse_values(extra))
    keys = args.keys or keys
    try:
        report = source.report(keys)
    except DatalistError as e:
        print(f"datalist problem: {e}", file=sys.stderr)
        return 1
    if args.report:
        report.write(args.report)
    if report.problems:
        print(report.summary(limit=10**9))
        return 1
    print(f"All {report.num_cases} cases ({', '.join(keys)}) are usable.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
