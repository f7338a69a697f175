"""Synthetic abdominal CT phantoms: the collection's embedded default dataset.

No dataset can be downloaded on a fresh machine, so every bundle can run on phantoms made here:
deterministic (a case depends only on ``(seed, index)``), generated once and cached on disk as
NIfTI plus a Decathlon-style ``dataset.json``.

Each case is an abdomen in HU: air outside the body, subcutaneous fat, an abdominal-wall muscle
layer, visceral fat with bowel loops and gas, a vertebral column (bone with soft-tissue discs), and
the 13 BTCV organs as rotated, jittered ellipsoids / tubes with organ-specific HU. Cases vary in body
size, organ position and size, voxel spacing (in-plane and slice thickness) and orientation (the
array is stored in RAS, LPS, LAS or a permuted axis order; the affine says which).

Anatomy is defined in millimetres on a RAS grid, so spacing changes resample the same anatomy.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

logger = logging.getLogger(__name__)

GENERATOR_VERSION = 1

#: BTCV label numbering (background 0 + 13 organs), used by every phantom label map.
BTCV_LABELS: dict[int, str] = {
    0: "background",
    1: "spleen",
    2: "kidney_right",
    3: "kidney_left",
    4: "gallbladder",
    5: "esophagus",
    6: "liver",
    7: "stomach",
    8: "aorta",
    9: "inferior_vena_cava",
    10: "portal_and_splenic_vein",
    11: "pancreas",
    12: "adrenal_gland_right",
    13: "adrenal_gland_left",
}

HU_AIR, HU_FAT, HU_MUSCLE, HU_VISCERAL, HU_BOWEL, HU_GAS, HU_BONE, HU_DISC = -1000, -100, 45, -80, 25, -850, 550, 60

#: mean HU of each organ (portal-venous phase contrast CT).
ORGAN_HU: dict[int, float] = {1: 110, 2: 150, 3: 150, 4: 10, 5: 45, 6: 100, 7: 25, 8: 170, 9: 130, 10: 150, 11: 80, 12: 40, 13: 40}

ORIENTATIONS = (("R", "A", "S"), ("L", "P", "S"), ("L", "A", "S"), ("A", "R", "S"))


@dataclass(frozen=True)
class PhantomCase:
    """One generated case: ``image`` (HU, int16) and ``label`` (uint8) as ``(X, Y, Z)`` arrays in RAS,
    with voxel ``spacing`` in mm and the ``orientation`` it is stored in."""

    image: np.ndarray
    label: np.ndarray
    spacing: tuple[float, float, float]
    orientation: tuple[str, str, str]


class _Grid:
    """Voxel-centre coordinates in mm of a RAS grid centred on the origin; ``box`` limits work to the
    voxels that can be inside a shape (organs are small compared with the volume)."""

    def __init__(self, shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> None:
        self.shape = shape
        self.spacing = np.asarray(spacing, dtype=np.float32)
        self.axes = [((np.arange(n, dtype=np.float32) - (n - 1) / 2) * sp) for n, sp in zip(shape, spacing)]

    def box(self, lo: np.ndarray, hi: np.ndarray) -> tuple[tuple[slice, ...], list[np.ndarray]]:
        sl, coords = [], []
        for ax, a, b in zip(self.axes, lo, hi):
            i0, i1 = np.searchsorted(ax, a, "left"), np.searchsorted(ax, b, "right")
            sl.append(slice(int(i0), int(max(i0, i1))))
            coords.append(ax[i0:i1])
        x, y, z = coords
        return tuple(sl), [x[:, None, None], y[None, :, None], z[None, None, :]]


def _rotation(rng: np.random.Generator, max_deg: tuple[float, float, float]) -> np.ndarray:
    """Random rotation matrix with angles (about x, y, z) up to ``max_deg``."""
    ax, ay, az = (np.deg2rad(rng.uniform(-m, m)) for m in max_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return (rz @ ry @ rx).astype(np.float32)


def _ellipsoid(grid: _Grid, centre: np.ndarray, axes: np.ndarray, rot: np.ndarray) -> tuple[tuple[slice, ...], np.ndarray]:
    """Boolean mask of a rotated ellipsoid inside its bounding box."""
    r = float(np.max(axes))
    sl, (x, y, z) = grid.box(centre - r, centre + r)
    dx, dy, dz = x - centre[0], y - centre[1], z - centre[2]
    # coordinates in the ellipsoid's frame: u = R^T d
    u = [rot[0, k] * dx + rot[1, k] * dy + rot[2, k] * dz for k in range(3)]
    inside = (u[0] / axes[0]) ** 2 + (u[1] / axes[1]) ** 2 + (u[2] / axes[2]) ** 2 <= 1.0
    return sl, inside


def _capsule(grid: _Grid, p0: np.ndarray, p1: np.ndarray, radius: float) -> tuple[tuple[slice, ...], np.ndarray]:
    """Boolean mask of a tube of ``radius`` mm around the segment ``p0 -> p1``."""
    lo, hi = np.minimum(p0, p1) - radius, np.maximum(p0, p1) + radius
    sl, (x, y, z) = grid.box(lo, hi)
    v = p1 - p0
    vv = float(v @ v) or 1.0
    t = np.clip(((x - p0[0]) * v[0] + (y - p0[1]) * v[1] + (z - p0[2]) * v[2]) / vv, 0.0, 1.0)
    d2 = (x - p0[0] - t * v[0]) ** 2 + (y - p0[1] - t * v[1]) ** 2 + (z - p0[2] - t * v[2]) ** 2
    return sl, d2 <= radius**2


def _paint(
    image: np.ndarray, label: np.ndarray | None, region: np.ndarray, shape_mask, hu: float, value: int, clear_label: np.ndarray | None = None
) -> None:
    """Set ``hu`` (and ``label = value``) where the shape lies inside ``region``; ``clear_label`` is
    a label map to reset to background there (tissue painted over an organ)."""
    sl, inside = shape_mask
    inside = inside & region[sl]
    image[sl][inside] = hu
    if label is not None:
        label[sl][inside] = value
    if clear_label is not None:
        clear_label[sl][inside] = 0


def generate_case(seed: int, index: int) -> PhantomCase:
    """Generate phantom ``index`` of the series ``seed`` (pure function of both)."""
    rng = np.random.default_rng([seed, index, GENERATOR_VERSION])
    inplane = float(rng.uniform(1.1, 1.6))
    spacing = (inplane, inplane, float(rng.choice([2.0, 2.5, 3.0, 4.0])))
    fov = np.array([380.0, 320.0, 250.0]) * rng.uniform(0.92, 1.08, 3)
    shape = tuple(int(round(f / s)) for f, s in zip(fov, spacing))
    grid = _Grid(shape, spacing)
    x, y, z = grid.axes[0][:, None, None], grid.axes[1][None, :, None], grid.axes[2][None, None, :]
    zmax = float(grid.axes[2][-1])

    # Body: elliptic cylinder, slightly wider at the top, shifted anteriorly off the table centre.
    a = rng.uniform(135, 170) * (1 + 0.06 * z / zmax)  # L-R semi-axis (mm), (1, 1, Z)
    b = rng.uniform(95, 125) * (1 + 0.04 * z / zmax)  # A-P semi-axis
    cy = rng.uniform(-10, 10)
    r_body = (x / a) ** 2 + ((y - cy) / b) ** 2
    body = r_body <= 1.0
    fat_mm, wall_mm = rng.uniform(8, 25), rng.uniform(6, 12)
    r_muscle = (x / (a - fat_mm)) ** 2 + ((y - cy) / (b - fat_mm)) ** 2
    r_visc = (x / (a - fat_mm - wall_mm)) ** 2 + ((y - cy) / (b - fat_mm - wall_mm)) ** 2
    image = np.full(shape, HU_AIR, dtype=np.float32)
    image[np.broadcast_to(body, shape)] = HU_FAT
    image[np.broadcast_to(r_muscle <= 1.0, shape)] = HU_MUSCLE
    visceral = np.broadcast_to(r_visc <= 1.0, shape)
    image[visceral] = HU_VISCERAL
    body = np.broadcast_to(body, shape)
    label = np.zeros(shape, dtype=np.uint8)

    a_in = float(np.mean(a)) - fat_mm - wall_mm  # inner cavity semi-axes (scalars) for organ placement
    b_in = float(np.mean(b)) - fat_mm - wall_mm

    def at(fx: float, fy: float, fz: float, jitter: float = 8.0) -> np.ndarray:
        """RAS point (+x = patient's right, +y = anterior, +z = superior) at fractions of the cavity (x of a_in, y of b_in around cy, z of zmax) plus jitter (mm)."""
        return np.array([fx * a_in, cy + fy * b_in, fz * zmax], dtype=np.float32) + rng.normal(0, jitter, 3).astype(np.float32)

    def size(*mm: float) -> np.ndarray:
        return np.array(mm, dtype=np.float32) * rng.uniform(0.85, 1.15, 3).astype(np.float32)

    # Bowel loops and gas in the visceral fat (background class).
    for _ in range(int(rng.integers(10, 18))):
        c = at(rng.uniform(-0.7, 0.7), rng.uniform(-0.1, 0.75), rng.uniform(-0.9, 0.4), 0)
        _paint(image, None, visceral, _ellipsoid(grid, c, size(22, 18, 30), _rotation(rng, (40, 40, 90))), HU_BOWEL, 0)
    for _ in range(int(rng.integers(3, 7))):
        c = at(rng.uniform(-0.6, 0.6), rng.uniform(0.0, 0.7), rng.uniform(-0.9, 0.3), 0)
        _paint(image, None, visceral, _ellipsoid(grid, c, size(12, 10, 14), np.eye(3, dtype=np.float32)), HU_GAS, 0)

    spine_y = cy - 0.62 * b_in  # centre of the vertebral bodies (posterior)
    rot = lambda *deg: _rotation(rng, deg)  # noqa: E731 - short local helper
    # Solid organs (painted large to small so smaller ones stay visible where they touch).
    organs = [
        (6, at(0.42, 0.05, 0.45), size(72, 66, 72), rot(10, 10, 20)),  # liver
        (1, at(-0.62, -0.30, 0.50), size(42, 26, 48), rot(15, 15, 30)),  # spleen
        (7, at(-0.36, 0.30, 0.45), size(50, 32, 44), rot(15, 15, 30)),  # stomach
        (2, at(0.42, -0.50, 0.05), size(26, 28, 50), rot(10, 10, 20)),  # kidney right
        (3, at(-0.42, -0.50, 0.12), size(26, 28, 50), rot(10, 10, 20)),  # kidney left
        (11, at(-0.10, -0.10, 0.15), size(62, 13, 15), rot(5, 5, 25)),  # pancreas
        (4, at(0.34, 0.30, 0.18), size(16, 15, 32), rot(20, 20, 20)),  # gallbladder
        (12, at(0.30, -0.42, 0.45, 4), size(9, 6, 16), rot(10, 10, 30)),  # adrenal right
        (13, at(-0.30, -0.42, 0.48, 4), size(9, 6, 16), rot(10, 10, 30)),  # adrenal left
    ]
    for value, centre, axes, r in organs:
        hu = ORGAN_HU[value] + rng.normal(0, 8)
        _paint(image, label, visceral, _ellipsoid(grid, centre, axes, r), hu, value)
    # Gas cap in the stomach (still labelled stomach, as in BTCV).
    st_centre, st_axes = organs[2][1], organs[2][2]
    gas = _ellipsoid(grid, st_centre + np.array([0, 0.5 * st_axes[1], 0.4 * st_axes[2]], np.float32), st_axes * 0.45, np.eye(3, dtype=np.float32))
    sl, inside = gas
    image[sl][inside & (label[sl] == 7)] = HU_GAS

    # Vessels: tubes painted last so they cross the organs they run through.
    aorta_x, ivc_x = -rng.uniform(0.02, 0.12) * a_in, rng.uniform(0.12, 0.22) * a_in
    vessel_y = spine_y + 30
    _paint(image, label, visceral, _capsule(grid, np.array([aorta_x, vessel_y, -zmax]), np.array([aorta_x, vessel_y, zmax]), rng.uniform(9, 13)), ORGAN_HU[8], 8)
    _paint(image, label, visceral, _capsule(grid, np.array([ivc_x, vessel_y + 5, -zmax]), np.array([ivc_x, vessel_y + 8, 0.7 * zmax]), rng.uniform(10, 13)), ORGAN_HU[9], 9)
    confluence = at(0.05, 0.0, 0.22, 5)
    _paint(image, label, visceral, _capsule(grid, confluence, organs[1][1] + np.array([25, 0, -10], np.float32), 5.0), ORGAN_HU[10], 10)
    _paint(image, label, visceral, _capsule(grid, confluence, organs[0][1] + np.array([-20, -10, -10], np.float32), 6.5), ORGAN_HU[10], 10)
    esophagus = at(-0.08, -0.35, 0.55, 3)
    _paint(image, label, visceral, _capsule(grid, esophagus, np.array([esophagus[0], esophagus[1], zmax + 5], np.float32), 7.5), ORGAN_HU[5], 5)

    # Vertebral column last among the tissues: bone is never covered by (or labelled as) an organ.
    for zc in np.arange(-zmax, zmax + 1, 32.0) + rng.uniform(0, 32):
        _paint(image, None, body, _ellipsoid(grid, np.array([0, spine_y, zc], np.float32), size(22, 18, 13), np.eye(3, dtype=np.float32)), HU_BONE, 0, clear_label=label)
        _paint(image, None, body, _ellipsoid(grid, np.array([0, spine_y, zc + 16], np.float32), size(21, 17, 3), np.eye(3, dtype=np.float32)), HU_DISC, 0, clear_label=label)
        _paint(image, None, body, _ellipsoid(grid, np.array([0, spine_y - 30, zc], np.float32), size(12, 14, 14), np.eye(3, dtype=np.float32)), HU_BONE, 0, clear_label=label)


    image += rng.normal(0, rng.uniform(8, 18), shape).astype(np.float32)
    image = np.clip(image, -1024, 3071).astype(np.int16)
    orientation = ORIENTATIONS[int(rng.integers(len(ORIENTATIONS)))]
    return PhantomCase(image=image, label=label, spacing=spacing, orientation=orientation)


def to_nifti(array: np.ndarray, spacing: tuple[float, float, float], orientation: tuple[str, str, str]) -> nib.Nifti1Image:
    """Wrap a RAS ``(X, Y, Z[, C])`` array as NIfTI, reoriented to ``orientation`` (data and affine)."""
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -(np.asarray(array.shape[:3]) - 1) / 2 * np.asarray(spacing)
    img = nib.Nifti1Image(array, affine)
    transform = nib.orientations.ornt_transform(
        nib.orientations.axcodes2ornt(("R", "A", "S")), nib.orientations.axcodes2ornt(orientation)
    )
    out = img.as_reoriented(transform)
    out.set_qform(out.affine, code=1)
    out.set_sform(out.affine, code=1)
    return out


def default_cache_dir() -> Path:
    """Where generated data lives: ``$SSL3D_CACHE_DIR`` or ``~/.cache/ssl3d``."""
    return Path(os.environ.get("SSL3D_CACHE_DIR", Path.home() / ".cache" / "ssl3d")).expanduser()


def _dataset_name(num_cases: int, num_validation: int, seed: int) -> str:
    key = hashlib.sha1(f"v{GENERATOR_VERSION}-{num_cases}-{num_validation}-{seed}".encode()).hexdigest()[:8]
    return f"ct_phantoms_v{GENERATOR_VERSION}_n{num_cases}_v{num_validation}_s{seed}_{key}"


def cached_dataset(root: str | os.PathLike | None, name: str, build: Callable[[Path], dict]) -> Path:
    """``root/name`` holding a generated dataset, built once by ``build(tmp_folder) -> dataset.json content``.

    The dataset is written to a temporary folder and renamed into place, so an interrupted or
    concurrent generation never leaves a half-written dataset behind.
    """
    root = Path(root) if root else default_cache_dir()
    target = root / name
    if (target / "dataset.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp_phantoms_", dir=root))
    try:
        manifest = build(tmp)
        (tmp / "dataset.json").write_text(json.dumps(manifest, indent=2))
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first: keep its copy
            if not (target / "dataset.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def write_labelled_cases(folder: Path, cases: Iterable[tuple[str, nib.Nifti1Image, nib.Nifti1Image]], num_validation: int) -> dict:
    """Save ``(file name, image, label)`` cases into ``folder/imagesTr`` and ``folder/labelsTr``.

    Returns the Decathlon lists: ``numTraining``, ``training`` (all but the last ``num_validation``
    cases) and ``validation``, with paths relative to ``folder``.
    """
    (folder / "imagesTr").mkdir()
    (folder / "labelsTr").mkdir()
    items = []
    for name, image, label in cases:
        nib.save(image, folder / "imagesTr" / name)
        nib.save(label, folder / "labelsTr" / name)
        items.append({"image": f"imagesTr/{name}", "label": f"labelsTr/{name}"})
    n_train = len(items) - num_validation
    return {"numTraining": n_train, "training": items[:n_train], "validation": items[n_train:]}


def ensure_phantom_dataset(root: str | os.PathLike | None = None, num_cases: int = 16, num_validation: int = 4, seed: int = 0) -> Path:
    """Return the folder of a phantom CT dataset, generating it on first use (see :func:`cached_dataset`).

    The folder holds ``imagesTr/``, ``labelsTr/`` and a Decathlon-style ``dataset.json`` whose
    ``training`` list has ``num_cases - num_validation`` cases and ``validation`` the rest.
    """
    if num_cases < 1 or not 0 <= num_validation < num_cases:
        raise ValueError(f"need num_cases >= 1 and 0 <= num_validation < num_cases, got {num_cases}, {num_validation}")

    def build(tmp: Path) -> dict:
        logger.info(f"Generating {num_cases} synthetic CT phantoms (seed {seed}) into {root or default_cache_dir()} (once; cached after).")

        def cases():
            for i in range(num_cases):
                case = generate_case(seed, i)
                yield f"phantom_{i:03d}.nii.gz", *(to_nifti(a, case.spacing, case.orientation) for a in (case.image, case.label))

        return {
            "name": "ssl3d synthetic abdominal CT phantoms",
            "description": "Deterministic synthetic CT in HU with the 13 BTCV organs (generated, not real patients).",
            "modality": {"0": "CT"},
            "labels": {str(k): v for k, v in BTCV_LABELS.items()},
            "generator_version": GENERATOR_VERSION,
            "seed": seed,
            **write_labelled_cases(tmp, cases(), num_validation),
        }

    return cached_dataset(root, _dataset_name(num_cases, num_validation, seed), build)
