"""Pre-flight check of a bundle's cases: every file is read and checked before training starts, and
every problem in the dataset is reported at once (not one per restart, hours apart).

Per case (image file or files, optional label file) it finds:

- a missing or empty (0-byte) file, a header that does not parse, voxel data that cannot be read
  (truncated or corrupt ``.nii.gz``);
- NaN or infinite voxels;
- an all-air (or constant) image: no voxel above ``foreground_threshold`` (CT: -500 HU), or, without a
  threshold, every voxel the same value (a blank MRI);
- the wrong number of image channels (3D file = 1 channel, 4D file = its 4th axis, a list of files =
  their sum);
- image and label of different spatial shape, or affines that differ by more than ``affine_atol``;
- label values that are not integers or, after the bundle's label mapping, not a class of the bundle.

Checks run in a few threads (file reading releases the GIL) and are memoised per (file, size, mtime),
so the training and validation lists of one run read each file once. Bundles call it through
:func:`common.data.resolve_cases` (``checks=``), and ``python -m common.data.check`` runs it on a
datalist from the shell and prints the report.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

ON_BAD = ("stop", "skip")
MAX_LISTED = 50  # problems quoted in an exception message; the JSON report holds all


class DataPreflightError(ValueError):
    """The dataset has unusable cases; the message lists each with its file and what is wrong."""


#: the way out named when a label holds values the bundle is not configured for (bundles with their own
#: label settings, e.g. brats_finetune's ``label_scheme``, name those instead)
LABEL_HINT = "set num_classes / the label mapping to match the dataset"


@dataclass(frozen=True)
class CaseChecks:
    """What a bundle requires of its cases (mirrors its loading transforms).

    Args:
        in_channels: required number of image channels (``None``: any).
        num_classes: label values, after ``label_map_from -> label_map_to``, must lie in
            ``[0, num_classes - 1]`` (``None``: no range check).
        label_values: instead of a range, the allowed raw label values (e.g. BraTS ``0, 1, 2, 4``).
        label_map_from, label_map_to: the bundle's ``MapLabelValued`` mapping, applied before the range check.
        foreground_threshold: an image needs at least one voxel above it (CT: -500 HU = not air);
            ``None``: the image must merely not be constant.
        affine_atol: largest allowed absolute difference between image and label affines (mm).
        channel_names: names of the expected channels, quoted in the channel-count message.
        check_labels: ``False`` ignores label files (inference, which does not read them).
        read_voxels: ``False`` checks headers only (existence, size, shape, channels, affine): fast,
            but misses truncated data, NaN/Inf, empty images and label values.
        label_hint: the settings to change, quoted when a label holds values outside the allowed ones.
        modality: the DICOM ``Modality`` an image series must have (``"CT"`` for CT bundles; ``None``:
            any). DICOM series folders are checked for missing, duplicate and unevenly spaced slices
            and mixed series first (:func:`common.data.dicom.series_problems`).
    """

    in_channels: int | None = None
    num_classes: int | None = None
    label_values: tuple[int, ...] | None = None
    label_map_from: tuple[float, ...] = ()
    label_map_to: tuple[float, ...] = ()
    foreground_threshold: float | None = None
    affine_atol: float = 1e-2
    channel_names: tuple[str, ...] | None = None
    check_labels: bool = True
    read_voxels: bool = True
    label_hint: str = LABEL_HINT
    modality: str | None = None

    def __post_init__(self) -> None:
        # configs give lists; frozen + tuples keeps the checks hashable (memo key)
        for name in ("label_values", "label_map_from", "label_map_to", "channel_names"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(value))
        if len(self.label_map_from) != len(self.label_map_to):
            raise ValueError(f"label_map_from has {len(self.label_map_from)} values but label_map_to has {len(self.label_map_to)}")


@dataclass
class FileFacts:
    """What one file holds, read once: problems found alone, and what the pair checks need."""

    problems: list[str] = field(default_factory=list)
    spatial_shape: tuple[int, ...] | None = None
    channels: int = 1
    affine: np.ndarray | None = None
    values: np.ndarray | None = None  # unique values (labels only)


_MEMO: dict[tuple, FileFacts] = {}


def is_nifti(path: str | os.PathLike) -> bool:
    return str(path).endswith((".nii", ".nii.gz"))


def _read(path: Path, role: str, checks: CaseChecks) -> FileFacts:
    """Facts about one image (``role='image'``) or label file; problems are phrased with its path."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return FileFacts([f"{role} file does not exist: {path}"])
    except OSError as e:
        return FileFacts([f"{role} file cannot be accessed: {path}: {e}"])
    if path.is_file() and stat.st_size == 0:
        return FileFacts([f"{role} file is empty (0 bytes): {path}"])
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, role, checks)
    if key not in _MEMO:
        _MEMO[key] = _read_uncached(path, role, checks)
    return _MEMO[key]


