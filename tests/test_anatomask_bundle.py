"""anatomask_pretrain end to end with a tiny U-Net: phantoms and a real CT; weights fine-tune downstream."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import BUNDLES, assert_ok, real_data, run_bundle, run_bundle_here, tiny, train_losses
from monai.bundle import ConfigParser

from common.networks import load_pretrained

pytestmark = pytest.mark.slow

CONFIGS = BUNDLES / "anatomask_pretrain" / "configs"
TINY = {
    **tiny("anatomask_pretrain"), "roi_size": [32, 32, 32], "batch_size": 2, "num_workers": 0, "learning_rate": 0.003,
    "warmup_steps": 1, "num_steps": 16, "epoch_length": 8, "log_interval": 1, "checkpoint_interval": 1,
}


def check_run(root, out: str) -> None:
    seen = train_losses(out)
    assert len(seen) == TINY["num_steps"], out[-3000:]
    assert sum(seen[-4:]) / 4 < sum(seen[:4]) / 4, seen  # the loss goes down
    assert "masking/r_t: 0.5" in out  # the masking dynamics reached r_T at the end
    assert (root / "models" / "model.pt").is_file() and (root / "models" / "encoder.pt").is_file()


def test_pretraining_on_phantoms_and_loading_downstream(tmp_path, phantom_root):
    root = tmp_path / "bundle"
    overrides = {**TINY, "phantom_dir": str(phantom_root), "num_phantoms": 5, "num_phantom_validation": 1, "pixdim": [4.0, 4.0, 4.0], "bundle_root": str(root)}
    out = assert_ok(run_bundle_here([CONFIGS / "train.json"], overrides))
    check_run(root, out)
    info = json.loads((root / "models" / "encoder.json").read_text())
    assert info["network"]["class"] == "DynUNet" and info["training"]["num_encoder_tensors"] > 0
    teacher = json.loads((root / "models" / "teacher.json").read_text())  # the EMA teacher is exported with its own record
    assert teacher["kind"] == "teacher full network (ema)" and teacher["run"] == info["run"]
    assert not torch.equal(*(torch.load(root / "models" / f, weights_only=True)["input_block.conv1.conv.weight"] for f in ("model.pt", "teacher.pt")))

    # the downstream bundle's DynUNet option (14 classes) takes every encoder tensor and the decoder
    parser = ConfigParser()
    parser.read_config([str(BUNDLES / "btcv_finetune" / "configs" / f) for f in ("train.json", "dynunet.json")])
    parser.update({"dynunet_filters": TINY["filters"], "bundle_root": str(tmp_path)})
    downstream = parser.get_parsed_content("network_def")
    report = load_pretrained(downstream, root / "models" / "model.pt")
    encoder_keys = [k for k in downstream.state_dict() if k.startswith(("input_block", "downsamples", "bottleneck"))]
    assert set(encoder_keys) <= set(report.loaded) and any(k.startswith("upsamples") for k in report.loaded)
    assert all(k.startswith("output_block") for k in report.skipped_shape)
    enc = load_pretrained(downstream, root / "models" / "encoder.pt")
    assert sorted(enc.loaded) == sorted(encoder_keys)  # encoder.pt: exactly the encoder


def test_pretraining_on_real_ct(tmp_path):
    ct = real_data("ts_ct_full", "example_ct.nii.gz")
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"training": [{"image": str(ct)}]}))
    root = tmp_path / "bundle"
    out = assert_ok(run_bundle_here([CONFIGS / "train.json"], {**TINY, "batch_size": 1, "datalist": str(datalist), "pixdim": [3.0, 3.0, 3.0], "bundle_root": str(root)}))
    check_run(root, out)
    ckpt = torch.load(sorted((root / "models" / "checkpoints").glob("*.pt"))[-1], map_location="cpu", weights_only=False)
    assert int(ckpt["model"]["steps_done"]) == TINY["num_steps"]  # the masking schedule resumes where it stopped


def test_two_process_pretraining(tmp_path, phantom_root):
    """multi_gpu_train.json under torchrun (gloo on CPU): both ranks step, rank 0 alone writes and exports."""
    root = tmp_path / "bundle"
    overrides = {**TINY, "num_steps": 4, "epoch_length": 2, "phantom_dir": str(phantom_root), "num_phantoms": 5, "num_phantom_validation": 1,
                 "pixdim": [4.0, 4.0, 4.0], "bundle_root": str(root)}
    out = assert_ok(run_bundle([CONFIGS / "train.json", CONFIGS / "multi_gpu_train.json"], overrides, torchrun=2))
    assert out.count("SupervisedTrainer - INFO - Engine run finished") == 2, out[-3000:]
    assert out.count("Saved checkpoint") == 4 and out.count("Exported ") == 2  # rank 0 only: student and teacher exports
    assert (root / "models" / "encoder.pt").is_file()
