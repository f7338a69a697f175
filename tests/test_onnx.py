"""ONNX export of every segmentation and classification network, checked with ONNX Runtime on the
CPU, and the ONNX Runtime inference path (inference_onnx.json) against PyTorch inference."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import BUNDLES, assert_ok, run_bundle_here
from monai.bundle import ConfigParser

from common.networks.onnx_runtime import OnnxRuntimeNetwork
from common.zoo.onnx import ATOL, OnnxAgreementError, export_onnx
from common.zoo.verify import demo_network

#: one bundle per network family (brats_finetune's SwinUNETR is btcv_finetune's with 4 input channels)
ONNX_BUNDLES = ["btcv_finetune", "medcontext_unetr", "ctfm_segmentation", "ctfm_classification"]


def quick(bundle: str) -> dict:
    """verify.py's CPU-sized network of ``bundle``: its demo overlay's (same architecture, fewer blocks/width)."""
    small_roi = {"roi_size": [64, 64, 64]} if bundle == "ctfm_segmentation" else {}  # its 96x160x160 ROI only costs time here
    return {**demo_network(BUNDLES / bundle), **small_roi}  # the export's input is the ROI: no metadata shapes needed


@pytest.mark.parametrize("bundle", [pytest.param(b, marks=pytest.mark.slow) if b != "ctfm_classification" else b for b in ONNX_BUNDLES])
def test_export_agrees_with_pytorch_on_a_batch_of_two(bundle, tmp_path):
    report = export_onnx(BUNDLES / bundle, weights="", output=tmp_path / "model.onnx", overrides=quick(bundle))
    assert report["agrees"] and report["max_abs_diff"] <= ATOL and report["input_shape"][0] == "batch"
    assert json.loads((tmp_path / "model.onnx.json").read_text())["max_abs_diff"] == report["max_abs_diff"]
    net = OnnxRuntimeNetwork(tmp_path / "model.onnx")
    out = net(torch.rand(3, *report["input_shape"][1:]))  # the batch axis is dynamic: 3 was never exported
    assert out.shape[0] == 3 and torch.isfinite(out).all()


@pytest.mark.slow
def test_a_disagreement_beyond_the_tolerance_is_an_error(tmp_path):
    with pytest.raises(OnnxAgreementError, match="differs from PyTorch"):
        export_onnx(BUNDLES / "ctfm_classification", weights="", output=tmp_path / "m.onnx", overrides=quick("ctfm_classification"), atol=0.0, rtol=0.0)


def test_missing_onnx_file_names_the_export_command(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"python -m common.zoo.onnx"):
        OnnxRuntimeNetwork(tmp_path / "models" / "model.onnx")


@pytest.mark.slow
def test_inference_onnx_json_writes_the_same_label_map_as_pytorch(tmp_path, phantom_root):
    cfg = BUNDLES / "btcv_finetune" / "configs"
    torch.manual_seed(0)
    parser = ConfigParser()
    parser.read_config([str(cfg / "inference.json"), str(cfg / "demo.json")])
    (tmp_path / "torch" / "models").mkdir(parents=True)
    torch.save(parser.get_parsed_content("network_def").state_dict(), tmp_path / "torch" / "models" / "model.pt")
    (tmp_path / "onnx" / "models").mkdir(parents=True)
    export_onnx(BUNDLES / "btcv_finetune", weights=str(tmp_path / "torch" / "models" / "model.pt"), output=tmp_path / "onnx" / "models" / "model.onnx",
                configs=["demo.json"])
    data = {"phantom_dir": str(phantom_root), "num_phantoms": 5, "num_phantom_validation": 1, "num_workers": 0}
    assert_ok(run_bundle_here([cfg / "inference.json", cfg / "demo.json"], {"bundle_root": str(tmp_path), "run_dir": str(tmp_path / "torch"), **data}))
    out = assert_ok(run_bundle_here([cfg / "inference.json", cfg / "demo.json", cfg / "inference_onnx.json"],
                                    {"bundle_root": str(tmp_path), "run_dir": str(tmp_path / "onnx"), **data}))
    assert "running in ONNX Runtime (CPUExecutionProvider)" in out
    [ref] = (tmp_path / "torch" / "eval" / "predictions").glob("*_seg.nii.gz")
    got = tmp_path / "onnx" / "eval" / "predictions" / ref.name
    a, b = (np.asarray(nib.load(p).dataobj) for p in (ref, got))
    assert a.shape == b.shape and np.allclose(nib.load(ref).affine, nib.load(got).affine)
    assert (a == b).mean() > 0.9999 and len(np.unique(a)) > 1, (a == b).mean()