def _read_uncached(path: Path, role: str, checks: CaseChecks) -> FileFacts:
    facts = FileFacts()
    if path.is_dir():  # a DICOM series: refuse what cannot be stacked faithfully before reading it
        from common.data.dicom import series_problems

        facts.problems = series_problems(path, checks.modality if role == "image" else None)
        if facts.problems:
            return facts
    try:
        if is_nifti(path):
            import nibabel as nib

            img = nib.load(str(path))
            shape = tuple(int(s) for s in img.shape)
            facts.affine = np.asarray(img.affine, dtype=np.float64)
            data = (lambda: np.asanyarray(img.dataobj)) if checks.read_voxels else None
        else:  # DICOM series, NRRD, MHA...: MONAI's readers (no header-only path)
            from monai.transforms import LoadImage

            arr = LoadImage(image_only=True)(str(path))
            shape = tuple(int(s) for s in arr.shape)
            facts.affine = np.asarray(arr.affine, dtype=np.float64)
            data = (lambda: np.asarray(arr)) if checks.read_voxels else None
    except Exception as e:  # noqa: BLE001 - any reader failure is this file's problem
        facts.problems.append(f"{role} file cannot be read ({type(e).__name__}: {e}): {path}")
        return facts
    if len(shape) < 3:
        facts.problems.append(f"{role} is not a 3D volume (shape {shape}): {path}")
        return facts
    facts.spatial_shape = shape[:3]
    facts.channels = int(np.prod(shape[3:])) if len(shape) > 3 else 1
    if data is None:
        return facts
    try:
        voxels = data()
    except Exception as e:  # noqa: BLE001 - truncated gzip, short file, bad compression
        facts.problems.append(f"{role} voxel data cannot be read, the file is truncated or corrupt ({type(e).__name__}: {e}): {path}")
        return facts
    if voxels.dtype.kind == "f":
        bad = ~np.isfinite(voxels)
        if bad.any():
            facts.problems.append(f"{role} holds {int(bad.sum())} NaN/Inf voxel(s): {path}")
            return facts
    if role == "label":
        facts.values = np.unique(voxels)
    elif checks.foreground_threshold is not None:
        if not (voxels > checks.foreground_threshold).any():
            facts.problems.append(
                f"image has no foreground: no voxel above {checks.foreground_threshold:g} (all air; max {float(voxels.max()):g}): {path}"
            )
    elif voxels.size and voxels.min() == voxels.max():
        facts.problems.append(f"image is blank: every voxel is {float(voxels.flat[0]):g}: {path}")
    return facts


def _paths(value: Any) -> list[Path]:
    values = value if isinstance(value, (list, tuple)) else [value]
    return [Path(v) for v in values]


def _label_problems(facts: FileFacts, path: Path, checks: CaseChecks) -> list[str]:
    values = facts.values
    if values is None:
        return []
    if not np.array_equal(values, np.round(values)):
        return [f"label holds non-integer values (e.g. {values[values != np.round(values)][:3].tolist()}): is it an image? {path}"]
    if checks.label_values is not None:
        allowed, bad = list(checks.label_values), values[~np.isin(values, checks.label_values)]
    elif checks.num_classes is not None:
        mapped = values.astype(np.float64)
        if checks.label_map_from:
            lookup = dict(zip(checks.label_map_from, checks.label_map_to))
            mapped = np.array([lookup.get(float(v), float(v)) for v in mapped])
        allowed, bad = f"0..{checks.num_classes - 1}", values[(mapped < 0) | (mapped >= checks.num_classes)]
    else:
        return []
    if bad.size:
        return [(
            f"label holds values {bad.astype(np.int64).tolist()[:10]} outside the {allowed} this bundle is configured for "
            f"({checks.label_hint}): {path}"
        )]
    return []


def check_case(entry: Mapping[str, Any], checks: CaseChecks, image_key: str = "image", label_key: str = "label") -> list[str]:
    """Every problem of one case (resolved absolute paths, as :func:`load_datalist` returns them).

    A label that is a number or a list of numbers (a class label) is not a file and is not checked.
    """
    problems: list[str] = []
    images = [(p, _read(p, "image", checks)) for p in _paths(entry[image_key])]
    for _, facts in images:
        problems += facts.problems
    label_value = entry.get(label_key)
    labels = []
    if checks.check_labels and isinstance(label_value, (str, os.PathLike)):
        labels = [(p, _read(p, "label", checks)) for p in _paths(label_value)]
    for path, facts in labels:
        problems += facts.problems or _label_problems(facts, path, checks)
    readable = [(p, f) for p, f in images if f.spatial_shape is not None]
    if len(readable) < len(images):
        return problems
    first_path, first = readable[0]
    for path, facts in readable[1:]:
        if facts.spatial_shape != first.spatial_shape:
            problems.append(f"image files of one case differ in shape: {first.spatial_shape} in {first_path} but {facts.spatial_shape} in {path}")
    channels = sum(f.channels for _, f in readable)
    if checks.in_channels is not None and channels != checks.in_channels:
        names = f" ({', '.join(checks.channel_names)}; one 4D file or a list of files in that order)" if checks.channel_names else ""
        problems.append(f"image has {channels} channel(s) but the bundle expects {checks.in_channels}{names}: {', '.join(map(str, (p for p, _ in images)))}")
    for path, facts in labels:
        if facts.spatial_shape is None:
            continue
        if facts.channels != 1:
            problems.append(f"label has {facts.channels} channels; expected one label map: {path}")
        if facts.spatial_shape != first.spatial_shape:
            problems.append(f"label shape {facts.spatial_shape} differs from its image's {first.spatial_shape}: label {path}, image {first_path}")
        elif first.affine is not None and facts.affine is not None:
            diff = float(np.abs(first.affine - facts.affine).max())
            if diff > checks.affine_atol:
                problems.append(
                    f"label affine differs from its image's by up to {diff:.4g} (tolerance affine_atol {checks.affine_atol:g}): "
                    f"label {path}, image {first_path}"
                )
    return problems


