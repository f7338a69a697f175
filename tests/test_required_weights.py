"""A command that needs a file a run makes stops before building anything, in one line: the file, the run folder,
the command that makes it and the override that points elsewhere."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import BUNDLES, REPO
from common.runs import BundleWorkflow

#: (bundle, config files, what the message must name as the maker, the override it must offer)
USES = {
    "btcv inference": ("btcv_finetune", ["inference.json", "demo.json"], "configs/train.json", "--checkpoint"),
    "btcv evaluate": ("btcv_finetune", ["train.json", "demo.json", "evaluate.json"], "configs/train.json", "--checkpoint"),
    "btcv ONNX inference": ("btcv_finetune", ["inference.json", "inference_onnx.json"], "python -m common.zoo.onnx", "--onnx_file"),
    "medcontext teacher evaluation": ("medcontext_unetr", ["train.json", "evaluate.json"], "configs/train.json", "--checkpoint"),
    "ctfm_classification inference": ("ctfm_classification", ["inference.json"], "configs/train.json", "--checkpoint"),
    "ctfm_retrieval index": ("ctfm_retrieval", ["inference.json"], "ctfm_pretrain/configs/train.json", "--pretrained"),
    "ctfm_retrieval query": ("ctfm_retrieval", ["inference.json", "query.json"], "ctfm_retrieval/configs/inference.json", "--index_path"),
}


@pytest.mark.parametrize("name", USES)
def test_missing_file_stops_in_one_line_before_anything_is_built(name, tmp_path):
    bundle, files, maker, override = USES[name]
    overrides = {"bundle_root": str(BUNDLES / bundle), "run_dir": str(tmp_path / "empty_run")}
    if name == "medcontext teacher evaluation":
        overrides["eval_model"] = "teacher"
    workflow = BundleWorkflow(config_file=[str(BUNDLES / bundle / "configs" / f) for f in files], workflow_type="infer", **overrides)
    workflow.initialize()
    with pytest.raises(SystemExit) as stop:
        workflow.run()
    message = str(stop.value.code)
    assert "\n" not in message and str(tmp_path / "empty_run") in message and maker in message and override in message, message
    assert message.startswith("no ") and (("teacher.pt" in message) if "teacher" in name else True)
    assert not (tmp_path / "empty_run").exists()  # nothing was written


@pytest.mark.slow
def test_inference_on_a_fresh_clone_says_what_to_run_first(tmp_path):
    """As a new user: inference.json + demo.json before any training; one line, no traceback, exit status 1."""
    configs = BUNDLES / "btcv_finetune" / "configs"
    files = f"['{configs / 'inference.json'}','{configs / 'demo.json'}']"
    out = subprocess.run([sys.executable, "-m", "monai.bundle", "run", "--workflow_name", "common.runs.BundleWorkflow", "--config_file", files, "--run_dir", str(tmp_path / "demo")],
                         cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f"no trained weights at {tmp_path / 'demo' / 'models' / 'model.pt'}")
    assert f"python -m monai.bundle run --workflow_name common.runs.BundleWorkflow --config_file \"['{configs / 'train.json'}','{configs / 'demo.json'}']\"" in last
