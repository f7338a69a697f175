"""Embedded synthetic CT phantoms: deterministic, anatomical HU, varied geometry, cached once."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np

from common.data.phantoms import (
    BTCV_LABELS,
    ORGAN_HU,
    ensure_phantom_dataset,
    generate_case,
)


def test_cases_are_deterministic_and_differ_between_indices():
    a, b = generate_case(0, 1), generate_case(0, 1)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.label, b.label) and a.spacing == b.spacing
    c = generate_case(0, 2)
    assert a.image.shape != c.image.shape or not np.array_equal(a.image, c.image)
    assert not np.array_equal(generate_case(1, 1).label.shape, a.label.shape) or not np.array_equal(generate_case(1, 1).label, a.label)


def test_case_has_all_btcv_organs_and_ct_intensities():
    case = generate_case(0, 0)
    assert set(np.unique(case.label)) == set(BTCV_LABELS)
    img = case.image.astype(np.float32)
    corners = img[:5, :5, :]
    assert corners.mean() < -950, "outside the body must be air"
    for organ in (1, 2, 6, 8):  # spleen, kidney, liver, aorta: mean HU near their set value (noise averages out)
        assert abs(np.median(img[case.label == organ]) - ORGAN_HU[organ]) < 30
    body = img > -500
    fat = (img > -150) & (img < -50)
    assert fat.sum() > 0.05 * body.sum(), "subcutaneous/visceral fat present"
    assert (img > 300).sum() > 1000, "bone present"


def test_dataset_is_cached_with_varied_spacing_and_orientation(tmp_path):
    root = ensure_phantom_dataset(tmp_path, num_cases=6, num_validation=2)
    manifest = json.loads((root / "dataset.json").read_text())
    assert len(manifest["training"]) == 4 and len(manifest["validation"]) == 2
    spacings, orientations = set(), set()
    for item in manifest["training"] + manifest["validation"]:
        img, lab = nib.load(root / item["image"]), nib.load(root / item["label"])
        assert img.shape == lab.shape and np.allclose(img.affine, lab.affine)
        spacings.add(tuple(np.round(img.header.get_zooms(), 3)))
        orientations.add(nib.aff2axcodes(img.affine))
    assert len(spacings) >= 3 and len(orientations) >= 2
    mtime = (root / "dataset.json").stat().st_mtime_ns
    assert ensure_phantom_dataset(tmp_path, num_cases=6, num_validation=2) == root
    assert (root / "dataset.json").stat().st_mtime_ns == mtime, "second call must reuse the cache"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")], "no temporary folder left"


def test_reoriented_file_holds_the_same_anatomy(tmp_path):
    root = ensure_phantom_dataset(tmp_path, num_cases=3, num_validation=0)
    manifest = json.loads((root / "dataset.json").read_text())
    for i, item in enumerate(manifest["training"]):
        img = nib.load(root / item["image"])
        ras = nib.as_closest_canonical(img).get_fdata().astype(np.int16)
        assert np.array_equal(ras, generate_case(0, i).image)