@dataclass
class PreflightReport:
    """Outcome of :func:`preflight`: ``problems`` maps a case (its image path) to what is wrong with it."""

    num_cases: int
    problems: dict[str, list[str]]
    checks: CaseChecks

    def summary(self, limit: int = MAX_LISTED) -> str:
        lines = [f"{len(self.problems)} of {self.num_cases} case(s) have problems:"]
        listed = 0
        for case, problems in self.problems.items():
            for problem in problems:
                if listed == limit:
                    lines.append("  ... and more (all of them in the JSON report)")
                    return "\n".join(lines)
                lines.append(f"  - case {case}: {problem}")
                listed += 1
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"num_cases": self.num_cases, "num_bad": len(self.problems), "problems": self.problems, "checks": asdict(self.checks)}

    def write(self, path: str | os.PathLike) -> Path:
        from common.io import atomic_write_text

        return atomic_write_text(path, json.dumps(self.to_json(), indent=2) + "\n")


def case_name(entry: Mapping[str, Any], image_key: str = "image") -> str:
    image = entry[image_key]
    return str(image[0] if isinstance(image, (list, tuple)) else image)


def preflight(
    items: Sequence[Mapping[str, Any]], checks: CaseChecks, num_threads: int = 4, recorded: Mapping[str, list[str]] | None = None
) -> PreflightReport:
    """Check every case of ``items`` (see the module docstring); never raises for a bad case.

    ``recorded``: results already known by store key (:func:`common.data.store.case_key`), e.g. from a
    store's manifest; those cases are not read again.
    """
    from common.data.store import case_key

    results: list[list[str] | None] = [None] * len(items)
    if recorded:
        for i, entry in enumerate(items):
            known = recorded.get(case_key(entry))
            results[i] = list(known) if known is not None else None
    todo = [i for i, r in enumerate(results) if r is None]
    if todo:
        from common.progress import progress_bar

        with ThreadPoolExecutor(max(1, num_threads)) as pool, progress_bar(len(todo), "pre-flight check") as bar:
            for i, r in zip(todo, pool.map(lambda i: check_case(items[i], checks), todo)):
                results[i] = r
                bar.update(1)
    problems = {case_name(e): r for e, r in zip(items, results) if r}
    return PreflightReport(len(items), problems, checks)


def checked_cases(
    items: Sequence[Mapping[str, Any]],
    checks: CaseChecks,
    on_bad: str = "stop",
    report_path: str | os.PathLike | None = None,
    num_threads: int = 4,
    what: str = "cases",
    skipped: dict[str, list[str]] | None = None,
    recorded: Mapping[str, list[str]] | None = None,
) -> list[dict]:
    """Run :func:`preflight` and return the usable cases.

    Args:
        on_bad: ``"stop"`` raises :class:`DataPreflightError` listing every problem; ``"skip"`` drops
            the bad cases with a warning that lists them (and fails only if none is left).
        report_path: where to write the JSON report when there are problems (all of them, not just
            the ones quoted in messages).
        what: how the message names this list (e.g. "training cases").
        skipped: with ``"skip"``, the dropped cases and their problems are added to this dict.
        recorded: results already known (see :func:`preflight`).
    """
    if on_bad not in ON_BAD:
        raise ValueError(f"on_bad_case must be one of {ON_BAD}, got {on_bad!r}")
    report = preflight(items, checks, num_threads, recorded=recorded)
    if not report.problems:
        logger.info(f"Pre-flight check: all {len(items)} {what} are usable.")
        return [dict(e) for e in items]
    written = f" Full report: {report.write(report_path)}." if report_path else ""
    if on_bad == "stop":
        raise DataPreflightError(
            f"pre-flight check of the {what} failed; nothing was trained. {report.summary()}\n"
            f"Fix or remove these cases, or set on_bad_case 'skip' to train without them.{written}"
        )
    good = [dict(e) for e in items if case_name(e) not in report.problems]
    if skipped is not None:
        skipped.update(report.problems)
    if not good:
        raise DataPreflightError(f"pre-flight check: none of the {len(items)} {what} is usable. {report.summary()}{written}")
    logger.warning(f"Pre-flight check: skipping {len(report.problems)} of the {what} (on_bad_case 'skip'). {report.summary()}{written}")
    return good
