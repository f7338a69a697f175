"""btcv_finetune end to end: train, evaluate and infer through ``python -m monai.bundle run``.

Tiny network and coarse spacing (``demo.json`` plus overrides); the configs keep the paper settings.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from bad_cases import write_bad_dataset
from conftest import BUNDLES, assert_ok, real_data, run_bundle, run_bundle_here
from monai.bundle import ConfigParser

from common.networks import PretrainedLoadError, encoder_state_dict, load_pretrained

pytestmark = pytest.mark.slow

CONFIGS = BUNDLES / "btcv_finetune" / "configs"
TRAIN, DEMO = CONFIGS / "train.json", CONFIGS / "demo.json"
EVALUATE, INFERENCE = CONFIGS / "evaluate.json", CONFIGS / "inference.json"
CLASSES = ["spleen", "kidney_right", "kidney_left", "gallbladder", "esophagus", "liver", "stomach", "aorta",
           "inferior_vena_cava", "portal_and_splenic_vein", "pancreas", "adrenal_gland_right", "adrenal_gland_left"]


def phantom_overrides(tmp_path: Path, phantom_root: Path, **extra) -> dict:
    return {"bundle_root": str(tmp_path), "run_dir": str(tmp_path), "phantom_dir": str(phantom_root), "num_phantoms": 5, "num_phantom_validation": 1,
            "num_workers": 0, "log_interval": 1, **extra}


def test_train_evaluate_infer_on_phantoms(tmp_path, phantom_root):
    o = phantom_overrides(tmp_path, phantom_root, num_steps=4, epoch_length=2)
    out = assert_ok(run_bundle_here([TRAIN, DEMO], o))
    assert "embedded synthetic CT phantoms" in out and "No pretrained weights given" in out
    models = tmp_path / "models"
    assert (models / "model.pt").is_file()
    best = json.loads((models / "best_metric.json").read_text())
    assert best["metric"] == "val_mean_dice" and best["epoch"] in (1, 2)
    ckpt = torch.load(models / "checkpoints" / "checkpoint_4.pt", weights_only=True)
    assert ckpt["best_model"]["best"] == pytest.approx(best["value"])  # the best score resumes with the run

    # rerun with a longer schedule: resumes at iteration 4 with the best score restored from the checkpoint
    out = assert_ok(run_bundle_here([TRAIN, DEMO], {**o, "num_steps": 6}))
    assert re.search(r"Resumed from .*checkpoint_4\.pt at iteration 4", out) and "Epoch: 1/" not in out
    best2 = json.loads((models / "best_metric.json").read_text())
    assert best2["value"] >= best["value"] and torch.load(models / "checkpoints" / "checkpoint_6.pt", weights_only=True)["best_model"]["best"] == pytest.approx(best2["value"])
    best = best2

    rows = list(csv.DictReader((tmp_path / "eval" / "validation_metrics.csv").open()))
    assert [r["metric"] for r in rows] == ["val_mean_dice", "val_nsd"] and rows[0]["case"] == "phantom_004"
    assert list(rows[0])[2:-1] == CLASSES

    # evaluate.json: the saved model on the validation cases, per-case/per-class CSV + JSON summary
    out = assert_ok(run_bundle_here([TRAIN, DEMO, EVALUATE], o))
    summary = json.loads((tmp_path / "eval" / "evaluation_summary.json").read_text())
    assert summary["num_cases"] == 1 and summary["cases"] == ["phantom_004"]
    assert set(summary["metrics"]) == {"val_mean_dice", "val_nsd"}
    assert set(summary["metrics"]["val_mean_dice"]["per_class"]) == set(CLASSES)
    assert summary["metrics"]["val_mean_dice"]["mean"] == pytest.approx(best["value"], abs=1e-4)  # same model, same data

    # inference.json: label maps in the input's own grid and orientation (the phantoms are stored LPS/LAS/...)
    # demo.json sizes inference.json's network and spacing exactly as it did training's
    inf = {"bundle_root": str(tmp_path), "run_dir": str(tmp_path), "phantom_dir": str(phantom_root), "num_phantoms": 5, "num_phantom_validation": 1, "num_workers": 0}
    assert_ok(run_bundle_here([INFERENCE, DEMO], inf))
    src = nib.load(next((phantom_root).glob("*/imagesTr/phantom_004.nii.gz")))
    pred_path = tmp_path / "eval" / "predictions" / "phantom_004_seg.nii.gz"
    pred = nib.load(pred_path)
    assert pred.shape == src.shape and np.allclose(pred.affine, src.affine)
    assert nib.aff2axcodes(pred.affine) == nib.aff2axcodes(src.affine)
    assert set(np.unique(np.asarray(pred.dataobj))) <= set(range(14))
    # existing predictions are kept (nothing left to predict) unless overwrite: the config's wiring, in-process
    # (pending_cases and SaveLabelMapd's overwrite are unit-tested in test_segmentation_transforms)
    for overwrite, expected in ((False, 0), (True, 1)):
        parser = ConfigParser()
        parser.read_config([str(INFERENCE), str(DEMO)])
        parser.update({**inf, "overwrite": overwrite})
        assert len(parser.get_parsed_content("files")) == expected
        saver = next(t for t in parser.get_parsed_content("postprocessing").transforms if type(t).__name__ == "SaveLabelMapd")
        assert saver.overwrite is overwrite

    # a batch of cases with bad ones: the pre-flight check skips what it can see, loading failures are caught
    # at run time (pre-flight off); every good case is predicted, the failures are listed, the exit is non-zero
    bad = json.loads(write_bad_dataset(tmp_path / "bad").read_text())["training"]
    by = {e["image"].split("/")[-1].removesuffix(".nii.gz"): e for e in bad}
    datalist = tmp_path / "bad" / "mixed.json"
    datalist.write_text(json.dumps({"validation": [by["good_0"], by["air"], by["nan"], by["truncated"], by["good_1"]]}))
    result = run_bundle_here([INFERENCE, DEMO], {**inf, "datalist": str(datalist)})
    out = result.stdout + result.stderr
    assert result.returncode != 0 and "3 case(s) failed" in out
    failed = json.loads((tmp_path / "eval" / "predictions" / "failed_cases.json").read_text())["failures"]
    assert [(f["case"].split("/")[-1], f.get("stage")) for f in failed] == [("air.nii.gz", "pre-flight"), ("nan.nii.gz", "pre-flight"),
                                                                           ("truncated.nii.gz", "pre-flight")]
    for name in ("good_0", "good_1"):
        assert (tmp_path / "eval" / "predictions" / f"{name}_seg.nii.gz").is_file()
    assert pred_path.is_file()  # earlier outputs are still there
    datalist.write_text(json.dumps({"validation": [by["truncated"], by["good_1"], by["labels"]]}))
    (tmp_path / "eval" / "predictions" / "good_1_seg.nii.gz").unlink()
    result = run_bundle_here([INFERENCE, DEMO], {**inf, "datalist": str(datalist), "preflight": False})
    out = result.stdout + result.stderr
    assert result.returncode != 0 and "1 case(s) failed" in out and "cannot read image file" in out and "truncated.nii.gz" in out
    assert (tmp_path / "eval" / "predictions" / "good_1_seg.nii.gz").is_file() and (tmp_path / "eval" / "predictions" / "labels_seg.nii.gz").is_file()


def test_subfore_weights_load_into_btcv_network(tmp_path):
    """The encoder that subfore_pretrain exports initialises every encoder tensor of btcv_finetune's SwinUNETR."""
    tiny = {"feature_size": 12, "network_def#depths": [1, 1, 1, 1], "network_def#window_size": 4, "device": "$torch.device('cpu')"}
    pre = ConfigParser()
    pre.read_config(str(BUNDLES / "subfore_pretrain" / "configs" / "train.json"))
    pre.update({**tiny, "bundle_root": str(tmp_path / "pre")})
    pretrained_net = pre.get_parsed_content("network_def")
    encoder = encoder_state_dict(pretrained_net)
    torch.save(encoder, tmp_path / "encoder.pt")

    down = ConfigParser()
    down.read_config(str(TRAIN))
    down.update({**tiny, "bundle_root": str(tmp_path / "down"), "pretrained": str(tmp_path / "encoder.pt")})
    report = load_pretrained(down.get_parsed_content("network_def"), tmp_path / "encoder.pt")
    assert len(report.loaded) == len(encoder) > 50 and not report.skipped_shape and not report.unused
    net = down.get_parsed_content("network")  # the bundle's own initialisation path
    assert all(torch.equal(net.state_dict()[k], v) for k, v in encoder.items())

    torch.save({"decoder.weight": torch.zeros(3)}, tmp_path / "unrelated.pt")
    down.update({"pretrained": str(tmp_path / "unrelated.pt")})
    with pytest.raises(RuntimeError) as err:  # the config expression fails with the loader's error as cause
        down.get_parsed_content("network", lazy=False)
    assert isinstance(err.value.__cause__, PretrainedLoadError)
    assert "no tensor of" in str(err.value.__cause__) and "unrelated.pt matches SwinUNETR" in str(err.value.__cause__)


