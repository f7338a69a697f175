"""Synthetic CT triage cases (normal / haemorrhage): the classification bundles' embedded default.

Each case is an abdominal CT phantom (:func:`common.data.phantoms.generate_case`); every other case
gets a hyperdense haematoma (55-80 HU, 12-25 mm radius) in the visceral fat, which the brain and
subdural windows show as a bright blob against fat. The datalist's ``label`` is a list with one 0/1
per class (``[1]`` = haemorrhage), the multi-label layout the classification bundle reads.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import nibabel as nib
import numpy as np

from common.data.phantoms import (
    GENERATOR_VERSION,
    cached_dataset,
    default_cache_dir,
    generate_case,
    to_nifti,
)

logger = logging.getLogger(__name__)

TRIAGE_CLASSES = ("haemorrhage",)
HU_VISCERAL_MAX = -20.0  # haematomas are painted over fat only, not over organs, bowel or bone


def generate_triage_case(seed: int, index: int) -> tuple[np.ndarray, tuple[float, float, float], tuple[str, str, str], int]:
    """``(image HU (X, Y, Z) RAS, spacing, orientation, label)``; odd ``index`` are haemorrhage cases (label 1)."""
    case = generate_case(seed, index)
    image = case.image.astype(np.float32)
    positive = index % 2 == 1
    if positive:
        rng = np.random.default_rng([seed, index, GENERATOR_VERSION, 7])
        fat = np.argwhere((image < HU_VISCERAL_MAX) & (image > -300))  # visceral and subcutaneous fat voxels
        centre = fat[rng.integers(len(fat))].astype(np.float32)
        radius_mm = rng.uniform(12, 25)
        grid = np.ogrid[tuple(slice(0, n) for n in image.shape)]
        r2 = sum(((g - c) * sp / radius_mm) ** 2 for g, c, sp in zip(grid, centre, case.spacing))
        blob = (r2 <= 1.0) & (image < HU_VISCERAL_MAX) & (image > -300)
        image[blob] = rng.uniform(55, 80) + rng.normal(0, 8, int(blob.sum()))
    return np.clip(image, -1024, 3071).astype(np.int16), case.spacing, case.orientation, int(positive)


def ensure_triage_phantom_dataset(root: str | os.PathLike | None = None, num_cases: int = 16, num_validation: int = 4, seed: int = 0) -> Path:
    """Folder of a triage phantom dataset (``imagesTr/`` + ``dataset.json`` with list labels), generated once."""
    if num_cases < 2 or not 0 <= num_validation < num_cases:
        raise ValueError(f"need num_cases >= 2 and 0 <= num_validation < num_cases, got {num_cases}, {num_validation}")
    key = hashlib.sha1(f"triage-v{GENERATOR_VERSION}-{num_cases}-{num_validation}-{seed}".encode()).hexdigest()[:8]
    name = f"ct_triage_phantoms_v{GENERATOR_VERSION}_n{num_cases}_v{num_validation}_s{seed}_{key}"

    def build(tmp: Path) -> dict:
        logger.info(f"Generating {num_cases} synthetic CT triage phantoms (seed {seed}) into {root or default_cache_dir()} (once; cached after).")
        (tmp / "imagesTr").mkdir()
        items = []
        for i in range(num_cases):
            image, spacing, orientation, label = generate_triage_case(seed, i)
            nib.save(to_nifti(image, spacing, orientation), tmp / "imagesTr" / f"triage_{i:03d}.nii.gz")
            items.append({"image": f"imagesTr/triage_{i:03d}.nii.gz", "label": [label]})
        # validation: the last cases, balanced because labels alternate
        n_train = num_cases - num_validation
        return {
            "name": "ssl3d synthetic CT triage phantoms",
            "description": "Deterministic synthetic abdominal CT in HU; odd cases carry a hyperdense haematoma (generated, not real patients).",
            "modality": {"0": "CT"},
            "classes": list(TRIAGE_CLASSES),
            "generator_version": GENERATOR_VERSION,
            "seed": seed,
            "numTraining": n_train,
            "training": items[:n_train],
            "validation": items[n_train:],
        }

    return cached_dataset(root, name, build)
