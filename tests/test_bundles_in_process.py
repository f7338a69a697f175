"""Every bundle, in-process: one training iteration (with validation where the bundle validates) and one
inference pass, through MONAI's ``ConfigWorkflow`` as ``monai.bundle run`` builds it (fast tier).

The training runs use ``cache: store`` (the chunked store, built by the run itself), so every training
bundle's data path through the store is exercised; the default memory cache runs in the other tests.

The subprocess tests (``-m slow``) cover what needs a process of its own: kill -9, torchrun, MONAI Label,
exported bundles, and the user's command-line sequences.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import BUNDLES, tiny
from common.runs import BundleWorkflow

from common.handlers import list_checkpoints

#: tiny data everywhere: one training iteration, validation right after it, no worker processes
ONE_STEP = {"num_steps": 1, "epoch_length": 1, "num_workers": 0, "log_interval": 1}
CT = {"num_phantoms": 3, "num_phantom_validation": 1}
CACHE = "store"  # every training bundle runs through the chunked store here (see the module docstring)

TINY_ENCODER = tiny("ctfm_pretrain")

#: bundle -> (phantom kind, training overrides on top of demo.json, inference config or None, inference overrides)
BUNDLES_UNDER_TEST = {
    "subfore_pretrain": ("ct", {}, None, {}),
    "anatomask_pretrain": ("ct", {"pixdim": [4.0, 4.0, 4.0]}, None, {}),
    "ctfm_pretrain": ("ct", {**TINY_ENCODER, "crop_size": [16, 32, 32], "num_crops": 2, "batch_size": 2}, None, {}),
    "btcv_finetune": ("ct", {"num_samples": 1, "val_interval": 1}, "inference.json", {}),
    "brats_finetune": ("brats", {"num_samples": 1, "val_interval": 1}, "inference.json", {}),
    "medcontext_unetr": ("ct", {"roi_size": [32, 32, 32], "num_samples": 1, "val_interval": 1, "sw_overlap": 0.0}, "inference.json",
                         {"roi_size": [32, 32, 32], "sw_overlap": 0.0}),
    "ctfm_segmentation": ("ct", {**TINY_ENCODER, "roi_size": [32, 32, 32], "val_interval": 1}, "inference.json", {**TINY_ENCODER, "roi_size": [32, 32, 32]}),
    "ctfm_classification": ("ct_triage", {**TINY_ENCODER, "spatial_size": [32, 48, 48], "batch_size": 2, "val_interval": 1}, "inference.json",
                            {**TINY_ENCODER, "spatial_size": [32, 48, 48]}),
    "ctfm_retrieval": ("ct", {}, "inference.json", {**TINY_ENCODER, "patch_size": [16, 32, 32]}),
}


@pytest.fixture(scope="module")
def phantom_dirs(tmp_path_factory) -> dict[str, Path]:
    from common.data import ensure_brats_phantom_dataset, ensure_phantom_dataset, ensure_triage_phantom_dataset

    root = tmp_path_factory.mktemp("in_process_phantoms")
    ensure_phantom_dataset(root / "ct", num_cases=3, num_validation=1)
    ensure_brats_phantom_dataset(root / "brats", num_cases=3, num_validation=1)
    ensure_triage_phantom_dataset(root / "ct_triage", num_cases=6, num_validation=2)
    return {"ct": root / "ct", "brats": root / "brats", "ct_triage": root / "ct_triage"}


def run_in_process(files: list[Path], overrides: dict) -> None:
    """``monai.bundle run`` without a new process: ConfigWorkflow's initialize, run, finalize."""
    workflow = BundleWorkflow(config_file=[str(f) for f in files], workflow_type="train", **overrides)
    workflow.initialize()
    try:
        workflow.run()
    finally:
        workflow.finalize()