def _totalsegmentator_datalist(tmp_path: Path) -> tuple[Path, Path]:
    folder = real_data("ts_ct_full")
    case = {"image": str(folder / "example_ct.nii.gz"), "label": str(folder / "example_seg_fast_force_split.nii.gz")}
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"training": [case], "validation": [case]}))
    return datalist, folder / "example_ct.nii.gz"


def test_fine_tuning_on_real_ct_learns_organs_and_predicts_in_input_space(tmp_path):
    """BTCV classes derived from TotalSegmentator labels; one scan, fit and validated on itself.

    Measured here (2 CPU cores, ~2 min): mean Dice 0.002 at the start, 0.054 after 60 steps with
    liver 0.51 (the tiny SwinUNETR learns the largest organ first). Bars: liver > 0.35, mean Dice up
    by > 0.03.
    """
    datalist, ct = _totalsegmentator_datalist(tmp_path)
    o = {"bundle_root": str(tmp_path), "run_dir": str(tmp_path), "datalist": str(datalist), "num_workers": 0, "pixdim": [3.0, 3.0, 3.0],
         "num_steps": 60, "epoch_length": 10, "val_interval": 6, "learning_rate": 0.003, "train#handlers#1#exec_at_start": True,
         "validation_nsd": False}
    out = assert_ok(run_bundle([TRAIN, DEMO, CONFIGS / "totalsegmentator_to_btcv.json"], o))
    dice = [float(x) for x in re.findall(r"Metrics -- val_mean_dice: ([0-9.]+)", out)]
    assert len(dice) == 2, out[-3000:]
    summary = json.loads((tmp_path / "eval" / "validation_summary.json").read_text())
    liver = summary["metrics"]["val_mean_dice"]["per_class"]["liver"]["mean"]
    assert liver > 0.35 and dice[-1] > dice[0] + 0.03, (dice, liver)

    inf = {"bundle_root": str(tmp_path), "run_dir": str(tmp_path), "datalist": str(datalist), "num_workers": 0}
    assert_ok(run_bundle_here([INFERENCE, DEMO], inf))
    src = nib.load(ct)
    pred = nib.load(tmp_path / "eval" / "predictions" / "example_ct_seg.nii.gz")
    assert pred.shape == src.shape and np.allclose(pred.affine, src.affine) and nib.aff2axcodes(pred.affine) == nib.aff2axcodes(src.affine)
    labels = np.asarray(pred.dataobj)
    assert (labels == 6).sum() > 5000  # liver (41692 voxels in the reference) predicted in the original grid


