"""DICOM series in: a series written from the real CT (pydicom, in the test) reads like its NIfTI, is
found as a case in a dataset folder, is checked for broken series, and is predicted in its geometry."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import BUNDLES, assert_ok, real_data, run_bundle_here
from dicom_series import SCANNER_QUIRKS, write_ct_series, write_scanner_series
from monai.bundle import ConfigParser
from monai.transforms import LoadImage

from common.data import resolve_cases
from common.data.dicom import dicom_files, find_dicom_series, series_problems
from common.transforms import LoadImageCheckedd

CONFIGS = BUNDLES / "btcv_finetune" / "configs"


@pytest.mark.parametrize("case", [("ts_ct_full", "example_ct.nii.gz"), ("msd_spleen_crop", "sub-spleen2_ct.nii.gz")], ids=["3mm_iso", "anisotropic_5mm"])
def test_series_reads_with_the_niftis_voxels_and_affine(tmp_path, case):
    nifti = real_data(case[0]) / case[1]
    folder = write_ct_series(nifti, tmp_path / "series", slope=1.0, intercept=-2048.0)
    series = LoadImage(image_only=True)(str(folder))
    ref = LoadImage(image_only=True)(str(nifti))
    assert series.shape == ref.shape
    assert np.array_equal(np.asarray(series), np.round(np.asarray(ref)))  # HU back through RescaleSlope/Intercept
    assert np.allclose(series.affine, ref.affine, atol=1e-4)
    # and through a bundle's own loading and preprocessing (orientation, spacing, HU window, crop)
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "inference.json"))
    parser.update({"bundle_root": str(tmp_path), "pixdim": [3.0, 3.0, 3.0]})
    pre = parser.get_parsed_content("preprocessing")
    a, b = pre({"image": str(folder)})["image"], pre({"image": str(nifti)})["image"]
    assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5) and np.allclose(a.affine, b.affine, atol=1e-4)
    assert LoadImageCheckedd("image", image_only=True, ensure_channel_first=True)({"image": str(folder)})["image"].shape[0] == 1


def test_series_checks_name_each_broken_series(tmp_path):
    nifti = real_data("ts_ct_small") / "example_ct_sm.nii.gz"
    n = nib.load(nifti).shape[2]
    good = write_ct_series(nifti, tmp_path / "good")
    assert series_problems(good, "CT") == [] and len(dicom_files(good)) == n
    gap = write_ct_series(nifti, tmp_path / "gap", slices=[k for k in range(n) if k not in (10, 11)])
    assert "about 2 missing slice(s)" in series_problems(gap)[0] and str(gap) in series_problems(gap)[0]
    dup = write_ct_series(nifti, tmp_path / "dup", slices=[*range(n), 5])
    assert "1 duplicate slice position(s)" in series_problems(dup)[0]
    mixed = write_ct_series(nifti, tmp_path / "mixed", slices=list(range(15)), prefix="a")
    write_ct_series(nifti, mixed, slices=list(range(15, n)), prefix="b")
    assert series_problems(mixed)[0].startswith(f"mixed series: {mixed} holds 2 DICOM series")
    uneven = write_ct_series(nifti, tmp_path / "uneven", z_positions=[3.0 * k + 0.05 * k * k for k in range(n)])
    assert "non-uniform slice spacing" in series_problems(uneven)[0]
    mr = write_ct_series(nifti, tmp_path / "mr", modality="MR")
    assert series_problems(mr, "CT") == [f"modality MR but this bundle expects CT: {mr}"] and series_problems(mr) == []
    empty = tmp_path / "empty"
    empty.mkdir()
    assert series_problems(empty) == [f"no DICOM files in series folder {empty}"]


def test_dataset_dir_finds_series_folders_and_nifti_files(tmp_path):
    nifti = real_data("ts_ct_small") / "example_ct_sm.nii.gz"
    write_ct_series(nifti, tmp_path / "data" / "patient1" / "1.2.840.113619.2.55")  # a UID-named series folder
    write_ct_series(nifti, tmp_path / "data" / "patient2" / "CT")
    nib.save(nib.load(nifti), tmp_path / "data" / "scan.nii.gz")
    assert [p.name for p in find_dicom_series(tmp_path / "data")] == ["1.2.840.113619.2.55", "CT"]
    items = resolve_cases(dataset_dir=str(tmp_path / "data"))
    assert sorted(i["image"].rsplit("/", 1)[-1] for i in items) == ["1.2.840.113619.2.55", "CT", "scan.nii.gz"]


def test_one_series_folder_per_channel_stacks_and_passes_the_checks(tmp_path):
    """Multi-sequence MRI as one series per sequence (brats_finetune's ``image`` list): channels stack."""
    from common.data.case_checks import CaseChecks, check_case

    nifti = real_data("ts_ct_small") / "example_ct_sm.nii.gz"
    folders = [str(write_ct_series(nifti, tmp_path / seq, modality="MR")) for seq in ("flair", "t1c")]
    image = LoadImageCheckedd("image", image_only=True, ensure_channel_first=True)({"image": folders})["image"]
    assert image.shape[0] == 2 and torch.equal(image[0], image[1])
    assert check_case({"image": folders}, CaseChecks(in_channels=2)) == []
    assert "2 channel(s) but the bundle expects 4" in check_case({"image": folders}, CaseChecks(in_channels=4))[0]


def _btcv_labels() -> tuple[np.ndarray, np.ndarray]:
    """ts_ct_full's TotalSegmentator map as BTCV labels (the bundle's own mapping), and its affine."""
    mapping = json.loads((CONFIGS / "totalsegmentator_to_btcv.json").read_text())
    seg = nib.load(real_data("ts_ct_full") / "example_seg_fast_force_split.nii.gz")
    lookup = np.zeros(256, np.uint8)
    lookup[mapping["label_values_in"]] = mapping["label_values_out"]
    return lookup[np.asarray(seg.dataobj).astype(np.int64)], seg.affine


def test_dicom_seg_references_the_series_and_holds_the_label_map_slice_by_slice(tmp_path):
    import highdicom as hd
    import pydicom

    from common.data.dicom import dicom_files
    from common.transforms import write_dicom_seg

    folder = write_ct_series(real_data("ts_ct_full") / "example_ct.nii.gz", tmp_path / "series")
    labels, affine = _btcv_labels()
    names = json.loads((CONFIGS / "train.json").read_text())["class_names"]
    path = write_dicom_seg(folder, labels, affine, {i + 1: n for i, n in enumerate(names)}, tmp_path / "seg.dcm", "btcv_finetune")
    seg = hd.seg.segread(path)
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in dicom_files(folder)]
    assert seg.Modality == "SEG" and {s.SeriesInstanceUID for s in sources} == {seg.ReferencedSeriesSequence[0].SeriesInstanceUID}
    assert [d.SegmentLabel for d in seg.SegmentSequence] == names
    uids = [s.SOPInstanceUID for s in sources]
    k_of = {s.SOPInstanceUID: int(s.InstanceNumber) - 1 for s in sources}  # write_ct_series: slice k is instance k + 1
    frames = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, combine_segments=True, skip_overlap_checks=True)
    expected = np.stack([labels[:, :, k_of[u]].T for u in uids])
    assert frames.shape == expected.shape and np.array_equal(frames, expected)  # every organ voxel on its source pixel
    assert (expected == 6).sum() > 10000  # the liver is there to be found


