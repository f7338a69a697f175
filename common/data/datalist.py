"""Where a bundle's cases come from: a Decathlon-style datalist, a folder of NIfTI, or the phantoms.

Every bundle calls :func:`resolve_cases` with its ``dataset_dir`` / ``datalist`` settings:

- ``datalist`` set: a Decathlon-style JSON (``{"training": [{"image": ..., "label": ...}], ...}``);
  relative paths are resolved against ``dataset_dir`` if given, else the JSON's own folder.
- only ``dataset_dir`` set: its ``dataset.json`` if present, else every ``*.nii``/``*.nii.gz`` and every
  DICOM series folder below it (image-only, for pretraining on unlabelled scans, or inference).
- neither: the embedded synthetic phantoms (:mod:`common.data.phantoms`), and the log says so.

Every file named in the chosen entries is checked up front, so a typo fails in a second with the
datalist, entry and path in the message (all missing files at once), not an hour into caching. With
``checks`` the cases are also read and validated (:mod:`common.data.case_checks`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from common.data.brats_phantoms import ensure_brats_phantom_dataset
from common.file_sizes import file_size, forget_sizes
from common.data.phantoms import ensure_phantom_dataset
from common.data.case_checks import (
    CaseChecks,
    PreflightReport,
    case_name,
    checked_cases,
    is_nifti,
    preflight,
)
from common.data.store import recorded_checks
from common.data.triage_phantoms import ensure_triage_phantom_dataset

logger = logging.getLogger(__name__)

FILE_KEYS = ("image", "label")
PHANTOM_KINDS = {"ct": ensure_phantom_dataset, "brats": ensure_brats_phantom_dataset, "ct_triage": ensure_triage_phantom_dataset}
PHANTOM_NAMES = {"ct": "CT", "brats": "brain-tumour MRI", "ct_triage": "CT triage (normal / haemorrhage)"}


class DatalistError(ValueError):
    """A datalist that cannot be used; the message names the file, entry and field."""


def _resolve_entry(entry: object, base_dir: Path, where: str) -> tuple[dict, list[str]]:
    """The entry with absolute paths, and a message per named file that does not exist."""
    if isinstance(entry, str):  # Decathlon "test" lists are plain paths
        entry = {"image": entry}
    if not isinstance(entry, dict) or "image" not in entry:
        raise DatalistError(f"{where}: expected an object with an 'image' field, got {entry!r}")
    out, missing = dict(entry), []
    for key in FILE_KEYS:
        if key not in out:
            continue
        values = out[key] if isinstance(out[key], list) else [out[key]]
        if key == "label" and values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            continue  # a class label (classification), not a file
        resolved = []
        for v in values:
            if not isinstance(v, str):
                raise DatalistError(f"{where}: field '{key}' must be a path string{' or numbers (class labels)' if key == 'label' else ''}, got {v!r}")
            p = Path(v) if os.path.isabs(v) else base_dir / v
            if file_size(p) < 0 and not p.is_dir():  # a file (size memoised for the run identity) or a DICOM folder
                missing.append(f"{where}: field '{key}' names a file that does not exist: {p}")
            resolved.append(str(p))
        out[key] = resolved if isinstance(out[key], list) else resolved[0]
    return out, missing


def load_datalist(
    datalist: str | os.PathLike,
    keys: Sequence[str] = ("training",),
    base_dir: str | os.PathLike | None = None,
    check_files: bool = True,
) -> list[dict]:
    """Read the entries under ``keys`` from a Decathlon-style JSON and resolve their paths.

    Args:
        check_files: raise if any named file is missing, listing all of them (``False`` leaves that to
            the pre-flight check, which can also skip such cases).
    Raises:
        DatalistError: missing JSON, unreadable JSON, missing key, malformed entry, or missing files.
    """
    path = Path(datalist)
    if not path.is_file():
        raise DatalistError(f"datalist {path} does not exist")
    try:
        content = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatalistError(f"datalist {path} is not valid JSON: {e}") from e
    if not isinstance(content, dict):
        raise DatalistError(f"datalist {path} must be a JSON object with lists such as 'training', got a {type(content).__name__}")
    base = Path(base_dir) if base_dir else path.parent
    items: list[dict] = []
    missing: list[str] = []
    for key in keys:
        if key not in content:
            raise DatalistError(f"datalist {path} has no '{key}' list (it has: {sorted(content)}); set the bundle's datalist keys to one of those")
        if not isinstance(content[key], list):
            raise DatalistError(f"datalist {path}: '{key}' must be a list of cases, got a {type(content[key]).__name__}")
        for i, entry in enumerate(content[key]):
            item, gone = _resolve_entry(entry, base, f"datalist {path}, '{key}' entry {i}")
            items.append(item)
            missing += gone
    if missing and check_files:
        raise DatalistError(f"{len(missing)} file(s) named in the datalist do not exist:\n  " + "\n  ".join(missing))
    return items


def select_fold(items: list[dict], fold: int | None, part: str) -> list[dict]:
    """Cross-validation split on the entries' ``"fold"`` field.

    ``part="train"`` keeps entries whose fold differs from ``fold``; ``part="val"`` those equal to it.
    ``fold=None`` returns ``items`` unchanged.
    """
    if fold is None or fold < 0:
        return items
    if part not in ("train", "val"):
        raise ValueError(f"part must be 'train' or 'val', got {part!r}")
    missing = [i for i, it in enumerate(items) if "fold" not in it]
    if missing:
        raise DatalistError(f"fold {fold} requested but entries {missing[:5]} have no 'fold' field (see make_datalist --num_folds)")
    return [it for it in items if (it["fold"] == fold) == (part == "val")]


def find_nifti(folder: str | os.PathLike) -> list[Path]:
    """All NIfTI files below ``folder``, sorted."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and is_nifti(p))


