"""BraTS region conversion, case checks, label-map saving and training subsets."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.transforms import LoadImaged, Spacingd

from common.data import take_fraction
from common.transforms import REGION_PRESETS, BratsRegions, label_regions, region_label_values, region_value_names, BratsRegionsd, BratsRegionsToLabel, CaseDataError, CheckSegmentationCased, LoadImageCheckedd, SaveLabelMapd, SpacingKeepExtrasd, pending_cases
from conftest import real_data


@pytest.mark.parametrize(
    "scheme, label, tc, wt, et",
    [
        # MSD Task01: 1 oedema, 2 non-enhancing tumour, 3 enhancing tumour
        ("msd", [0, 1, 2, 3], [0, 0, 1, 1], [0, 1, 1, 1], [0, 0, 0, 1]),
        # BraTS 2018-2021: 1 necrotic core, 2 oedema, 4 enhancing
        ("brats2021", [0, 1, 2, 4], [0, 1, 0, 1], [0, 1, 1, 1], [0, 0, 0, 1]),
        ("brats2023", [0, 1, 2, 3], [0, 1, 0, 1], [0, 1, 1, 1], [0, 0, 0, 1]),
        # BraTS 2013-2017: 1 necrosis, 2 oedema, 3 non-enhancing tumour, 4 enhancing (3 is written back as 1: see below)
        ("brats2013_2017", [0, 1, 2, 4], [0, 1, 0, 1], [0, 1, 1, 1], [0, 0, 0, 1]),
    ],
)
def test_brats_regions_follow_each_numbering(scheme, label, tc, wt, et):
    lab = torch.tensor(label).reshape(1, -1, 1, 1)
    regions = BratsRegions(scheme)(lab)
    assert regions.shape == (3, len(label), 1, 1)
    assert regions[:, :, 0, 0].tolist() == [tc, wt, et]
    # nested regions: ET within TC within WT, for every voxel
    assert torch.all(regions[2] <= regions[0]) and torch.all(regions[0] <= regions[1])
    assert torch.equal(BratsRegionsToLabel(scheme)(regions)[0].long(), lab[0].long())


def test_brats_regions_refuse_labels_of_another_numbering(tmp_path):
    lab = torch.tensor([0, 1, 2, 4]).reshape(1, -1, 1, 1)  # challenge numbering given to the MSD rule
    with pytest.raises(ValueError, match=r"label values \[4\] are not part of the 'msd'"):
        BratsRegions("msd")(lab)
    path = tmp_path / "BRATS_007.nii.gz"
    nib.save(nib.Nifti1Image(np.array([0, 1, 2, 4], np.uint8).reshape(4, 1, 1), np.eye(4)), path)
    d = LoadImageCheckedd("label", image_only=True, ensure_channel_first=True)({"label": str(path)})
    with pytest.raises(ValueError, match="BRATS_007.nii.gz"):
        BratsRegionsd("label", regions="msd")(d)
    with pytest.raises(ValueError, match="unknown label region preset 'brats2019'"):
        BratsRegions("brats2019")
    assert set(REGION_PRESETS) == {"msd", "brats2013_2017", "brats2021", "brats2023"}


def test_brats_2013_regions_put_non_enhancing_tumour_in_the_core_and_write_it_back_as_core():
    """BraTS 2013-2017: TC = {1, 3, 4}, WT = {1, 2, 3, 4}, ET = {4} (the issue's definition)."""
    lab = torch.tensor([0, 1, 2, 3, 4]).reshape(1, -1, 1, 1)
    regions = BratsRegions("brats2013_2017")(lab)
    assert regions[:, :, 0, 0].tolist() == [[0, 1, 0, 1, 1], [0, 1, 1, 1, 1], [0, 0, 0, 0, 1]]
    assert BratsRegionsToLabel("brats2013_2017")(regions).flatten().tolist() == [0, 1, 2, 1, 4]
    assert region_label_values("brats2013_2017") == {"TC": 1, "WT": 2, "ET": 4}
    assert region_value_names("brats2013_2017") == {1: "TC", 2: "WT", 4: "ET"}


def test_regions_given_as_data_with_their_own_names_order_and_values():
    regions = {"whole": [5, 6, 7], "active": [7]}  # any names; the channel order is the mapping's order
    lab = torch.tensor([0, 5, 6, 7]).reshape(1, -1, 1, 1)
    masks = BratsRegions(regions)(lab)
    assert masks[:, :, 0, 0].tolist() == [[0, 1, 1, 1], [0, 0, 0, 1]]
    assert BratsRegionsToLabel(regions)(masks).flatten().tolist() == [0, 5, 5, 7]
    assert BratsRegionsToLabel(regions, {"whole": 6, "active": 7})(masks).flatten().tolist() == [0, 6, 6, 7]
    assert label_regions(regions) == {"whole": (5, 6, 7), "active": (7,)}
    with pytest.raises(ValueError, match="overlap without one containing the other"):
        region_label_values({"a": [1, 2], "b": [2, 3]})
    with pytest.raises(ValueError, match="no label value of its own"):
        region_label_values({"all": [1, 2], "one": [1], "two": [2]})
    with pytest.raises(ValueError, match="positive integer"):
        label_regions({"TC": [0, 1]})
    with pytest.raises(ValueError, match="one value for each region"):
        BratsRegionsToLabel(regions, {"whole": 6})


def test_prediction_regions_to_label_resolve_overlaps_from_inside_out():
    # voxel 0: ET only (inconsistent prediction) -> enhancing; voxel 1: TC+WT -> core; voxel 2: WT -> oedema
    regions = torch.tensor([[0, 1, 0, 0], [0, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.float32).reshape(3, 4, 1, 1)
    assert BratsRegionsToLabel("msd")(regions).flatten().tolist() == [3, 2, 1, 0]
    assert BratsRegionsToLabel("brats2021")(regions).flatten().tolist() == [4, 1, 2, 0]


def _write(path, array, affine=None):
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), path)
    return str(path)


def _load_case(tmp_path, image, label, name="case_12"):
    d = {"image": _write(tmp_path / f"{name}.nii.gz", image), "label": _write(tmp_path / f"{name}_label.nii.gz", label)}
    return LoadImageCheckedd(["image", "label"], image_only=True, ensure_channel_first=True)(d)


def test_case_checks_name_the_file_and_the_fault(tmp_path):
    image = np.zeros((8, 8, 6), np.float32)
    label = np.zeros((8, 8, 6), np.uint8)
    check = CheckSegmentationCased(in_channels=1, num_classes=14)
    check(_load_case(tmp_path, image, label))  # a good case passes

    with pytest.raises(CaseDataError, match=r"label '.*case_12_label.nii.gz' has spatial shape \(8, 8, 5\) but its image '.*case_12.nii.gz' has \(8, 8, 6\)"):
        check(_load_case(tmp_path, image, label[..., :5]))
    bad = label.copy()
    bad[0, 0, 0] = 14
    with pytest.raises(CaseDataError, match=r"case_12_label.nii.gz' holds values \[14\] outside the 0..13"):
        check(_load_case(tmp_path, image, bad))
    with pytest.raises(CaseDataError, match=r"non-integer"):
        check(_load_case(tmp_path, image, label.astype(np.float32) + 0.5))

    mri = np.zeros((8, 8, 6, 2), np.float32)  # two sequences where four are expected
    four = CheckSegmentationCased(in_channels=4, label_values=[0, 1, 2, 3], channel_names=["FLAIR", "T1w", "T1gd", "T2w"])
    with pytest.raises(CaseDataError, match=r"image '.*case_12.nii.gz' has 2 channel\(s\) but the network expects 4 \(FLAIR, T1w, T1gd, T2w\)"):
        four(_load_case(tmp_path, mri, label))
    gap = label.copy()
    gap[1, 1, 1] = 4
    with pytest.raises(CaseDataError, match=r"values \[4\] outside the \[0, 1, 2, 3\]"):
        four(_load_case(tmp_path, np.zeros((8, 8, 6, 4), np.float32), gap))


def test_label_maps_are_saved_with_the_affine_and_never_overwritten(tmp_path):
    affine = np.array([[-1.5, 0, 0, 10], [0, -1.5, 0, 20], [0, 0, 3.0, -5], [0, 0, 0, 1]])
    image_path = _write(tmp_path / "img0007.nii.gz", np.zeros((6, 5, 4), np.int16), affine)
    d = LoadImageCheckedd("image", image_only=True, ensure_channel_first=True)({"image": image_path})
    pred = d["image"].clone()
    pred[0, 1:3, 1:3, 1:3] = 6
    out = tmp_path / "out"
    saved = SaveLabelMapd("pred", output_dir=str(out))({"image": d["image"], "pred": pred})
    written = nib.load(saved["pred_path"])
    assert saved["pred_path"].endswith("img0007_seg.nii.gz")
    assert written.shape == (6, 5, 4) and np.allclose(written.affine, affine)
    assert int(np.asarray(written.dataobj).sum()) == 6 * 8 and written.get_data_dtype() == np.uint8
    assert not list(out.glob(".*tmp"))  # no temporary left behind
    with pytest.raises(FileExistsError, match="img0007_seg.nii.gz exists"):
        SaveLabelMapd("pred", output_dir=str(out))({"image": d["image"], "pred": pred})

    items = [{"image": image_path}, {"image": _write(tmp_path / "img0008.nii.gz", np.zeros((6, 5, 4), np.int16))}]
    assert [it["image"] for it in pending_cases(items, out)] == [items[1]["image"]]
    assert len(pending_cases(items, out, overwrite=True)) == 2
    (tmp_path / "other").mkdir()
    clash = [items[0], {"image": _write(tmp_path / "other" / "img0007.nii.gz", np.zeros((2, 2, 2), np.int16))}]
    with pytest.raises(ValueError, match="would both be written"):
        pending_cases(clash, out)


def test_train_fraction_is_seeded_nested_and_never_empty():
    items = list(range(24))
    quarter, half = take_fraction(items, 0.25, seed=3), take_fraction(items, 0.5, seed=3)
    assert len(quarter) == 6 and len(half) == 12 and set(quarter) <= set(half)
    assert quarter == take_fraction(items, 0.25, seed=3) and quarter != take_fraction(items, 0.25, seed=4)
    assert take_fraction(items, 1.0) == items and len(take_fraction(items, 0.01)) == 1
    with pytest.raises(ValueError, match="train_fraction"):
        take_fraction(items, 0.0)


def test_thread_loader_raises_data_errors_instead_of_ending_early():
    from monai.data import Dataset

    from common.data import CheckedThreadDataLoader

    def load(i):
        if i == 3:
            raise ValueError("case 3 is corrupt")
        return i

    loader = CheckedThreadDataLoader(Dataset(list(range(6)), transform=load), batch_size=1, num_workers=0)
    seen = []
    with pytest.raises(RuntimeError) as err:  # MONAI wraps transform errors in "applying transform ..."
        for batch in loader:
            seen.append(int(batch[0]))
    assert "case 3 is corrupt" in str(err.value.__cause__)
    assert seen == [0, 1, 2]
    good = CheckedThreadDataLoader(Dataset(list(range(5))), batch_size=2, num_workers=0, repeats=2)
    assert [b.tolist() for b in good] == [[0, 1], [0, 1], [2, 3], [2, 3], [4], [4]]


def test_spacing_keeps_string_entries_named_like_meta_dicts():
    """MONAI Label adds ``image_path`` (a string) to the data; MONAI's Spacingd calls .update() on it."""
    path = str(real_data("msd_spleen_crop", "sub-spleen2_ct.nii.gz"))
    d = LoadImaged("image", ensure_channel_first=True)({"image": path})
    with pytest.raises(AttributeError):
        Spacingd("image", pixdim=(3.0, 3.0, 3.0))({**d, "image_path": path})
    spacing = SpacingKeepExtrasd("image", pixdim=(3.0, 3.0, 3.0))
    out = spacing({**d, "image_path": path})
    assert out["image_path"] == path and out["image"].pixdim.tolist() == pytest.approx([3.0, 3.0, 3.0])
    assert spacing.inverse(out)["image"].shape == d["image"].shape  # still invertible (Invertd in postprocessing)
