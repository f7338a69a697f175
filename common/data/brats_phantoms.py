"""Synthetic multi-sequence brain-tumour MRI in the MSD Task01_BrainTumour layout.

The embedded default for ``brats_finetune``: each case is one 4D NIfTI ``(X, Y, Z, 4)`` with the
channels in MSD order (FLAIR, T1w, T1gd, T2w) and a label map in MSD numbering (0 background,
1 oedema, 2 non-enhancing tumour / necrosis, 3 enhancing tumour). A skull-stripped brain (zero
outside, as in BraTS) has white matter, a grey-matter rim and ventricles; a tumour is an oedema
ellipsoid around a core whose enhancing shell surrounds necrosis. Contrasts follow the sequences:
oedema bright on FLAIR/T2, enhancing tumour bright on T1gd only, necrosis dark on T1. Each case has
its own per-channel scale and a smooth bias field (MRI intensities are not standardised, which is
what the bundle's per-channel z-score handles), and about one case in five has no enhancing part
(an empty ET region, as in real data).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from common.data.phantoms import cached_dataset, to_nifti, write_labelled_cases

logger = logging.getLogger(__name__)

BRATS_GENERATOR_VERSION = 1
BRATS_CHANNELS = ("FLAIR", "T1w", "T1gd", "T2w")
#: MSD Task01 label numbering.
MSD_BRATS_LABELS = {0: "background", 1: "edema", 2: "non-enhancing tumor", 3: "enhancing tumour"}

#: tissue -> mean intensity per channel (FLAIR, T1w, T1gd, T2w), arbitrary MRI units.
_TISSUE = {
    "white_matter": (300.0, 500.0, 500.0, 200.0),
    "grey_matter": (400.0, 350.0, 360.0, 350.0),
    "csf": (80.0, 150.0, 150.0, 900.0),
    "edema": (750.0, 320.0, 330.0, 700.0),
    "necrosis": (450.0, 200.0, 230.0, 800.0),
    "enhancing": (550.0, 380.0, 950.0, 500.0),
}
SHAPE = (96, 112, 80)
SPACING = (1.0, 1.0, 1.0)


def _r2(coords: tuple[np.ndarray, ...], centre: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """Squared normalised ellipsoid radius ``sum(((x - c) / a)^2)`` on the grid (axis-aligned)."""
    return sum(((c - centre[i]) / axes[i]) ** 2 for i, c in enumerate(coords))


def generate_brats_case(seed: int, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Case ``index`` of series ``seed``: ``image`` ``(X, Y, Z, 4)`` float32 and ``label`` ``(X, Y, Z)`` uint8 (MSD numbering)."""
    rng = np.random.default_rng([seed, index, BRATS_GENERATOR_VERSION, 7])
    coords = tuple(
        (np.arange(n, dtype=np.float32) - (n - 1) / 2) * s for n, s in zip(SHAPE, SPACING)
    )
    coords = (coords[0][:, None, None], coords[1][None, :, None], coords[2][None, None, :])
    brain_axes = np.array([42.0, 52.0, 36.0]) * rng.uniform(0.9, 1.05, 3)
    r_brain = _r2(coords, np.zeros(3), brain_axes)
    brain = r_brain <= 1.0
    tissue = np.full(SHAPE, -1, dtype=np.int8)  # -1 outside the brain
    tissue[brain] = 0  # white matter
    tissue[brain & (r_brain > 0.72)] = 1  # grey-matter rim
    for side in (-1, 1):  # lateral ventricles
        c = np.array([side * 7.0, 4.0, 6.0]) + rng.normal(0, 1.5, 3)
        tissue[_r2(coords, c, np.array([4.0, 16.0, 7.0]) * rng.uniform(0.8, 1.2, 3)) <= 1.0] = 2

    label = np.zeros(SHAPE, dtype=np.uint8)
    centre = brain_axes * rng.uniform(-0.45, 0.45, 3)
    edema_axes = rng.uniform(12.0, 20.0, 3)
    core_axes = edema_axes * rng.uniform(0.4, 0.6, 3)
    r_edema = _r2(coords, centre, edema_axes)
    r_core = _r2(coords, centre + rng.normal(0, 1.5, 3), core_axes)
    label[brain & (r_edema <= 1.0)] = 1
    core = brain & (r_core <= 1.0)
    has_enhancing = rng.uniform() > 0.2
    if has_enhancing:
        label[core] = 3
        label[core & (r_core <= rng.uniform(0.3, 0.55))] = 2  # necrosis inside the enhancing shell
    else:
        label[core] = 2

    names = ("white_matter", "grey_matter", "csf", "edema", "necrosis", "enhancing")
    means = np.array([_TISSUE[n] for n in names], dtype=np.float32)  # (6, 4)
    kind = tissue.astype(np.int16)
    kind[label == 1] = 3
    kind[label == 2] = 4
    kind[label == 3] = 5
    image = np.zeros((*SHAPE, 4), dtype=np.float32)
    inside = kind >= 0
    image[inside] = means[kind[inside]]
    # smooth multiplicative bias field and per-channel scale, then Rician-like noise
    x, y, z = (c / 60.0 for c in coords)
    for ch in range(4):
        a = rng.normal(0, 0.08, 4)
        bias = 1.0 + a[0] * x + a[1] * y + a[2] * z + a[3] * x * y
        scale = rng.uniform(0.6, 1.6)
        noisy = image[..., ch] * bias * scale + rng.normal(0, 18.0 * scale, SHAPE)
        image[..., ch] = np.where(inside, np.abs(noisy), 0.0)
    return image.astype(np.float32), label


def _dataset_name(num_cases: int, num_validation: int, seed: int) -> str:
    return f"brats_phantoms_v{BRATS_GENERATOR_VERSION}_n{num_cases}_v{num_validation}_s{seed}"


def ensure_brats_phantom_dataset(root: str | os.PathLike | None = None, num_cases: int = 12, num_validation: int = 3, seed: int = 0) -> Path:
    """Folder of a cached BraTS-like phantom dataset (``imagesTr/``, ``labelsTr/``, ``dataset.json``)."""
    if num_cases < 1 or not 0 <= num_validation < num_cases:
        raise ValueError(f"need num_cases >= 1 and 0 <= num_validation < num_cases, got {num_cases}, {num_validation}")

    def build(tmp: Path) -> dict:
        logger.info(f"Generating {num_cases} synthetic brain-tumour MRI phantoms (seed {seed}) (once; cached after).")
        def cases():
            for i in range(num_cases):
                image, label = generate_brats_case(seed, i)
                yield f"BRATS_phantom_{i:03d}.nii.gz", to_nifti(image, SPACING, ("R", "A", "S")), to_nifti(label, SPACING, ("R", "A", "S"))

        return {
            "name": "ssl3d synthetic brain-tumour MRI phantoms (MSD Task01 layout)",
            "description": "Deterministic synthetic 4-sequence MRI with oedema / non-enhancing / enhancing tumour labels (generated, not real patients).",
            "modality": {str(i): c for i, c in enumerate(BRATS_CHANNELS)},
            "labels": {str(k): v for k, v in MSD_BRATS_LABELS.items()},
            "generator_version": BRATS_GENERATOR_VERSION,
            "seed": seed,
            **write_labelled_cases(tmp, cases(), num_validation),
        }

    return cached_dataset(root, _dataset_name(num_cases, num_validation, seed), build)
