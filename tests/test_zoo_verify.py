"""The offline Model Zoo verifier passes every bundle and catches planted defects."""

from __future__ import annotations

import json
import shutil

import pytest

from common.cli import command
from common.zoo.verify import ALL_CHECKS, main, verify_bundle
from conftest import BUNDLES

pytestmark = pytest.mark.slow

ALL_BUNDLES = sorted(p for p in BUNDLES.iterdir() if (p / "configs" / "metadata.json").is_file())


@pytest.mark.parametrize("bundle", ALL_BUNDLES, ids=lambda p: p.name)
def test_every_bundle_passes_every_check(bundle):
    findings = verify_bundle(bundle, quick=True)
    failed = [f for f in findings if not f.ok]
    assert not failed, failed
    checks = {f.check for f in findings}
    assert {"files", "metadata_schema", "changelog", "channel_def", "net_in_out", "torchscript"} <= checks
    if (bundle / "configs" / "train.json").is_file():
        assert "properties_train" in checks
    if (bundle / "configs" / "inference.json").is_file():
        assert "properties_infer" in checks
        outputs = json.loads((bundle / "configs" / "metadata.json").read_text())["network_data_format"]["outputs"].values()
        if any(o["format"] == "segmentation" for o in outputs):
            assert "monailabel" in checks


def planted(tmp_path, edit):
    bundle = tmp_path / "btcv_finetune"
    shutil.copytree(BUNDLES / "btcv_finetune", bundle, ignore=shutil.ignore_patterns("models", "eval", "runs"))
    meta_path = bundle / "configs" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    edit(meta)
    meta_path.write_text(json.dumps(meta))
    return bundle


def test_missing_metadata_field_is_caught(tmp_path):
    bundle = planted(tmp_path, lambda m: m.pop("task"))
    findings = {f.check: f for f in verify_bundle(bundle, quick=True, skip=("properties_train", "properties_infer", "torchscript"))}
    assert not findings["metadata_schema"].ok and "'task' is a required property" in findings["metadata_schema"].detail
    assert findings["net_in_out"].ok  # only the planted defect fails


def test_wrong_output_channel_count_is_caught(tmp_path, capsys):
    def thirteen(m):
        pred = m["network_data_format"]["outputs"]["pred"]
        pred["num_channels"] = 13
        pred["channel_def"].pop("13")

    bundle = planted(tmp_path, thirteen)
    findings = {f.check: f for f in verify_bundle(bundle, quick=True, skip=("properties_train", "properties_infer", "torchscript"))}
    assert findings["metadata_schema"].ok and findings["channel_def"].ok
    assert not findings["net_in_out"].ok and "output channel number `14` doesn't match: `13`" in findings["net_in_out"].detail

    # the command a bundle author runs: JSON report, exit code 1
    code = command(main, [str(bundle), "--quick", "--skip", "[properties_train,properties_infer,torchscript]"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and report[str(bundle)]["ok"] is False
    assert command(main, [str(bundle), "--skip", "torchscrip"]) == 2  # one name, misspelt: one line, no report
    assert "--skip: unknown checks ['torchscrip']" in capsys.readouterr().err


def test_missing_files_and_unversioned_changelog(tmp_path):
    bundle = planted(tmp_path, lambda m: m.update(version="9.9.9"))  # a version the changelog does not list
    (bundle / "configs" / "evaluate.json").unlink()
    (bundle / "configs" / "broken.json").write_text("{not json")
    findings = {f.check: f for f in verify_bundle(bundle, quick=True)}
    assert not findings["files"].ok and "configs/evaluate.json" in findings["files"].detail
    assert not findings["json"].ok and "broken.json" in findings["json"].detail
    assert not findings["changelog"].ok
    assert "net_in_out" not in findings  # network checks need the files to be right first


def test_monailabel_contract_defects_are_caught(tmp_path):
    """A train.json without an id MONAI Label overrides, a file writer it cannot drop, a plain Spacingd."""
    bundle = planted(tmp_path, lambda m: None)
    train = json.loads((bundle / "configs" / "train.json").read_text())
    del train["validate"]["dataset"]
    (bundle / "configs" / "train.json").write_text(json.dumps(train))
    infer_path = bundle / "configs" / "inference.json"
    text = infer_path.read_text().replace("common.transforms.SpacingKeepExtrasd", "Spacingd")
    infer = json.loads(text)
    infer["postprocessing"]["transforms"].append({"_target_": "SaveImage", "output_dir": "$@bundle_root"})
    infer_path.write_text(json.dumps(infer))
    only = ("files", "json", "metadata_schema", "changelog", "channel_def", "monailabel")
    findings = {f.check: f for f in verify_bundle(bundle, quick=True, skip=tuple(c for c in ALL_CHECKS if c not in only))}
    detail = findings["monailabel"].detail
    assert not findings["monailabel"].ok
    assert "train.json: no 'validate#dataset#data'" in detail
    assert "postprocessing writes files (SaveImage)" in detail and "plain Spacingd" in detail


TRACE_ONLY = '''
import torch
from torch import nn


class TraceOnlyNet(nn.Module):
    def __init__(self, in_channels: int = 1, out_channels: int = 14) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        try:  # TorchScript has no try blocks: this network traces but does not script
            return self.conv(x)
        except RuntimeError:
            raise
'''


def test_a_network_that_only_traces_fails_as_in_the_zoo(tmp_path, monkeypatch):
    (tmp_path / "trace_only_net.py").write_text(TRACE_ONLY)
    monkeypatch.syspath_prepend(str(tmp_path))
    bundle = planted(tmp_path, lambda m: None)
    infer = bundle / "configs" / "inference.json"
    cfg = json.loads(infer.read_text())
    cfg["network_def"] = {"_target_": "trace_only_net.TraceOnlyNet", "in_channels": 1, "out_channels": 14}
    infer.write_text(json.dumps(cfg))
    (bundle / "configs" / "demo.json").unlink()  # its sizes are SwinUNETR's (--quick takes the network's sizes from the demo overlay)
    findings = {f.check: f for f in verify_bundle(bundle, quick=True, skip=tuple(c for c in ALL_CHECKS if c not in ("files", "json", "torchscript")))}
    ts = findings["torchscript"]
    assert not ts.ok and "TraceOnlyNet exported traced, not scripted" in ts.detail and "try blocks" in ts.detail, ts.detail
