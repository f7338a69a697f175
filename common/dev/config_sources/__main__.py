"""``python -m common.dev.config_sources write|check|stats`` (see :mod:`common.dev.config_sources`)."""

from __future__ import annotations

import json
import sys

import fire

from common.dev.config_sources import SourceError, duplication, stale, write
from common.paths import PACKAGE_PARENT

BUNDLES = PACKAGE_PARENT / "bundles"


class Commands:
    """Write, check or measure the bundle configs made from common/dev/config_sources."""

    def write(self) -> None:
        """Rewrite bundles/*/configs/*.json from their sources; prints the files that changed."""
        for path in write(BUNDLES):
            print(f"wrote {path.relative_to(PACKAGE_PARENT)}")

    def check(self) -> None:
        """Exit 1, listing the files, when a committed config differs from its sources."""
        problems = stale(BUNDLES)
        for p in problems:
            print(p, file=sys.stderr)
        if problems:
            sys.exit(1)
        print("bundle configs match their sources")

    def stats(self) -> None:
        """JSON: source entries written in two or more places, and their share."""
        print(json.dumps(duplication()))


def main() -> None:
    try:
        fire.Fire(Commands)
    except SourceError as e:
        sys.exit(f"config sources: {e}")


if __name__ == "__main__":
    main()