def find_images(folder: str | os.PathLike) -> list[Path]:
    """NIfTI files and DICOM series folders (:func:`common.data.dicom.find_dicom_series`) below ``folder``, sorted."""
    from common.data.dicom import find_dicom_series

    return sorted([*find_nifti(folder), *find_dicom_series(folder)])


def resolve_cases(
    dataset_dir: str | os.PathLike | None = "",
    datalist: str | os.PathLike | None = "",
    keys: Sequence[str] = ("training",),
    phantom_dir: str | os.PathLike | None = None,
    num_phantoms: int = 16,
    num_phantom_validation: int = 4,
    phantom_kind: str = "ct",
    checks: CaseChecks | None = None,
    on_bad_case: str = "stop",
    report_dir: str | os.PathLike | None = None,
    skipped: dict[str, list[str]] | None = None,
    check_files: bool | None = None,
    recorded: dict[str, list[str]] | None = None,
) -> list[dict]:
    """The cases a bundle should use (see the module docstring for the rules).

    ``phantom_kind`` picks the embedded default: ``"ct"`` (abdominal CT with the 13 BTCV organs) or
    ``"brats"`` (4-sequence brain-tumour MRI, :mod:`common.data.brats_phantoms`).

    With ``checks`` every case is read and checked first (:mod:`common.data.case_checks`): all problems
    are reported at once, and ``on_bad_case="skip"`` drops the bad cases instead of stopping; the
    JSON report goes to ``report_dir/preflight_<keys>.json`` and the skipped cases into ``skipped``. Every case gets a ``case`` field (its
    image path) unless it has one, so logs can name it where image metadata is not tracked.
    ``check_files`` (default: only without ``checks``) raises on missing files, listing all of them.
    ``recorded``: pre-flight results already known (store key -> problems, from a store's manifest).
    """
    if check_files is None:
        check_files = checks is None
    if datalist:
        items = load_datalist(datalist, keys, base_dir=dataset_dir or None, check_files=check_files)
        logger.info(f"Using {len(items)} cases from datalist {datalist} ({', '.join(keys)}).")
    elif dataset_dir:
        folder = Path(dataset_dir)
        if not folder.is_dir():
            raise DatalistError(f"dataset_dir {folder} is not a folder")
        if (folder / "dataset.json").is_file():
            items = load_datalist(folder / "dataset.json", keys, base_dir=folder, check_files=check_files)
            logger.info(f"Using {len(items)} cases from {folder / 'dataset.json'} ({', '.join(keys)}).")
        else:
            found = find_images(folder)
            items = [{"image": str(p)} for p in found]
            series = sum(p.is_dir() for p in found)
            logger.info(f"Using {len(items)} images found under {folder} ({len(items) - series} NIfTI files, {series} DICOM series folders; "
                        "no datalist given).")
    else:
        if phantom_kind not in PHANTOM_KINDS:
            raise ValueError(f"phantom_kind must be one of {sorted(PHANTOM_KINDS)}, got {phantom_kind!r}")
        folder = PHANTOM_KINDS[phantom_kind](phantom_dir, num_cases=num_phantoms, num_validation=num_phantom_validation)
        items = load_datalist(folder / "dataset.json", keys)
        logger.info(
            f"No dataset configured (dataset_dir and datalist are empty): using {len(items)} embedded synthetic "
            f"{PHANTOM_NAMES[phantom_kind]} phantoms from {folder}. Set dataset_dir or datalist to train on real data."
        )
    if not items:
        raise DatalistError(f"no cases found (dataset_dir={dataset_dir!r}, datalist={datalist!r}, keys={list(keys)})")
    if checks is not None:
        report = Path(report_dir) / f"preflight_{'_'.join(keys)}.json" if report_dir else None
        items = checked_cases(items, checks, on_bad=on_bad_case, report_path=report, what=f"'{', '.join(keys)}' cases", skipped=skipped,
                              recorded=recorded)
    for item in items:
        item.setdefault("case", case_name(item))
    return items


