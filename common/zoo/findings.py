"""One check's outcome, as the bundle verifier (:mod:`common.zoo.verify`) and its MONAI Label checks report it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Finding:
    """One check's outcome; ``detail`` says what was wrong, or what was verified."""

    check: str
    ok: bool
    detail: str = ""
