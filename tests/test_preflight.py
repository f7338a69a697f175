"""Pre-flight check: every input fault of a dataset is found, named with its file, and reported at once."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from bad_cases import FAULTS, write_bad_dataset
from conftest import BUNDLES, REPO

from common.data import (
    CaseChecks,
    CaseSource,
    DatalistError,
    DataPreflightError,
    checked_cases,
    load_datalist,
    preflight,
)

CHECKS = CaseChecks(in_channels=1, num_classes=3, foreground_threshold=-500)


@pytest.fixture(scope="module")
def bad_datalist(tmp_path_factory):
    return write_bad_dataset(tmp_path_factory.mktemp("bad"))


def test_every_fault_is_found_in_one_pass_and_names_its_file(bad_datalist):
    items = load_datalist(bad_datalist, check_files=False)
    report = preflight(items, CHECKS)
    assert report.num_cases == 2 + len(FAULTS)
    by_name = {case.split("/")[-1].removesuffix(".nii.gz"): problems for case, problems in report.problems.items()}
    assert sorted(by_name) == sorted(FAULTS)  # the good cases pass, every bad one is caught
    for name, phrase in FAULTS.items():
        expected = 2 if name == "missing" else 1  # a missing case lacks its image and its label
        assert len(by_name[name]) == expected and phrase in by_name[name][0], (name, by_name[name])
        assert f"{name}.nii.gz" in by_name[name][0]  # the message names the file


def test_stop_lists_every_problem_and_skip_keeps_the_good_cases(bad_datalist, tmp_path):
    items = load_datalist(bad_datalist, check_files=False)
    with pytest.raises(DataPreflightError) as err:
        checked_cases(items, CHECKS, on_bad="stop", report_path=tmp_path / "report.json")
    message = str(err.value)
    assert f"{len(FAULTS)} of {len(items)} case(s) have problems" in message and "nothing was trained" in message
    assert all(f"{name}.nii.gz" in message for name in FAULTS)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["num_bad"] == len(FAULTS) and len(report["problems"]) == len(FAULTS)

    good = checked_cases(items, CHECKS, on_bad="skip")
    assert [g["image"].split("/")[-1] for g in good] == ["good_0.nii.gz", "good_1.nii.gz"]
    with pytest.raises(DataPreflightError, match="none of the"):
        checked_cases(items[2:], CHECKS, on_bad="skip")


def test_checks_follow_the_bundle_settings(bad_datalist):
    items = load_datalist(bad_datalist, check_files=False)
    by = {i["image"].split("/")[-1].removesuffix(".nii.gz"): i for i in items}
    # the label mapping runs before the range check: 7 -> 2 is fine
    assert preflight([by["labels"]], CaseChecks(num_classes=3, label_map_from=[7], label_map_to=[2])).problems == {}
    assert preflight([by["labels"]], CaseChecks(label_values=[0, 1, 7])).problems == {}
    assert "outside the [0, 1, 2]" in next(iter(preflight([by["labels"]], CaseChecks(label_values=[0, 1, 2])).problems.values()))[0]
    # inference does not read labels; MRI (no threshold) only refuses a constant image
    assert preflight([by["shape"], by["labels"]], CaseChecks(check_labels=False)).problems == {}
    assert preflight([by["good_0"]], CaseChecks()).problems == {}
    assert "blank" in next(iter(preflight([by["air"]], CaseChecks()).problems.values()))[0]
    # header-only mode is fast and still catches structural faults, but not voxel content
    fast = preflight(items, CaseChecks(in_channels=1, num_classes=3, foreground_threshold=-500, read_voxels=False))
    found = {c.split("/")[-1].removesuffix(".nii.gz") for c in fast.problems}
    assert found == {"missing", "empty", "garbage", "shape", "affine", "channels"}


def test_datalist_faults_report_all_missing_files_and_the_keys_it_has(bad_datalist, tmp_path):
    with pytest.raises(DatalistError) as err:
        load_datalist(bad_datalist)
    assert "2 file(s) named in the datalist do not exist" in str(err.value)
    assert "'training' entry 2: field 'image'" in str(err.value) and "'training' entry 2: field 'label'" in str(err.value)
    with pytest.raises(DatalistError, match=r"has no 'train' list \(it has: \['training', 'validation'\]\)"):
        load_datalist(bad_datalist, keys=["train"])
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"training": [{"img": "a.nii.gz"}]}))
    with pytest.raises(DatalistError, match=r"'training' entry 0: expected an object with an 'image' field, got \{'img'"):
        load_datalist(wrong)
    wrong.write_text(json.dumps({"training": {"image": "a.nii.gz"}}))
    with pytest.raises(DatalistError, match="'training' must be a list of cases, got a dict"):
        load_datalist(wrong)


def test_case_source_skips_reports_and_names_cases(bad_datalist, tmp_path):
    source = CaseSource(datalist=str(bad_datalist), checks=CHECKS, on_bad_case="skip", report_dir=str(tmp_path))
    cases = source.cases(["training"])
    assert [c["case"] for c in cases] == [c["image"] for c in cases] and len(cases) == 2
    assert (tmp_path / "preflight_training.json").is_file()
    assert len(source.report(["training"]).problems) == len(FAULTS)


def test_check_command_reports_a_bundle_dataset(bad_datalist, tmp_path):
    config = BUNDLES / "btcv_finetune" / "configs" / "train.json"
    cmd = [sys.executable, "-m", "common.data.check", "--config_file", str(config), "--datalist", str(bad_datalist),
           "--class_names", '["a", "b"]', "--report", str(tmp_path / "r.json")]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stderr[-2000:]
    assert f"{len(FAULTS)} of {2 + len(FAULTS) + 1} case(s) have problems" in out.stdout  # training + validation lists
    assert all(f"{name}.nii.gz" in out.stdout for name in FAULTS)
    assert json.loads((tmp_path / "r.json").read_text())["num_bad"] == len(FAULTS)
