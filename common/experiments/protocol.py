"""Reading an evidence protocol: its JSON checked before anything runs, and the files it names.

A protocol is plain JSON (``common/experiments/protocols/``), so a misspelt key (``"fractons"``,
``"pretraining_seed"``) would otherwise be ignored and its default used in silence. It is validated
against ``protocol.schema.json`` (jsonschema, as MONAI validates bundle metadata) and against the
references JSON Schema cannot express (a comparison's baseline is one of its encoders; a
``pretraining:<name>`` encoder names one of the protocol's pretrainings). Settings inside
``overrides`` are the bundles' and are checked by the bundle workflow when each run starts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from common.cli import CommandLineError
from common.paths import PACKAGE_PARENT

SCHEMA_PATH = Path(__file__).with_name("protocol.schema.json")
PRETRAINED_PREFIX = "pretraining:"


def protocol_file(path: str) -> Path:
    """A file a protocol names: absolute, or relative to the repository root (where the README's
    commands run), whatever the working directory, so a card made from elsewhere reads the same scans."""
    return Path(path) if Path(path).is_absolute() else PACKAGE_PARENT / path


def protocol_problems(spec: Any) -> list[str]:
    """Every problem of a protocol (``where: what``), empty when it is valid."""
    import jsonschema

    validator = jsonschema.Draft7Validator(json.loads(SCHEMA_PATH.read_text()))
    problems = [f"{'/'.join(map(str, e.absolute_path)) or 'top level'}: {e.message}"
                for e in sorted(validator.iter_errors(spec), key=lambda e: list(map(str, e.absolute_path)))]
    if problems:
        return problems
    for i, c in enumerate(spec["comparisons"]):
        if c["baseline"] not in c["encoders"]:
            problems.append(f"comparisons/{i}/baseline: {c['baseline']!r} is not one of its encoders {sorted(c['encoders'])}")
        for name, e in c["encoders"].items():
            w = e.get("weights") or ""
            if w.startswith(PRETRAINED_PREFIX) and w[len(PRETRAINED_PREFIX):] not in spec.get("pretraining", {}):
                problems.append(f"comparisons/{i}/encoders/{name}/weights: {w!r} names no pretraining of the protocol "
                                f"(its pretrainings: {sorted(spec.get('pretraining', {}))})")
    names = [c["name"] for c in spec["comparisons"]]
    if len(set(names)) < len(names):
        problems.append(f"comparisons: names repeat ({names}); each names its runs' folder")
    return problems


def read_protocol(path: str | Path) -> dict[str, Any]:
    """The protocol at ``path``, checked (:func:`protocol_problems`).

    Raises:
        CommandLineError: naming the file and each problem (a command ends with status 2, nothing run).
    """
    try:
        spec = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CommandLineError(f"--protocol {path}: {e}") from e
    if problems := protocol_problems(spec):
        raise CommandLineError(f"--protocol {path} is not a valid protocol ({SCHEMA_PATH.name}): " + "; ".join(problems[:10]))
    return spec