@pytest.mark.parametrize("bundle", BUNDLES_UNDER_TEST)
def test_one_iteration_and_inference(bundle, tmp_path, phantom_dirs):
    kind, train_overrides, inference, inference_overrides = BUNDLES_UNDER_TEST[bundle]
    configs = BUNDLES / bundle / "configs"
    data = {"bundle_root": str(tmp_path), "run_dir": str(tmp_path), "phantom_dir": str(phantom_dirs[kind]),
            **({"num_phantoms": 6, "num_phantom_validation": 2} if kind == "ct_triage" else CT)}
    models = tmp_path / "models"
    if (configs / "train.json").is_file():
        run_in_process([configs / "train.json", configs / "demo.json"], {**ONE_STEP, **data, "cache": CACHE, **train_overrides})
        assert [it for it, _ in list_checkpoints(models / "checkpoints")] == [1]
        assert list((tmp_path / "cache").glob("store-*/manifest.json")), "the run did not read its cases from a store"
        state = torch.load(list_checkpoints(models / "checkpoints")[-1][1], map_location="cpu", weights_only=True)
        assert state["trainer"]["iteration"] == 1 and "run_identity" in state
        record = json.loads((models / "model.json").read_text())  # exported (pretraining) or best (fine-tuning) weights, with a record
        assert record["bundle"] == bundle and record["run"]["fingerprint"] == state["run_identity"]["fingerprint"]
    if inference:
        run_in_process([configs / inference, configs / "demo.json"], {**data, "num_workers": 0, **inference_overrides})
        written = [p for p in (tmp_path / "eval").rglob("*") if p.is_file() and p.suffix in (".gz", ".csv", ".pt")]
        assert written, f"{bundle} inference wrote nothing under {tmp_path / 'eval'}"


def test_every_bundle_is_under_test():
    assert set(BUNDLES_UNDER_TEST) == {d.name for d in BUNDLES.iterdir() if (d / "configs" / "metadata.json").is_file()}


#: the named options that reproduce the reference code (or the paper where they differ), one training iteration each:
#: bundle -> (extra overlay files after demo.json, overrides)
OPTIONS_UNDER_TEST = {
    "anatomask algorithm1 + reference augmentation": ("anatomask_pretrain", [], {"count_rule": "algorithm1", "augmentation": "reference"}),
    # the reference's per-epoch r_t needs two epochs
    "anatomask reference schedule": ("anatomask_pretrain", ["reference_schedule.json"], {"num_steps": 2}),
    "anatomask dataset CT normalisation (nnU-Net)": ("anatomask_pretrain", [], {
        "intensity_normalization": "dataset_ct",
        "ct_normalization": {"percentile_00_5": -1000.0, "percentile_99_5": 1500.0, "mean": 50.0, "std": 300.0}}),
    "ctfm per-axis views + symmetric loss": ("ctfm_pretrain", [], {"view_pipeline": "per_axis", "anchors": "both"}),
    "ctfm_classification sinoct preset": ("ctfm_classification", ["sinoct.json"], {"spatial_size": [32, 48, 48], "pixdim": [5.0, 4.0, 4.0]}),
    "subfore reference schedule (EMA, clipping, drop path)": ("subfore_pretrain", ["reference_schedule.json"], {}),
    "subfore per-sample loss": ("subfore_pretrain", [], {"loss_reduction": "per_sample"}),
    "ctfm reference schedule": ("ctfm_pretrain", ["reference_schedule.json"], {}),
    "btcv for reference-made SubFore weights": ("btcv_finetune", ["subfore_reference.json"], {"pixdim": [3.0, 3.0, 4.0]}),
    "medcontext reference EMA indexing": ("medcontext_unetr", [], {"ema_mode": "epoch_end_batch_index"}),
}


@pytest.mark.slow  # about 10 s each: the fast tier keeps one run per bundle
@pytest.mark.parametrize("name", OPTIONS_UNDER_TEST)
def test_reference_options_train_one_iteration(name, tmp_path, phantom_dirs):
    bundle, overlays, overrides = OPTIONS_UNDER_TEST[name]
    kind, train_overrides, _, _ = BUNDLES_UNDER_TEST[bundle]
    configs = BUNDLES / bundle / "configs"
    data = {"bundle_root": str(tmp_path), "run_dir": str(tmp_path), "phantom_dir": str(phantom_dirs[kind]),
            **({"num_phantoms": 6, "num_phantom_validation": 2} if kind == "ct_triage" else CT)}
    files = [configs / "train.json", configs / "demo.json", *(configs / o for o in overlays)]
    run_in_process(files, {**ONE_STEP, **data, **train_overrides, **overrides})
    assert [it for it, _ in list_checkpoints(tmp_path / "models" / "checkpoints")][-1] == overrides.get("num_steps", 1)
    if bundle == "subfore_pretrain" and "reference_schedule.json" in overlays:  # EMA weights exported next to the raw ones
        assert (tmp_path / "models" / "ema_model.pt").is_file() and (tmp_path / "models" / "ema_model.json").is_file()
