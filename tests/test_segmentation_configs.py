"""Downstream bundle configs: seed settings, train/inference agreement, dataset overlays, datalists."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import BUNDLES, tiny
from monai.bundle import ConfigParser

BTCV = BUNDLES / "btcv_finetune" / "configs"
BRATS = BUNDLES / "brats_finetune" / "configs"
MEDCONTEXT = BUNDLES / "medcontext_unetr" / "configs"
TINY = {**tiny("btcv_finetune"), "device": "$torch.device('cpu')"}


def parser_for(folder, *names: str, **overrides) -> ConfigParser:
    p = ConfigParser()
    p.read_config([str(folder / n) for n in names])
    p.update(overrides)
    return p


def test_btcv_train_json_keeps_the_seed_downstream_settings():
    p = parser_for(BTCV, "train.json")
    expected = {"pixdim": [1.5, 1.5, 1.5], "hu_window": [-175.0, 250.0], "intensity_range": [0.1, 1.0], "roi_size": [96, 96, 96],
                "learning_rate": 3e-4, "weight_decay": 1e-5, "warmup_steps": 100, "feature_size": 48, "sw_overlap": 0.5}
    assert {k: p[k] for k in expected} == expected
    assert p["batch_size"] * p["num_samples"] == 2  # seed: batch size 2
    assert p.get_parsed_content("num_classes") == 14 and p["network_def"]["_target_"] == "SwinUNETR"
    assert p["loss"]["_target_"] == "DiceCELoss" and p["inferer"]["_target_"] == "SlidingWindowInferer"
    sched = p["lr_scheduler"]
    assert sched["_target_"].endswith("WarmupCosineSchedule")


def test_btcv_preprocessing_matches_the_pretraining_bundle():
    """Pretrained encoders only transfer if the fine-tuning input looks like the pretraining input."""
    pre = parser_for(BUNDLES / "subfore_pretrain" / "configs", "train.json")
    down = parser_for(BTCV, "train.json")
    for key in ("pixdim", "hu_window", "intensity_range", "roi_size", "feature_size"):
        assert pre[key] == down[key], key


@pytest.mark.parametrize("folder", [BTCV, BRATS, MEDCONTEXT], ids=["btcv", "brats", "medcontext"])
def test_inference_json_agrees_with_train_json(folder):
    train, infer = parser_for(folder, "train.json"), parser_for(folder, "inference.json")
    for key in ("pixdim", "roi_size", "in_channels", "class_names", "feature_size", "sw_overlap", "hu_window", "intensity_range", "label_scheme", "channel_names"):
        assert (key in train.config) == (key in infer.config), key
        if key in train.config:
            assert train[key] == infer[key], key
    assert train["network_def"] == infer["network_def"]
    # demo.json is also an inference overlay: the demo model it trains is the one inference builds
    train_demo, infer_demo = parser_for(folder, "train.json", "demo.json"), parser_for(folder, "inference.json", "demo.json")
    for key in ("pixdim", "roi_size", "feature_size", "sw_overlap"):
        assert train_demo[key] == infer_demo[key], key
    assert train_demo["network_def"] == infer_demo["network_def"]


@pytest.mark.parametrize(
    "overlay, num_classes, train_cases, val_cases",
    [("btcv.json", 14, 24, 6), ("flare22.json", 14, 40, 10), ("mmwhs_ct.json", 8, 16, 4), ("amos22_ct.json", 16, None, None),
     ("amos22_mri.json", 16, None, None), ("unetr.json", 14, None, None), ("totalsegmentator_to_btcv.json", 14, None, None)],
)
def test_btcv_dataset_overlays_change_one_file(overlay, num_classes, train_cases, val_cases):
    for base in ("train.json", "inference.json"):
        p = parser_for(BTCV, base, overlay)
        assert p.get_parsed_content("num_classes") == num_classes
        net = p.get_parsed_content("network_def", instantiate=True, lazy=False) if overlay == "unetr.json" else None
        if net is not None:
            assert type(net).__name__ == "UNETR"
    p = parser_for(BTCV, "train.json", overlay, bundle_root=str(BTCV.parent))
    assert len(p["label_values_in"]) == len(p["label_values_out"])
    assert all(0 <= v < num_classes for v in p["label_values_out"])
    if train_cases is not None:
        datalist = json.loads(open(p.get_parsed_content("datalist")).read())
        assert (len(datalist["training"]), len(datalist["validation"])) == (train_cases, val_cases)
        names = [e["image"] for e in datalist["training"] + datalist["validation"]]
        assert len(set(names)) == len(names)
    if overlay == "amos22_mri.json":
        assert p["intensity_transform"]["_target_"] == "ScaleIntensityRangePercentilesd"
        assert parser_for(BTCV, "inference.json", overlay)["intensity_transform"]["_target_"] == "ScaleIntensityRangePercentilesd"


def test_btcv_split_is_the_standard_24_6():
    d = json.loads((BTCV / "datalist_btcv.json").read_text())
    ids = lambda key: [int(e["image"][-11:-7]) for e in d[key]]  # noqa: E731
    assert ids("training") == list(range(1, 11)) + list(range(21, 35))
    assert ids("validation") == list(range(35, 41))
    assert all(e["label"] == e["image"].replace("imagesTr/img", "labelsTr/label") for e in d["training"] + d["validation"])


def test_brats_config_regions_network_and_msd_folds():
    p = parser_for(BRATS, "train.json", **TINY)
    assert p["in_channels"] == 4 and p.get_parsed_content("num_classes") == 3 and p["label_scheme"] == "msd"
    assert p["loss"]["_target_"] == "DiceLoss" and p["loss"]["sigmoid"] is True and p["roi_size"] == [96, 96, 96]
    net = p.get_parsed_content("network_def")
    assert net(torch.zeros(1, 4, 64, 64, 64)).shape == (1, 3, 64, 64, 64)
    msd = parser_for(BRATS, "train.json", "msd_task01.json", bundle_root=str(BRATS.parent))
    d = json.loads(open(msd.get_parsed_content("datalist")).read())
    folds = [e["fold"] for e in d["training"]]
    assert len(folds) == 484 and sorted(set(folds)) == [0, 1, 2, 3, 4] and max(folds.count(k) for k in range(5)) - min(folds.count(k) for k in range(5)) <= 1
    assert msd["fold"] == 0 and msd["val_datalist_keys"] == ["training"]
    assert parser_for(BRATS, "train.json", "brats2021.json")["label_scheme"] == "brats2021"


def test_brats_regions_are_configuration_with_presets():
    p = parser_for(BRATS, "train.json")
    assert p.get_parsed_content("regions") == {"TC": (2, 3), "WT": (1, 2, 3), "ET": (3,)} and p.get_parsed_content("class_names") == ["TC", "WT", "ET"]
    old = parser_for(BRATS, "train.json", label_scheme="brats2013_2017")
    assert old.get_parsed_content("case_checks#label_values") == [0, 1, 2, 3, 4]
    assert parser_for(BRATS, "inference.json", label_scheme="brats2013_2017").get_parsed_content("region_label_values") == {"TC": 1, "WT": 2, "ET": 4}
    # regions of one's own (e.g. two regions): names, channel count, label checks and write-back follow
    own = parser_for(BRATS, "train.json", regions={"tumour": [1, 2], "active": [2]}, **TINY)
    assert own.get_parsed_content("class_names") == ["tumour", "active"] and own.get_parsed_content("num_classes") == 2
    assert own.get_parsed_content("case_checks#label_values") == [0, 1, 2]
    assert own.get_parsed_content("network_def")(torch.zeros(1, 4, 64, 64, 64)).shape[1] == 2


@pytest.mark.parametrize("folder, channels", [(BTCV, 14), (BRATS, 3)], ids=["btcv", "brats"])
def test_metadata_describes_the_output_channels(folder, channels):
    meta = json.loads((folder / "metadata.json").read_text())
    out = meta["network_data_format"]["outputs"]["pred"]
    assert out["num_channels"] == channels and len(out["channel_def"]) == channels
    train = parser_for(folder, "train.json")
    assert meta["network_data_format"]["inputs"]["image"]["num_channels"] == train["in_channels"]
    for key in ("version", "changelog", "monai_version", "pytorch_version", "name", "task", "description", "authors", "references"):
        assert meta[key], key
    overlay = json.loads((folder / "multi_gpu_train.json").read_text())
    known = set(train.config) | {"train#sampler", "train#dataloader#sampler", "train#dataloader#shuffle", "validate#sampler", "validate#dataloader#sampler"}
    # every key overrides an entry of train.json (or one the overlay sets itself, e.g. network#find_unused_parameters)
    assert {k for k in overlay if k not in known and k.rsplit("#", 1)[0] not in overlay} <= {"initialize", "finalize"}


def test_medcontext_shares_btcv_data_metrics_and_outputs_except_documented_keys():
    """medcontext_unetr repeats btcv_finetune's pipeline (a bundle must stand alone); only the
    reference run's settings and the method's own pieces may differ."""
    load = lambda b, f: json.loads((BUNDLES / b / "configs" / f).read_text())  # noqa: E731
    btcv, mc = load("btcv_finetune", "train.json"), load("medcontext_unetr", "train.json")
    for key in ("preprocessing_transforms", "intensity_transform", "inferer", "class_names", "hu_window", "label_values_in", "label_values_out"):
        assert mc[key] == btcv[key], key
    for key in ("files", "preprocessing", "postprocessing", "key_metric", "additional_metrics", "report", "dataset", "dataloader"):
        assert mc["validate"][key] == btcv["validate"][key], key
    assert mc["train"]["random_transforms"] == btcv["train"]["random_transforms"]
    documented = {"pixdim": [1.5, 1.5, 2.0], "intensity_range": [0.0, 1.0], "num_samples": 4, "learning_rate": 1e-4, "weight_decay": 1e-5}
    assert {k: mc[k] for k in documented} == documented
    b_inf, m_inf = load("btcv_finetune", "inference.json"), load("medcontext_unetr", "inference.json")
    for key in ("preprocessing", "postprocessing", "inferer", "dataloader", "handlers", "files"):
        assert m_inf[key] == b_inf[key], key
    assert m_inf["network_def"] == mc["network_def"] and m_inf["pixdim"] == mc["pixdim"]
    assert load("medcontext_unetr", "evaluate.json")["validate#files"] == load("btcv_finetune", "evaluate.json")["validate#files"]


@pytest.mark.parametrize("folder", [BTCV, BRATS, MEDCONTEXT], ids=["btcv", "brats", "medcontext"])
def test_validation_nsd_switches_the_surface_metric_and_its_report_columns(folder):
    for on in (True, False):
        p = parser_for(folder, "train.json", validation_nsd=on, device="$torch.device('cpu')")
        metrics = p.get_parsed_content("validate#evaluator#additional_metrics")
        report = p.get_parsed_content("validate#report")
        assert ("val_nsd" in metrics) is on and report.metrics == (["val_mean_dice", "val_nsd"] if on else ["val_mean_dice"])


@pytest.mark.parametrize("overlay, mask_ratio, expected", [("swinunetr.json", 0.6, False), ("swinunetr.json", 0.0, True), (None, 0.6, True)])
def test_medcontext_ddp_finds_unused_parameters_when_some_take_no_part(overlay, mask_ratio, expected):
    """DDP fails at the second step on a parameter without a gradient: UNETR's unused transformer
    layers, and the mask token when nothing is masked (the supervised baseline)."""
    names = ["train.json", *([overlay] if overlay else []), "multi_gpu_train.json"]
    p = parser_for(MEDCONTEXT, *names, mask_ratio=mask_ratio, **({"network_def#hidden_size": 48, "network_def#mlp_dim": 96, "network_def#num_heads": 4} if not overlay else {}))
    assert p.get_parsed_content("network#find_unused_parameters") is expected
