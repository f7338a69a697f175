"""The four CT-FM bundles end to end with tiny encoders: pretraining -> segmentation, classification and
retrieval from the exported encoder; retrieval on the real scans of ../shared/data."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import pytest
import torch
from conftest import BUNDLES, assert_ok, real_data, run_bundle, run_bundle_here, tiny, train_losses
from monai.bundle import ConfigParser

import common.retrieval.__main__ as retrieval_cli
from common.cli import command, format_override
from common.retrieval import EmbeddingIndex, RetrievalError, embed_scan, pending_cases

pytestmark = pytest.mark.slow

TINY_ENCODER = tiny("ctfm_pretrain")
TINY_DATA = {"pixdim": [4.0, 4.0, 4.0], "num_workers": 0, "log_interval": 1, "checkpoint_interval": 1, "warmup_steps": 1}


def configs(bundle: str, *names: str) -> list[Path]:
    return [BUNDLES / bundle / "configs" / n for n in names]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, phantom_root) -> Path:
    """ctfm_pretrain on phantoms: the contrastive loss goes down and the encoder is exported."""
    root = tmp_path_factory.mktemp("ctfm_pretrain")
    # flips only: with the full view pipeline (resized crops, histogram shift, smoothing) this tiny encoder stays at
    # chance, ln(2K - 1), for at least 48 steps; flipped views still differ, so a falling loss is learning, not a copy
    overrides = {**TINY_ENCODER, **TINY_DATA, "crop_size": [16, 32, 32], "num_crops": 4, "batch_size": 2, "num_steps": 24, "epoch_length": 8,
                 "view_transforms#reference#transforms": [{"_target_": "RandAxisFlip", "prob": 0.5}],
                 "learning_rate": 0.001, "phantom_dir": str(phantom_root), "num_phantoms": 5, "num_phantom_validation": 1, "bundle_root": str(root)}
    out = assert_ok(run_bundle_here(configs("ctfm_pretrain", "train.json"), overrides))
    seen = train_losses(out)
    assert len(seen) == 24, out[-3000:]
    chance = math.log(2 * 4 - 1)  # NT-Xent of views no better than the other 2K - 2 views of the scan
    # it starts near chance and ends well below it (view-0 anchors give 8 terms a step, so single steps are noisy)
    assert seen[0] > 0.8 * chance and sum(seen[-6:]) / 6 < 0.75 * chance, seen
    info = json.loads((root / "models" / "encoder.json").read_text())
    assert info["network"]["class"] == "ContrastiveModel" and info["training"]["num_encoder_tensors"] > 0
    return root / "models" / "encoder.pt"


def test_segmentation_from_the_pretrained_encoder(tmp_path, phantom_root, pretrained):
    root = tmp_path / "seg"
    common = {**TINY_ENCODER, **TINY_DATA, "roi_size": [32, 32, 32], "num_steps": 6, "epoch_length": 6, "val_interval": 1,
              "phantom_dir": str(phantom_root), "num_phantoms": 5, "num_phantom_validation": 1, "bundle_root": str(root)}
    out = assert_ok(run_bundle_here(configs("ctfm_segmentation", "train.json"), {**common, "pretrained": str(pretrained)}))
    n_encoder = len(torch.load(pretrained, weights_only=True))
    assert f"loaded {n_encoder} tensors" in out  # every exported encoder tensor went into SegResNetDS
    assert len(train_losses(out)) == 6 and "val_mean_dice" in out
    assert (root / "models" / "model.pt").is_file()
    out = assert_ok(run_bundle_here(configs("ctfm_segmentation", "train.json", "evaluate.json"), common))
    with open(root / "eval" / "evaluation_metrics.csv") as f:
        assert len(list(csv.reader(f))) >= 2
    assert_ok(run_bundle_here(configs("ctfm_segmentation", "inference.json"), {k: v for k, v in common.items() if k in ("pixdim", "roi_size", "num_workers", "phantom_dir", "num_phantoms", "num_phantom_validation", "bundle_root", *TINY_ENCODER)}))
    assert len(list((root / "eval" / "predictions").glob("*_seg.nii.gz"))) == 1


def test_classification_from_the_pretrained_encoder(tmp_path, pretrained):
    root = tmp_path / "clf"
    common = {**TINY_ENCODER, **TINY_DATA, "spatial_size": [32, 48, 48], "batch_size": 2, "num_steps": 4, "epoch_length": 4, "val_interval": 1,
              "phantom_dir": str(tmp_path.parent / "triage_phantoms"), "num_phantoms": 6, "num_phantom_validation": 2, "bundle_root": str(root)}
    out = assert_ok(run_bundle_here(configs("ctfm_classification", "train.json"), {**common, "pretrained": str(pretrained)}))
    assert "(1 adapted from 1 to more input channels)" in out  # the CT stem spread over the 4 windows
    assert len(train_losses(out)) == 4 and "val_auc" in out and "val_f1" in out
    assert_ok(run_bundle_here(configs("ctfm_classification", "train.json", "evaluate.json"), common))
    metrics = dict(csv.reader(open(root / "eval" / "evaluation" / "metrics.csv")))
    assert {"val_auc", "val_f1", "val_accuracy"} <= set(metrics) and 0.0 <= float(metrics["val_f1"]) <= 1.0
    infer = {k: common[k] for k in ("pixdim", "spatial_size", "phantom_dir", "num_phantoms", "num_phantom_validation", "bundle_root", *TINY_ENCODER)}
    assert_ok(run_bundle_here(configs("ctfm_classification", "inference.json"), {**infer, "num_workers": 0}))
    rows = list(csv.reader(open(root / "eval" / "predictions" / "probabilities.csv")))
    assert len(rows) == 2 and all(0.0 <= float(r[1]) <= 1.0 for r in rows)


def test_retrieval_index_resume_and_queries(tmp_path, phantom_root, pretrained, capsys):
    root = tmp_path / "retrieval"
    common = {**TINY_ENCODER, "pixdim": [4.0, 4.0, 4.0], "patch_size": [16, 32, 32], "num_workers": 0, "pretrained": str(pretrained),
              "phantom_dir": str(phantom_root), "num_phantoms": 5, "num_phantom_validation": 1, "bundle_root": str(root), "save_every": 1}
    assert_ok(run_bundle_here(configs("ctfm_retrieval", "inference.json"), {**common, "datalist_keys": ["validation"]}))  # 1 case
    out = assert_ok(run_bundle_here(configs("ctfm_retrieval", "inference.json"), {**common, "datalist_keys": ["training", "validation"]}))
    assert "already holds 1 cases; 4 left to embed" in out  # a grown (or interrupted) index resumes
    index = EmbeddingIndex.load(root / "eval" / "embeddings.pt")
    assert len(index) == 5 and index.embeddings.shape == (5, 128) and index.settings["reduce"] == "min"
    image = index.sources[2]
    # the documented front, python -m common.retrieval query (one --cases value: a case id, not its letters)
    settings = [a for k, v in common.items() if k not in ("pretrained",) for a in (f"--{k}", format_override(v))]
    query = ["query", image, "--cases", index.case_ids[0], "--top_k", "3", "--output", str(root / "hits.csv"), "--pretrained", str(pretrained), *settings]
    assert command(retrieval_cli.COMMANDS, query) == 0
    rows = list(csv.DictReader(open(root / "hits.csv")))
    assert [r["rank"] for r in rows] == ["1", "2", "3"] * 2
    assert rows[0]["query"] == index.case_ids[0] and rows[0]["case_id"] != index.case_ids[0]  # a case query leaves itself out
    assert rows[3]["case_id"] == index.case_ids[2] and float(rows[3]["cosine"]) == pytest.approx(1.0, abs=1e-5)  # a scan finds itself
    assert command(retrieval_cli.COMMANDS, [*query, "--reduse", "mean"]) == 2  # a misspelt setting stops, as monai.bundle run does
    assert "--reduse: no such key" in capsys.readouterr().err
    with pytest.raises(RetrievalError, match="was built with"):  # an index is never silently mixed across settings
        pending_cases([{"image": image}], root / "eval" / "embeddings.pt", {**index.settings, "reduce": "mean"})


REAL_SCANS = {
    "ct": [("ts_ct_full", "example_ct.nii.gz"), ("msd_spleen_crop", "sub-spleen2_ct.nii.gz")],
    "mri": [("ts_mr_small", "example_mr_sm.nii.gz"), ("spinegeneric_unf01", "sub-unf01_T1w.nii.gz"),
            ("spinegeneric_unf01", "sub-unf01_T2w.nii.gz"), ("spinegeneric_unf01", "sub-unf01_T2star.nii.gz")],
}  # ts_ct_small is left out: it is a crop of ts_ct_full, not another scan


def real_index(weights: str, init_filters: int):
    files = {name: real_data(folder, name) for folder, name in REAL_SCANS["ct"] + REAL_SCANS["mri"]}
    parser = ConfigParser()
    parser.read_config(str(BUNDLES / "ctfm_retrieval" / "configs" / "inference.json"))
    parser.update({"pretrained": weights, "init_filters": init_filters, "device": "$torch.device('cpu')", "bundle_root": "."})
    torch.manual_seed(0)
    network, preprocessing = parser.get_parsed_content("network"), parser.get_parsed_content("preprocessing")
    patch = tuple(parser.get_parsed_content("patch_size"))
    images = {n: torch.as_tensor(preprocessing({"image": str(f)})["image"]) for n, f in files.items()}
    index = EmbeddingIndex()
    for name, image in images.items():
        index.add(name, embed_scan(network, image, patch, "min"))
    return network, images, index, patch


def test_retrieval_on_real_scans_finds_the_scan_of_a_crop():
    """A crop of each real scan (two patch rows at most, 2x1 patches in-plane) ranks that scan first among the six
    real scans (random encoder: this checks the pipeline, patches and reduction on real CT and MRI, not the weights)."""
    network, images, index, patch = real_index("", 8)
    for name, image in images.items():
        crop = image[:, : 2 * patch[0], : 2 * patch[1], : patch[2]]
        hits = index.search(embed_scan(network, crop, patch, "min"), k=2)[0]
        assert hits[0][0] == name, (name, hits)


@pytest.mark.skipif(not os.environ.get("CTFM_WEIGHTS"), reason="set CTFM_WEIGHTS to CT-FM's published weights file (cannot be downloaded here)")
def test_ctfm_weights_separate_ct_from_mri():
    """With CT-FM's weights, every scan's nearest other scan has its modality."""
    _, images, index, _ = real_index(os.environ["CTFM_WEIGHTS"], 32)
    modality = {name: m for m, scans in REAL_SCANS.items() for _, name in scans}
    for name in images:
        nearest = index.search(index.embedding_of(name), k=1, exclude=[name])[0][0][0]
        assert modality[nearest] == modality[name], (name, nearest)


def test_two_process_pretraining(tmp_path, phantom_root):
    """multi_gpu_train.json under torchrun (gloo on CPU; SyncBatchNorm only on CUDA): both ranks step, rank 0 alone exports."""
    root = tmp_path / "ddp"
    overrides = {**TINY_ENCODER, **TINY_DATA, "crop_size": [16, 32, 32], "num_crops": 3, "batch_size": 1, "num_steps": 2, "epoch_length": 2,
                 "phantom_dir": str(phantom_root), "num_phantoms": 5, "num_phantom_validation": 1, "bundle_root": str(root)}
    out = assert_ok(run_bundle(configs("ctfm_pretrain", "train.json", "multi_gpu_train.json"), overrides, torchrun=2))
    assert out.count("SupervisedTrainer - INFO - Engine run finished") == 2, out[-3000:]
    assert out.count("Exported ") == 1 and (root / "models" / "encoder.pt").is_file()
