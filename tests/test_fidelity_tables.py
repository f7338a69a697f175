"""Every method bundle's fidelity table is true of its configs (the docs cannot drift).

A table follows a marker line <!-- fidelity-table configs: train.json --> in docs/README.md; its
columns are: setting | paper or seed | reference code (file) | this bundle's default | the other
choice. A claimed value that is an expression (``"$torch.cuda.is_available()"``) is compared as written. In the last two columns each claim is written as a backticked key, "=", and a backticked
JSON value, or after a backticked overlay file and a colon every claim to the end of the cell (e.g.
reference_schedule.json: num_steps = 638400; epoch_length = 399), or as a backticked key followed by "absent". Resolved with MONAI's
ConfigParser from the marker's configs (plus the overlay), the key must hold that value (or not be
set). A claim without an overlay in the last column is a command-line choice: the key must exist.
Every row states its default.
"""

from __future__ import annotations

import functools
import json
import math
import re
from pathlib import Path

import pytest
from conftest import BUNDLES
from monai.bundle import ConfigParser

MARKER = re.compile(r"<!--\s*fidelity-table configs:\s*([^>]+?)\s*-->")
OVERLAY = re.compile(r"`([\w.-]+\.json)`\s*:")
CLAIM = re.compile(r"`([\w#]+)`\s*(?:=\s*`([^`]+)`|absent\b)")
ABSENT = object()
METHOD_BUNDLES = ("subfore_pretrain", "medcontext_unetr", "anatomask_pretrain", "ctfm_pretrain", "ctfm_classification", "ctfm_retrieval")


def tables(readme: Path) -> list[tuple[list[str], list[list[str]]]]:
    """``[(config files, rows)]``; a row is its cells."""
    out, lines = [], readme.read_text().splitlines()
    for i, line in enumerate(lines):
        m = MARKER.search(line)
        if not m:
            continue
        rows = []
        for row in lines[i + 1:]:
            if not row.startswith("|"):
                if rows:
                    break
                continue
            cells = [c.strip() for c in row.strip().strip("|").split("|")]
            if set("".join(cells)) <= set("-: "):
                continue  # the separator
            rows.append(cells)
        out.append(([f.strip() for f in m.group(1).split(",")], rows[1:]))  # rows[0] is the header
    return out


def claims(cell: str) -> list[tuple[str | None, str, object]]:
    """``[(overlay or None, key, value)]`` in one cell; an overlay prefix holds for the rest of the cell."""
    found, overlay = [], None
    for m in re.finditer(rf"{OVERLAY.pattern}|{CLAIM.pattern}", cell):
        if m.group(1):
            overlay = m.group(1)
        else:
            found.append((overlay, m.group(2), json.loads(m.group(3)) if m.group(3) is not None else ABSENT))
    return found


def same(a: object, b: object) -> bool:
    if a is ABSENT or b is ABSENT:
        return a is b
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


@functools.lru_cache(maxsize=None)
def _parser(configs: Path, files: tuple[str, ...]) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(configs / f) for f in files])
    return parser


def resolve(configs: Path, files: list[str], key: str, raw: bool = False) -> object:
    """The parsed value of ``key`` from ``files`` (in order), or :data:`ABSENT`; ``raw``: as written (an expression unevaluated)."""
    parser = _parser(configs, tuple(files))
    if key not in parser:
        return ABSENT
    return parser.get(key) if raw else parser.get_parsed_content(key, instantiate=False)


@pytest.mark.parametrize("bundle", METHOD_BUNDLES)
def test_fidelity_table_is_true_of_the_configs(bundle):
    configs = BUNDLES / bundle / "configs"
    found = tables(BUNDLES / bundle / "docs" / "README.md")
    assert found, f"{bundle}/docs/README.md has no fidelity table (marker <!-- fidelity-table configs: ... -->)"
    checked = 0
    for files, rows in found:
        assert rows, f"{bundle}: empty fidelity table"
        for cells in rows:
            assert len(cells) == 5, f"{bundle}: a fidelity row needs 5 columns: {cells}"
            default = claims(cells[3])
            assert default, f"{bundle}: row '{cells[0]}' states no default as `key` = `value`"
            for column, is_default in ((default, True), (claims(cells[4]), False)):
                for overlay, key, value in column:
                    used = files + ([overlay] if overlay else [])
                    if overlay is None and not is_default:  # a command-line choice: the key must exist
                        assert resolve(configs, files, key) is not ABSENT, f"{bundle} '{cells[0]}': no key {key} in {files}"
                        continue
                    got = resolve(configs, used, key, raw=isinstance(value, str) and value.startswith("$"))  # a claimed expression: as written
                    assert same(got, value), f"{bundle} '{cells[0]}': {key} is {got!r} in {used}, the table says {value!r}"
                    checked += 1
    assert checked >= 5


def test_the_parser_reads_claims_and_overlays():
    cell = "`a` = `1`; `e` absent; `x.json`: `b` = `[1, 2]`, `c` = `\"s\"`; `d` = `true`"
    assert claims(cell) == [(None, "a", 1), (None, "e", ABSENT), ("x.json", "b", [1, 2]), ("x.json", "c", "s"), ("x.json", "d", True)]
    assert same([1.0, 2], (1, 2.0)) and not same(True, 1) and not same(0.1, 0.2)
