"""Pre-flight check of a bundle's dataset from the shell, before (or instead of) starting a run.

    python -m common.data.check --config_file bundles/btcv_finetune/configs/train.json \\
        --dataset_dir /data/btcv --datalist /data/btcv/dataset_0.json [--report preflight.json]

Reads the bundle's config (with the same ``--key value`` overrides ``monai.bundle run`` takes), then
reads and checks every case of every list the bundle uses (``train_datalist_keys``,
``val_datalist_keys``, ``datalist_keys``, ``evaluate_datalist_keys``) with the bundle's own
``case_checks``, and prints every problem. Exit status 0: all usable; 1: problems (listed); 2: the
command itself is wrong (unknown config file; an override naming no config key stops it as it stops ``monai.bundle run``).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

from common.cli import command, read_bundle_config, value_list
from common.data.datalist import CaseSource, DatalistError

KEY_IDS = ("train_datalist_keys", "val_datalist_keys", "datalist_keys", "evaluate_datalist_keys")


def bundle_source(config_file: str | Sequence[str], overrides: Mapping[str, Any]) -> tuple[CaseSource, list[str]]:
    """The bundle's case source (with its checks on) and datalist keys, with ``overrides`` applied."""
    parser = read_bundle_config(config_file, overrides)
    if "case_source" not in parser:
        raise SystemExit(f"{config_file} defines no 'case_source': not a bundle of this collection, or too old")
    parser["preflight"] = True
    keys: list[str] = []
    for key_id in KEY_IDS:
        if key_id in parser:
            keys += [k for k in parser.get_parsed_content(key_id) if k not in keys]
    return parser.get_parsed_content("case_source"), keys or ["training"]


def main(config_file: str | Sequence[str], keys: Sequence[str] | None = None, report: str | None = None, **overrides: Any) -> int:
    """Check every case of the bundle's datalist lists; print the problems (exit status 1) or that all are usable.

    Args:
        config_file: the bundle's config file, or a list of them merged in order (``"['train.json','demo.json']"``).
        keys: a datalist list to check, or a list of them (default: every list the bundle uses).
        report: also write the full report as JSON here.
        overrides: config overrides (``--datalist /data/datalist.json``), checked as ``monai.bundle run``'s workflow checks them.
    """
    source, used = bundle_source(config_file, overrides)
    keys = value_list(keys) or used
    try:
        found = source.report(keys)
    except DatalistError as e:
        print(f"datalist problem: {e}", file=sys.stderr)
        return 1
    if report:
        found.write(report)
    if found.problems:
        print(found.summary(limit=10**9))
        return 1
    print(f"All {found.num_cases} cases ({', '.join(keys)}) are usable.")
    return 0


if __name__ == "__main__":
    sys.exit(command(main))
