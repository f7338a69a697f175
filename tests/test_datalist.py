"""Datalist resolution, validation and the make_datalist CLI."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from conftest import REPO

from common.data import DatalistError, load_datalist, resolve_cases, select_fold
from common.cli import command
from common.data import make_datalist
from common.data.make_datalist import build_datalist, case_key


def write_nifti(path, shape=(8, 8, 8)):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.zeros(shape, np.int16), np.eye(4)), path)


def test_no_dataset_uses_phantoms_and_says_so(phantom_root, caplog):
    with caplog.at_level(logging.INFO, logger="common.data.datalist"):
        items = resolve_cases("", "", ["training"], phantom_dir=phantom_root, num_phantoms=5, num_phantom_validation=1)
    assert len(items) == 4 and all(it["image"].endswith(".nii.gz") for it in items)
    assert "embedded synthetic CT phantoms" in caplog.text


def test_missing_file_in_datalist_is_named(tmp_path):
    write_nifti(tmp_path / "a.nii.gz")
    dl = tmp_path / "dl.json"
    dl.write_text(json.dumps({"training": [{"image": "a.nii.gz"}, {"image": "missing_case.nii.gz"}]}))
    with pytest.raises(DatalistError, match=r"'training' entry 1: field 'image' names a file that does not exist: .*missing_case\.nii\.gz"):
        load_datalist(dl)
    with pytest.raises(DatalistError, match="has no 'validation' list"):
        load_datalist(dl, ["validation"])
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DatalistError, match="bad.json is not valid JSON"):
        load_datalist(tmp_path / "bad.json")


def test_dataset_dir_without_datalist_globs_nifti(tmp_path):
    for n in ("x/1.nii.gz", "y/2.nii", "notes.txt"):
        (write_nifti(tmp_path / n) if n.endswith((".nii", ".nii.gz")) else (tmp_path / n).write_text("x"))
    items = resolve_cases(tmp_path, "")
    assert sorted(it["image"].split("/")[-1] for it in items) == ["1.nii.gz", "2.nii"]


def test_case_key_pairs_common_naming_schemes():
    from pathlib import Path

    assert case_key(Path("img0001.nii.gz")) == case_key(Path("label0001.nii.gz")) == "0001"
    assert case_key(Path("liver_7_0000.nii.gz")) == case_key(Path("liver_7.nii.gz"))
    assert case_key(Path("sub-01_ct.nii.gz")) == case_key(Path("sub-01_ct_seg-manual.nii.gz"))


def test_build_datalist_with_folds_and_validation(tmp_path):
    for i in range(10):
        write_nifti(tmp_path / "imagesTr" / f"img{i:04d}.nii.gz")
        write_nifti(tmp_path / "labelsTr" / f"label{i:04d}.nii.gz")
    d = build_datalist(str(tmp_path / "imagesTr"), str(tmp_path / "labelsTr"), str(tmp_path / "dl.json"), num_folds=4, num_validation=2, seed=0)
    assert len(d["training"]) == 8 and len(d["validation"]) == 2
    folds = [e["fold"] for e in d["training"]]
    assert sorted(set(folds)) == [0, 1, 2, 3] and max(folds.count(k) for k in range(4)) == 2
    from pathlib import Path

    assert all(case_key(Path(e["image"])) == case_key(Path(e["label"])) for e in d["training"] + d["validation"])
    assert all(e["image"].startswith("imagesTr/") and e["label"].startswith("labelsTr/") for e in d["training"])
    assert d == build_datalist(str(tmp_path / "imagesTr"), str(tmp_path / "labelsTr"), str(tmp_path / "dl.json"), 4, 2, 0)
    train0, val0 = select_fold(d["training"], 0, "train"), select_fold(d["training"], 0, "val")
    assert len(train0) + len(val0) == 8 and all(e["fold"] == 0 for e in val0) and all(e["fold"] != 0 for e in train0)


def test_cli_writes_a_loadable_datalist_and_refuses_to_overwrite(tmp_path, capsys):
    for i in range(3):
        write_nifti(tmp_path / "imgs" / f"case{i}.nii.gz")
        write_nifti(tmp_path / "segs" / f"case{i}.nii.gz")
    out = tmp_path / "datalist.json"
    cmd = [sys.executable, "-m", "common.data.make_datalist", str(tmp_path / "imgs"), "--labels_dir", str(tmp_path / "segs"), "--output", str(out)]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    items = load_datalist(out)
    assert len(items) == 3 and all(it["label"].endswith(".nii.gz") for it in items)
    # problems end in one line each, exit status 1 (run here: the command line is read as above)
    assert command(make_datalist.main, cmd[3:]) == 1
    assert capsys.readouterr().err == f"datalist problem: {out} exists; pass --overwrite to replace it\n"
    (tmp_path / "segs" / "case1.nii.gz").unlink()
    assert command(make_datalist.main, cmd[3:] + ["--overwrite"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("datalist problem: no label in") and "case1.nii.gz" in err and err.count("\n") == 1
