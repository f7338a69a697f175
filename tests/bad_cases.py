"""A small dataset with one case per input fault the pre-flight check must catch (tests only).

Every image is a tiny CT-like volume (HU, soft tissue inside air), so the good cases pass the
bundles' real checks; each bad case has exactly one fault.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np

SHAPE = (12, 12, 10)

#: bad case name -> the phrase its problem message must contain
FAULTS = {
    "missing": "file does not exist",
    "empty": "empty (0 bytes)",
    "truncated": "truncated or corrupt",
    "garbage": "cannot be read",
    "shape": "differs from its image's",
    "affine": "label affine differs",
    "labels": "outside the 0..2",
    "channels": "2 channel(s) but the bundle expects",
    "air": "no foreground",
    "nan": "NaN/Inf voxel",
}
#: DICOM series folder faults (``write_bad_dataset(dicom=True)``, 3D CT only) -> the phrase their message must contain
DICOM_FAULTS = {
    "dicom_gap": "missing slice",
    "dicom_duplicate": "duplicate slice position",
    "dicom_mixed": "mixed series",
    "dicom_spacing": "non-uniform slice spacing",
    "dicom_modality": "this bundle expects CT",
}


def ct(shape: tuple[int, ...] = SHAPE, seed: int = 0, channels: int = 0) -> np.ndarray:
    """Air with a soft-tissue block and noise (float32 HU); ``channels`` > 0 adds a 4th axis."""
    rng = np.random.default_rng(seed)
    vol = np.full(shape, -1000.0, np.float32)
    vol[2:-2, 2:-2, 2:-2] = 40.0
    vol += rng.normal(0, 5, shape).astype(np.float32)
    return np.stack([vol] * channels, -1) if channels else vol


def label(shape: tuple[int, ...] = SHAPE, top: int = 2) -> np.ndarray:
    lab = np.zeros(shape, np.uint8)
    lab[3:6, 3:6, 3:6] = 1
    lab[6:9, 6:9, 5:8] = top
    return lab


def save(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> Path:
    nib.save(nib.Nifti1Image(array, np.diag([1.5, 1.5, 2.0, 1.0]) if affine is None else affine), str(path))
    return path


IMAGE_FAULTS = ("missing", "empty", "truncated", "garbage", "channels", "air", "nan")


def write_dicom_cases(img_dir: Path, lab_dir: Path) -> list[dict]:
    """A good DICOM CT series and one series per :data:`DICOM_FAULTS`, each with a NIfTI label of its geometry."""
    from dicom_series import write_ct_series

    source = save(img_dir / "dicom_source.nii.gz", ct())
    n = SHAPE[2]
    entries = []
    for name in ("dicom_good", *DICOM_FAULTS):
        folder = img_dir / name
        if name == "dicom_gap":
            write_ct_series(source, folder, slices=[k for k in range(n) if k != n // 2])
        elif name == "dicom_duplicate":
            write_ct_series(source, folder, slices=[*range(n // 2), n // 2 - 1, *range(n // 2, n)])
        elif name == "dicom_mixed":
            write_ct_series(source, folder, slices=list(range(n // 2)), prefix="a")
            write_ct_series(source, folder, slices=list(range(n // 2, n)), prefix="b")  # same volume, another SeriesInstanceUID
        elif name == "dicom_spacing":
            write_ct_series(source, folder, z_positions=[2.0 * k + (0.7 if k >= n // 2 else 0.0) for k in range(n)])
        else:
            write_ct_series(source, folder, modality="MR" if name == "dicom_modality" else "CT")
        save(lab_dir / f"{name}.nii.gz", label())
        entries.append({"image": f"imagesTr/{name}", "label": f"labelsTr/{name}.nii.gz"})
    source.unlink()
    return entries
LABEL_FAULTS = ("shape", "affine", "labels")


def write_bad_dataset(root: Path, num_good: int = 2, channels: int = 0, validation: str = "first", class_labels: bool = False,
                      dicom: bool = False) -> Path:
    """``root/dataset.json`` listing ``num_good`` good cases then one case per :data:`FAULTS` (in its order).

    Args:
        channels: 0 for 3D images (CT), else 4D images with that many channels (multi-sequence MRI).
        validation: ``"first"`` lists the first good case as validation, ``"all"`` every case.
        class_labels: labels are class numbers (classification), and the label faults are left out.
        dicom: add a good DICOM series and the :data:`DICOM_FAULTS` series (3D CT only).
    """
    img_dir, lab_dir = root / "imagesTr", root / "labelsTr"
    img_dir.mkdir(parents=True, exist_ok=True)
    lab_dir.mkdir(parents=True, exist_ok=True)

    def pair(name: str, image: np.ndarray | None = None, lab: np.ndarray | None = None, lab_affine: np.ndarray | None = None) -> dict:
        img_path, lab_path = img_dir / f"{name}.nii.gz", lab_dir / f"{name}.nii.gz"
        save(img_path, ct(channels=channels) if image is None else image)
        save(lab_path, label() if lab is None else lab, lab_affine)
        return {"image": f"imagesTr/{name}.nii.gz", "label": f"labelsTr/{name}.nii.gz"}

    entries = [pair(f"good_{i}") for i in range(num_good)]
    entries.append({"image": "imagesTr/missing.nii.gz", "label": "labelsTr/missing.nii.gz"})
    e = pair("empty")
    (root / e["image"]).write_bytes(b"")
    entries.append(e)
    e = pair("truncated")
    raw = gzip.decompress((root / e["image"]).read_bytes())
    (root / e["image"]).write_bytes(gzip.compress(raw)[: len(gzip.compress(raw)) // 2])
    entries.append(e)
    e = pair("garbage")
    (root / e["image"]).write_bytes(np.random.default_rng(1).bytes(2000))
    entries.append(e)
    entries.append(pair("shape", lab=label((12, 12, 9))))
    entries.append(pair("affine", lab_affine=np.diag([1.5, 1.5, 2.0, 1.0]) + np.array([[0, 0, 0, 4.0]] + [[0] * 4] * 3)))
    entries.append(pair("labels", lab=label(top=7)))
    entries.append(pair("channels", image=ct(channels=2 if channels != 2 else 3)))
    entries.append(pair("air", image=np.full(SHAPE + ((channels,) if channels else ()), -1024.0, np.float32)))
    bad = ct(channels=channels)
    bad[5, 5, 5] = np.nan
    entries.append(pair("nan", image=bad))
    if dicom:
        entries += write_dicom_cases(img_dir, lab_dir)
    if class_labels:
        entries = [{"image": e["image"], "label": [i % 2]} for i, e in enumerate(entries) if not e["image"].endswith(tuple(f"{f}.nii.gz" for f in LABEL_FAULTS))]
    (root / "dataset.json").write_text(json.dumps({"training": entries, "validation": entries if validation == "all" else entries[:1]}, indent=1))
    return root / "dataset.json"
