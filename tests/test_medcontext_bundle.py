"""medcontext_unetr end to end with tiny networks (UNETR, SegResNet) on the phantoms and on a real CT.

Each run trains through ``python -m monai.bundle run``; the loss must go down, student and teacher
must be written (and the checkpoint must hold both), and evaluate.json (and inference.json for
UNETR) must run on the result.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import BUNDLES, assert_ok, real_data, run_bundle, run_bundle_here, tiny, train_losses

pytestmark = pytest.mark.slow

CONFIGS = BUNDLES / "medcontext_unetr" / "configs"
TINY_UNETR = tiny("medcontext_unetr")
TINY_SEGRESNET = {"network_def#init_filters": 8, "network_def#blocks_down": [1, 1, 1], "network_def#blocks_up": [1, 1]}
RUN = {
    "roi_size": [32, 32, 32], "num_samples": 2, "num_workers": 0, "cache_rate": 1.0, "learning_rate": 0.003, "warmup_steps": 1,
    "num_steps": 16, "epoch_length": 8, "val_interval": 2, "log_interval": 1, "sw_batch_size": 2, "sw_overlap": 0.0,
}


def check_training(root, out: str) -> None:
    seen = train_losses(out)
    assert len(seen) == RUN["num_steps"], out[-3000:]
    assert sum(seen[-4:]) / 4 < sum(seen[:4]) / 4, seen  # the loss goes down
    assert (root / "models" / "model.pt").is_file() and (root / "models" / "teacher.pt").is_file()
    ckpt = torch.load(sorted((root / "models" / "checkpoints").glob("*.pt"))[-1], map_location="cpu", weights_only=False)
    keys = ckpt["model"].keys()
    assert any(k.startswith("student.") for k in keys) and any(k.startswith("teacher.") for k in keys) and "mask_token" in keys
    student = torch.load(root / "models" / "model.pt", map_location="cpu")
    assert not any(k.startswith(("student.", "teacher.")) for k in student)  # plain layout: loads into network_def


def real_ct_datalist(tmp_path):
    ct = real_data("msd_spleen_crop", "sub-spleen2_ct.nii.gz")
    case = {"image": str(ct), "label": str(ct.parent / "sub-spleen2_ct_seg-manual.nii.gz")}  # manual label: 1 = spleen, as in BTCV
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"training": [case], "validation": [case]}))
    return {"datalist": str(datalist), "pixdim": [3.0, 3.0, 3.0]}


@pytest.mark.parametrize("network, data", [("segresnet", "phantoms"), ("unetr", "real_ct")])
def test_other_network_and_data_pairs_train(network, data, tmp_path, phantom_root):
    """The two pairs the other tests leave out: every network on both the embedded and the real data."""
    root = tmp_path / "bundle"
    if data == "phantoms":
        source = {"phantom_dir": str(phantom_root), "num_phantoms": 5, "num_phantom_validation": 1, "pixdim": [4.0, 4.0, 4.0]}
    else:
        source = real_ct_datalist(tmp_path)
    configs = [CONFIGS / "train.json"] + ([CONFIGS / "segresnet.json"] if network == "segresnet" else [])
    tiny = TINY_SEGRESNET if network == "segresnet" else TINY_UNETR
    out = assert_ok(run_bundle_here(configs, {**tiny, **RUN, **source, "bundle_root": str(root)}))
    check_training(root, out)


def test_unetr_on_phantoms_trains_evaluates_and_infers(tmp_path, phantom_root):
    root = tmp_path / "bundle"
    data = {"phantom_dir": str(phantom_root), "num_phantoms": 5, "num_phantom_validation": 1, "pixdim": [4.0, 4.0, 4.0]}
    out = assert_ok(run_bundle_here([CONFIGS / "train.json"], {**TINY_UNETR, **RUN, **data, "bundle_root": str(root)}))
    check_training(root, out)
    assert "train/context" in out and "train/ema_momentum" in out

    assert_ok(run_bundle_here([CONFIGS / "train.json", CONFIGS / "evaluate.json"], {**TINY_UNETR, **RUN, **data, "bundle_root": str(root), "eval_model": "teacher"}))
    summary = json.loads((root / "eval" / "evaluation_summary.json").read_text())
    assert "val_mean_dice" in json.dumps(summary)

    assert_ok(run_bundle_here([CONFIGS / "inference.json"], {**TINY_UNETR, **{k: RUN[k] for k in ("roi_size", "num_workers", "sw_batch_size", "sw_overlap")}, **data, "bundle_root": str(root)}))
    assert sorted(p.name for p in (root / "eval" / "predictions").glob("*.nii.gz")) == ["phantom_004_seg.nii.gz"]


def test_segresnet_on_real_ct_with_input_masking(tmp_path):
    root = tmp_path / "bundle"
    overrides = {**TINY_SEGRESNET, **RUN, **real_ct_datalist(tmp_path), "bundle_root": str(root)}
    configs = [CONFIGS / "train.json", CONFIGS / "segresnet.json"]
    out = assert_ok(run_bundle_here(configs, overrides))
    check_training(root, out)
    assert_ok(run_bundle_here([*configs, CONFIGS / "evaluate.json"], overrides))
    rows = (root / "eval" / "evaluation_metrics.csv").read_text().splitlines()
    assert len(rows) >= 2 and "spleen" in rows[0]


def test_two_process_training_keeps_one_teacher(tmp_path, phantom_root):
    """multi_gpu_train.json under torchrun (gloo on CPU): both ranks step, rank 0 writes, teachers stay equal."""
    root = tmp_path / "bundle"
    data = {"phantom_dir": str(phantom_root), "num_phantoms": 5, "num_phantom_validation": 2, "pixdim": [4.0, 4.0, 4.0]}
    overrides = {**TINY_UNETR, **RUN, **data, "bundle_root": str(root), "num_steps": 4, "epoch_length": 2, "checkpoint_interval": 1,
                 "finalize": ["$torch.save(@model.teacher.state_dict(), " + repr(str(tmp_path / "teacher_rank")) + " + str(torch.distributed.get_rank()) + '.pt')",
                              "$torch.distributed.destroy_process_group()"]}
    out = assert_ok(run_bundle([CONFIGS / "train.json", CONFIGS / "multi_gpu_train.json"], overrides, torchrun=2))
    assert out.count("SupervisedTrainer - INFO - Engine run finished") == 2, out[-3000:]  # both ranks trained to the end
    assert out.count("Saved checkpoint") == 2  # rank 0 only, epochs 1 and 2
    t0, t1 = (torch.load(tmp_path / f"teacher_rank{r}.pt", map_location="cpu") for r in (0, 1))
    for k in t0:
        torch.testing.assert_close(t0[k], t1[k])  # the EMA of a synchronised student is the same on every rank
    student = torch.load(root / "models" / "model.pt", map_location="cpu")
    assert any(not torch.equal(student[k], t0[k]) for k in t0)  # the teacher trails the student