@dataclass
class CaseSource:
    """A bundle's data settings in one config item, so every list it uses is resolved and checked alike.

    ``cases(keys)`` is :func:`resolve_cases` with these settings; ``report(keys)`` runs the pre-flight
    check without stopping or skipping (for ``python -m common.data.check``).

    ``store_dir`` (set when ``cache`` is ``"store"``): the pre-flight result and the file sizes of a
    case that a store there recorded when it preprocessed the case (with the same checks) are taken
    from its manifest instead of reading the files again; other cases are read and checked as usual.
    """

    dataset_dir: str | None = ""
    datalist: str | None = ""
    phantom_dir: str | None = ""
    num_phantoms: int = 16
    num_phantom_validation: int = 4
    phantom_kind: str = "ct"
    checks: CaseChecks | None = None
    on_bad_case: str = "stop"
    report_dir: str | None = None
    skipped: dict[str, list[str]] = field(default_factory=dict)  # filled by the pre-flight check with on_bad_case "skip"
    store_dir: str | None = ""

    def __post_init__(self) -> None:
        forget_sizes()  # a new run: sizes are asked again (once), not taken from an earlier run in this process

    def _resolve(self, keys: Sequence[str], checks: CaseChecks | None, check_files: bool | None = None) -> list[dict]:
        recorded = recorded_checks(self.store_dir, checks) if self.store_dir and checks is not None else None
        return resolve_cases(
            self.dataset_dir, self.datalist, keys, phantom_dir=self.phantom_dir or None, num_phantoms=self.num_phantoms,
            num_phantom_validation=self.num_phantom_validation, phantom_kind=self.phantom_kind, checks=checks,
            on_bad_case=self.on_bad_case, report_dir=self.report_dir, skipped=self.skipped, check_files=check_files,
            recorded=recorded,
        )

    def cases(self, keys: Sequence[str] = ("training",)) -> list[dict]:
        """The usable cases under ``keys`` (checked when ``checks`` is set)."""
        return self._resolve(keys, self.checks)

    def report(self, keys: Sequence[str] = ("training",), checks: CaseChecks | None = None) -> PreflightReport:
        """The pre-flight report of every case under ``keys``, missing files included (listed, not raised)."""
        return preflight(self._resolve(keys, None, check_files=False), checks or self.checks or CaseChecks())