def test_multi_process_training_and_validation(tmp_path, phantom_root):
    """multi_gpu_train.json under torchrun (gloo on CPU): sharded training and validation, rank 0 writes."""
    o = phantom_overrides(tmp_path, phantom_root, num_steps=2, epoch_length=1, num_phantom_validation=2, num_phantoms=5)
    out = assert_ok(run_bundle([TRAIN, DEMO, CONFIGS / "multi_gpu_train.json"], o, torchrun=2))
    assert out.count("SupervisedTrainer - INFO - Engine run finished") == 2, out[-3000:]  # both ranks trained to the end
    assert out.count("Saved checkpoint") == 1 + 1 and out.count("New best val_mean_dice") >= 1  # rank 0 only: epochs 1, 2
    net = ConfigParser()
    net.read_config(str(TRAIN))
    net.update({"feature_size": 12, "network_def#depths": [1, 1, 1, 1], "network_def#window_size": 4, "bundle_root": str(tmp_path), "run_dir": str(tmp_path)})
    net.get_parsed_content("network_def").load_state_dict(torch.load(tmp_path / "models" / "model.pt", weights_only=True))  # the result loads
    summary = json.loads((tmp_path / "eval" / "validation_summary.json").read_text())
    assert summary["num_cases"] == 2 and sorted(summary["cases"]) == ["phantom_003", "phantom_004"]  # gathered from both ranks
