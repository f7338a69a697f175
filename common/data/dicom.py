"""DICOM series as cases: finding series folders and checking them before anything is read.

A DICOM series is a folder of single-slice files; MONAI's ``PydicomReader`` (used by ``LoadImage``
for a folder when pydicom is installed) stacks it into a volume with its affine. What it does not do
is refuse a series it cannot stack faithfully: it sorts whatever slices it finds, so a missing slice
silently becomes a thinner volume with the wrong spacing, a duplicate slice is stacked twice, and two
series in one folder are interleaved. :func:`series_problems` reads the headers only (no pixels) and
names each of these, with the folder:

- no DICOM files, an unreadable file, slices without position/orientation;
- more than one ``SeriesInstanceUID`` (mixed series);
- duplicate slice positions; gaps of about two or more slice spacings (missing slices); any other
  non-uniform spacing along the slice normal;
- a modality other than the bundle's (e.g. MR given to a CT bundle);
- ``InstanceNumber`` absent, empty, repeated or out of step with the positions: MONAI's
  ``PydicomReader`` stacks slices in ``InstanceNumber`` order and takes the affine from the first and
  last, so such a series would be read scrambled or fail (type 2: real series may leave it empty).

Upstream gap: MONAI's readers have no series validation; pydicom reads files, not series.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np

DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")


def is_dicom_file(path: str | os.PathLike) -> bool:
    """A ``.dcm``/``.dicom``/``.ima`` file, or any file with the DICOM preamble (``DICM`` at byte 128)."""
    p = Path(path)
    if not p.is_file():
        return False
    if p.name.lower().endswith(DICOM_SUFFIXES):
        return True
    try:
        with open(p, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def dicom_files(folder: str | os.PathLike) -> list[Path]:
    """The DICOM files directly in ``folder`` (not below it), sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if is_dicom_file(p))


def find_dicom_series(folder: str | os.PathLike) -> list[Path]:
    """Every folder at or below ``folder`` that directly holds DICOM files (one case each), sorted."""
    root = Path(folder)
    found = {p.parent for p in root.rglob("*") if is_dicom_file(p)}
    return sorted(found)


def series_problems(folder: str | os.PathLike, modality: str | None = None, spacing_rtol: float = 0.05) -> list[str]:
    """What keeps the series in ``folder`` from being read as one faithful volume; ``[]`` when none.

    Args:
        folder: the series folder.
        modality: the DICOM ``Modality`` the bundle expects (e.g. ``"CT"``); ``None`` accepts any.
        spacing_rtol: slice gaps within this fraction of the median spacing count as uniform.
    """
    import pydicom

    folder = Path(folder)
    files = dicom_files(folder) if folder.is_dir() else []
    if not files:
        return [f"no DICOM files in series folder {folder}"]
    headers, problems = [], []
    for f in files:
        try:
            headers.append((f, pydicom.dcmread(f, stop_before_pixels=True)))
        except Exception as e:  # noqa: BLE001 - any unreadable file is this series' problem
            problems.append(f"DICOM file cannot be read ({type(e).__name__}: {e}): {f}")
    if problems:
        return problems
    series = Counter(str(getattr(h, "SeriesInstanceUID", "?")) for _, h in headers)
    if len(series) > 1:
        parts = ", ".join(f"{uid} ({n} files)" for uid, n in series.most_common())
        return [f"mixed series: {folder} holds {len(series)} DICOM series ({parts}); put each series in its own folder"]
    modalities = {str(getattr(h, "Modality", "")) for _, h in headers}
    if modality and modalities != {modality}:
        problems.append(f"modality {'/'.join(sorted(modalities)) or 'missing'} but this bundle expects {modality}: {folder}")
    no_geometry = [f.name for f, h in headers if "ImagePositionPatient" not in h or "ImageOrientationPatient" not in h]
    if no_geometry:
        return problems + [f"{len(no_geometry)} slice(s) without ImagePositionPatient/ImageOrientationPatient "
                           f"(e.g. {no_geometry[0]}), so the series has no 3D geometry: {folder}"]
    orientation = np.asarray(headers[0][1].ImageOrientationPatient, dtype=float)
    normal = np.cross(orientation[:3], orientation[3:])
    positions = sorted((float(np.dot(normal, np.asarray(h.ImagePositionPatient, dtype=float))), f.name) for f, h in headers)
    if len(positions) < 2:
        return problems + [f"only one slice, not a volume: {folder}"]
    z = np.array([p for p, _ in positions])
    gaps = np.diff(z)
    dup = np.nonzero(gaps < 1e-3)[0]
    if dup.size:
        i = int(dup[0])
        problems.append(f"{dup.size} duplicate slice position(s) (e.g. {positions[i][1]} and {positions[i + 1][1]} both at {z[i]:.2f} mm): {folder}")
        gaps = gaps[gaps >= 1e-3]
    if gaps.size:
        step = float(np.median(gaps))
        missing = np.nonzero(gaps > (1.5 + spacing_rtol) * step)[0]
        off = np.nonzero(np.abs(gaps - step) > spacing_rtol * step)[0]
        if missing.size:
            n = int(np.round(gaps[missing] / step).sum() - missing.size)
            problems.append(f"about {n} missing slice(s): {missing.size} gap(s) of up to {gaps[missing].max():.2f} mm where slices are "
                            f"{step:.2f} mm apart: {folder}")
        elif off.size:
            problems.append(f"non-uniform slice spacing: {gaps.min():.3f} to {gaps.max():.3f} mm (median {step:.3f}), "
                            f"which one affine cannot describe: {folder}")
    numbering: list[str] = []
    unnumbered = [f.name for f, h in headers if h.get("InstanceNumber", None) in (None, "")]
    if unnumbered:
        numbering.append(f"{len(unnumbered)} slice(s) without an InstanceNumber (e.g. {unnumbered[0]}), by which MONAI's PydicomReader "
                        f"stacks slices; convert the series to NIfTI (e.g. dcm2niix) and give that file: {folder}")
    else:
        by_number = sorted((int(h.InstanceNumber), float(np.dot(normal, np.asarray(h.ImagePositionPatient, dtype=float)))) for _, h in headers)
        steps = np.diff([p for _, p in by_number])
        if len({n for n, _ in by_number}) < len(by_number) or not (np.all(steps >= 0) or np.all(steps <= 0)):
            numbering.append(f"InstanceNumber order (repeated or not following the slice positions) would stack the slices out of place "
                            f"in MONAI's PydicomReader; convert the series to NIfTI (e.g. dcm2niix) and give that file: {folder}")
    return problems or numbering  # the numbering is judged on an otherwise sound series
