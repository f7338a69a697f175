"""brats_finetune end to end on the BraTS-like MRI phantoms, and its bad-input errors."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import BUNDLES, assert_ok, run_bundle_here

pytestmark = pytest.mark.slow

CONFIGS = BUNDLES / "brats_finetune" / "configs"
TRAIN, DEMO, INFERENCE, EVALUATE = CONFIGS / "train.json", CONFIGS / "demo.json", CONFIGS / "inference.json", CONFIGS / "evaluate.json"


@pytest.fixture(scope="module")
def brats_root(tmp_path_factory) -> Path:
    from common.data.brats_phantoms import ensure_brats_phantom_dataset

    root = tmp_path_factory.mktemp("brats_phantoms")
    ensure_brats_phantom_dataset(root, num_cases=3, num_validation=1)
    return root


def test_one_tiny_epoch_then_evaluate_and_infer(tmp_path, brats_root):
    o = {"bundle_root": str(tmp_path), "run_dir": str(tmp_path), "phantom_dir": str(brats_root), "num_phantoms": 3, "num_phantom_validation": 1,
         "num_steps": 2, "epoch_length": 2, "num_workers": 0}
    out = assert_ok(run_bundle_here([TRAIN, DEMO], o))
    assert "embedded synthetic brain-tumour MRI phantoms" in out
    summary = json.loads((tmp_path / "eval" / "validation_summary.json").read_text())
    assert set(summary["metrics"]["val_mean_dice"]["per_class"]) == {"TC", "WT", "ET"}
    assert (tmp_path / "models" / "model.pt").is_file()

    assert_ok(run_bundle_here([TRAIN, DEMO, EVALUATE], o))
    assert (tmp_path / "eval" / "evaluation_metrics.csv").read_text().splitlines()[0] == "case,metric,TC,WT,ET,mean"

    inf = {"bundle_root": str(tmp_path), "run_dir": str(tmp_path), "phantom_dir": str(brats_root), "num_phantoms": 3, "num_phantom_validation": 1, "num_workers": 0}
    assert_ok(run_bundle_here([INFERENCE, DEMO], inf))
    src = nib.load(next(brats_root.glob("*/imagesTr/BRATS_phantom_002.nii.gz")))
    pred = nib.load(tmp_path / "eval" / "predictions" / "BRATS_phantom_002_seg.nii.gz")
    assert pred.shape == src.shape[:3] and np.allclose(pred.affine, src.affine)
    assert set(np.unique(np.asarray(pred.dataobj)).tolist()) <= {0, 1, 2, 3}  # MSD numbering, not regions


def test_single_sequence_mri_is_refused_with_the_file_name(tmp_path, brats_root):
    case = next(brats_root.glob("*/dataset.json")).parent
    img = nib.load(case / "imagesTr" / "BRATS_phantom_000.nii.gz")
    t1_only = tmp_path / "t1_only.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[..., 1], img.affine), t1_only)
    datalist = tmp_path / "datalist.json"
    entry = {"image": str(t1_only), "label": str(case / "labelsTr" / "BRATS_phantom_000.nii.gz")}
    datalist.write_text(json.dumps({"training": [entry], "validation": [entry]}))
    result = run_bundle_here([TRAIN, DEMO], {"bundle_root": str(tmp_path), "run_dir": str(tmp_path), "datalist": str(datalist), "num_workers": 0, "num_steps": 1, "epoch_length": 1})
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "image has 1 channel(s) but the bundle expects 4 (FLAIR, T1w, T1gd, T2w; one 4D file or a list of files in that order)" in out
    assert "t1_only.nii.gz" in out and "nothing was trained" in out


def test_brats_2013_recipe_flair_and_t1c_from_separate_files(tmp_path, brats_root):
    """The docs' recipe for BraTS 2013-2017 data with two sequences: labels 0-4 (3 = non-enhancing
    tumour), FLAIR and T1c as separate files per case, ``--label_scheme brats2013_2017``."""
    folder = next(brats_root.glob("*/dataset.json")).parent
    cases = []
    for name in sorted(p.name for p in (folder / "imagesTr").glob("*.nii.gz")):
        img = nib.load(folder / "imagesTr" / name)
        data = np.asarray(img.dataobj)
        files = []
        for channel, seq in ((0, "flair"), (2, "t1c")):
            files.append(str(tmp_path / f"{seq}_{name}"))
            nib.save(nib.Nifti1Image(data[..., channel], img.affine), files[-1])
        msd = np.asarray(nib.load(folder / "labelsTr" / name).dataobj)
        lab = np.select([msd == 1, msd == 2, msd == 3], [2, 3, 4], 0).astype(np.uint8)  # MSD 1/2/3 -> BraTS 2013 oedema/non-enh./enh.
        lab[(msd == 2) & (np.indices(msd.shape)[0] % 2 == 0)] = 1  # part of the core as necrosis, so all of 1-4 occur
        nib.save(nib.Nifti1Image(lab, img.affine), tmp_path / f"seg_{name}")
        cases.append({"image": files, "label": str(tmp_path / f"seg_{name}")})
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"training": cases[:-1], "validation": cases[-1:]}))
    o = {"bundle_root": str(tmp_path), "run_dir": str(tmp_path), "datalist": str(datalist), "num_workers": 0, "num_steps": 2, "epoch_length": 2,
         "in_channels": 2, "channel_names": ["FLAIR", "T1gd"], "label_scheme": "brats2013_2017"}
    assert_ok(run_bundle_here([TRAIN, DEMO], o))
    summary = json.loads((tmp_path / "eval" / "validation_summary.json").read_text())
    assert set(summary["metrics"]["val_mean_dice"]["per_class"]) == {"TC", "WT", "ET"}
    assert_ok(run_bundle_here([INFERENCE, DEMO], {k: v for k, v in o.items() if k not in ("num_steps", "epoch_length")}))
    pred = nib.load(next((tmp_path / "eval" / "predictions").glob("*_seg.nii.gz")))
    src = nib.load(cases[-1]["image"][0])
    assert pred.shape == src.shape and np.allclose(pred.affine, src.affine)
    assert set(np.unique(np.asarray(pred.dataobj)).tolist()) <= {0, 1, 2, 4}  # BraTS 2013 numbering written back (3 becomes 1)

    # without the preset the 2013 labels are refused before training, naming the value and the way out
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(TRAIN), str(DEMO)])
    parser.update({**o, "label_scheme": "msd", "run_dir": str(tmp_path / "msd")})
    with pytest.raises(Exception) as err:
        parser.get_parsed_content("train#files")
    chain, e = [], err.value
    while e is not None:
        chain.append(str(e))
        e = e.__cause__ or e.__context__
    out = "\n".join(chain)
    assert "holds values [4] outside the [0, 1, 2, 3]" in out and "set label_scheme (msd, brats2013_2017" in out, out[-3000:]