def _on_grid(array: np.ndarray, affine: np.ndarray, shape: tuple[int, ...], target_affine: np.ndarray) -> np.ndarray:
    """``array`` (voxel-to-world ``affine``) sampled at the voxel centres of the ``shape``/``target_affine`` grid,
    nearest voxel, 0 outside: numpy only, independent of the code under test."""
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape[:3]], indexing="ij"), -1).reshape(-1, 3)
    world = ijk @ np.asarray(target_affine)[:3, :3].T + np.asarray(target_affine)[:3, 3]
    src = np.rint((world - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T).astype(np.int64)
    inside = np.all((src >= 0) & (src < np.asarray(array.shape[:3])), axis=1)
    out = np.zeros(len(src), dtype=array.dtype)
    out[inside] = array[src[inside, 0], src[inside, 1], src[inside, 2]]
    return out.reshape(shape[:3])


def _seg_in_world(path) -> tuple[np.ndarray, np.ndarray]:
    """A DICOM-SEG decoded by highdicom into a label volume and its RAS affine (highdicom's own geometry)."""
    import highdicom as hd

    vol = hd.seg.segread(path).get_volume(combine_segments=True, skip_overlap_checks=True)
    return np.asarray(vol.array), np.diag([-1.0, -1.0, 1.0, 1.0]) @ vol.affine


@pytest.mark.parametrize("quirks", [SCANNER_QUIRKS, ()], ids=["scanner_quirks", "scanner_header"])
def test_dicom_seg_on_a_scanners_series_matches_an_independent_conversion_in_world_coordinates(tmp_path, quirks):
    import dicom2nifti

    from common.transforms import write_dicom_seg

    ct, manual = real_data("msd_spleen_crop") / "sub-spleen2_ct.nii.gz", real_data("msd_spleen_crop") / "sub-spleen2_ct_seg-manual.nii.gz"
    folder = write_scanner_series(ct, tmp_path / "CT_SERIES", quirks)
    assert series_problems(folder, "CT") == []
    image = LoadImage(image_only=True)(str(folder))  # as a bundle reads it: stacked in InstanceNumber order, head down
    lab, ref_ct = nib.load(manual), nib.load(ct)
    spleen = np.rint(np.asarray(lab.dataobj)).astype(np.int64)
    labels = _on_grid(spleen, lab.affine, image.shape, np.asarray(image.affine))  # the manual label as a prediction on that grid
    assert labels.sum() == spleen.sum() > 1000
    path = write_dicom_seg(folder, labels, np.asarray(image.affine), {1: "spleen"}, tmp_path / "seg.dcm")
    converted = tmp_path / "dicom2nifti.nii.gz"  # the independent conversion's grid (its own slice order and affine)
    dicom2nifti.dicom_series_to_nifti(str(folder), str(converted), reorient_nifti=False)
    grid = nib.load(converted)
    hu = np.round(np.asarray(ref_ct.dataobj))
    assert np.array_equal(np.asarray(grid.dataobj), _on_grid(hu, ref_ct.affine, grid.shape, grid.affine))  # same CT, same world grid
    seg, seg_affine = _seg_in_world(path)
    on_grid = _on_grid(seg, seg_affine, grid.shape, grid.affine)
    assert np.array_equal(on_grid, _on_grid(spleen, lab.affine, grid.shape, grid.affine))  # voxel for voxel in world coordinates
    assert on_grid.sum() == spleen.sum()


def test_a_series_without_what_dicom_seg_or_the_reader_need_is_named(tmp_path):
    from common.transforms import write_dicom_seg

    ct = real_data("ts_ct_small") / "example_ct_sm.nii.gz"
    no_frame = write_scanner_series(ct, tmp_path / "no_frame", drop=("FrameOfReferenceUID",))
    labels = np.ones(nib.load(ct).shape, dtype=np.int64)
    with pytest.raises(ValueError, match=r"IM00001: no FrameOfReferenceUID \(0020,0052\).*dicom_seg false"):
        write_dicom_seg(no_frame, labels, nib.load(ct).affine, {1: "body"}, tmp_path / "seg.dcm")
    unnumbered = write_scanner_series(ct, tmp_path / "unnumbered", drop=("InstanceNumber",))
    assert series_problems(unnumbered)[0].startswith("30 slice(s) without an InstanceNumber (e.g. IM00001)")
    shuffled = write_ct_series(ct, tmp_path / "shuffled")
    import pydicom

    from common.data.dicom import dicom_files

    for f in dicom_files(shuffled)[:2]:  # swap the first two slices' numbers
        ds = pydicom.dcmread(f)
        ds.InstanceNumber = 3 - int(ds.InstanceNumber)
        ds.save_as(f)
    assert "InstanceNumber order" in series_problems(shuffled)[0]


@pytest.mark.slow
def test_inference_on_a_scanners_series_writes_nifti_in_its_geometry_and_dicom_seg_when_asked(tmp_path):
    folder = write_scanner_series(real_data("ts_ct_full") / "example_ct.nii.gz", tmp_path / "data" / "CT_SERIES")
    torch.manual_seed(0)
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "inference.json"), str(CONFIGS / "demo.json")])
    (tmp_path / "models").mkdir()
    torch.save(parser.get_parsed_content("network_def").state_dict(), tmp_path / "models" / "model.pt")
    o = {"bundle_root": str(tmp_path), "run_dir": str(tmp_path), "dataset_dir": str(tmp_path / "data"), "num_workers": 0, "dicom_seg": True}
    out = assert_ok(run_bundle_here([CONFIGS / "inference.json", CONFIGS / "demo.json"], o))
    assert "1 DICOM series folders" in out  # found by dataset_dir discovery
    pred = nib.load(tmp_path / "eval" / "predictions" / "CT_SERIES_seg.nii.gz")
    series = LoadImage(image_only=True)(str(folder))  # the NIfTI prediction is in the series' geometry as read
    assert pred.shape == series.shape and np.allclose(pred.affine, series.affine, atol=1e-4) and np.asarray(pred.dataobj).max() > 0
    seg, seg_affine = _seg_in_world(tmp_path / "eval" / "predictions" / "CT_SERIES_seg.dcm")
    labels = np.asarray(pred.dataobj).astype(np.int64)
    assert np.array_equal(_on_grid(seg, seg_affine, pred.shape, pred.affine), labels)  # the NIfTI and the SEG agree in world coordinates
