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
from common.data.preflight import CaseChecks, preflight

KEY_IDS = ("train_datalist_keys", "val_datalist_keys", "datalist_keys", "evaluate_datalist_keys")


def parse_overrides(extra: Sequence[str]) -> dict[str, object]:
    """``--key value`` pairs as ``monai.bundle run`` reads them (values parsed as JSON when they are)."""
    if len(extra) % 2 or any(not k.startswith("--") for k in extra[::2]):
        raise SystemExit(f"overrides must be '--key value' pairs, got: {' '.join(extra)}")
    out: dict[str, object] = {}
    for key, value in zip(extra[::2], extra[1::2]):
        try:
            out[key[2:]] = json.loads(value)
        except json.JSONDecodeError:
            out[key[2:]] = value
    return out


def bundle_source(config_files: Sequence[str], overrides: dict[str, object]) -> tuple[CaseSource, CaseChecks, list[str]]:
    """The bundle's case source, checks and datalist keys, with ``overrides`` applied."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(list(config_files))
    for key, value in overrides.items():
        parser[key] = value
    for needed in ("case_source", "case_checks"):
        if needed not in parser:
            raise SystemExit(f"{', '.join(config_files)} defines no '{needed}': not a bundle of this collection, or too old")
    parser["preflight"] = True
    keys: list[str] = []
    for key_id in KEY_IDS:
        if key_id in parser:
            keys += [k for k in parser.get_parsed_content(key_id) if k not in keys]
    return parser.get_parsed_content("case_source"), parser.get_parsed_content("case_checks"), keys or ["training"]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m common.data.check", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config_file", nargs="+", required=True, help="the bundle's config file(s), merged in order")
    ap.add_argument("--keys", nargs="+", help="datalist lists to check (default: every list the bundle uses)")
    ap.add_argument("--report", help="also write the full report as JSON here")
    args, extra = ap.parse_known_args(argv)
    source, checks, keys = bundle_source(args.config_file, parse_overrides(extra))
    keys = args.keys or keys
    try:
        items = source.all_cases(keys)
    except DatalistError as e:
        print(f"datalist problem: {e}", file=sys.stderr)
        return 1
    report = preflight(items, checks)
    if args.report:
        report.write(args.report)
    if report.problems:
        print(report.summary(limit=10**9))
        return 1
    print(f"All {report.num_cases} cases ({', '.join(keys)}) are usable.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
