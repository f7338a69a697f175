"""The label-efficiency harness runs the bundle per (init, fraction, seed) and writes CSV + PNG."""

from __future__ import annotations

import csv
import os

import pytest
import torch
from conftest import BUNDLES, REPO
from monai.bundle import ConfigParser

from common.experiments import label_efficiency
from common.networks import encoder_state_dict

pytestmark = pytest.mark.slow


def test_sweep_writes_csv_and_plot_and_resumes(tmp_path, phantom_root, monkeypatch, capfd):
    pre = ConfigParser()
    pre.read_config(str(BUNDLES / "subfore_pretrain" / "configs" / "train.json"))
    pre.update({"feature_size": 12, "network_def#depths": [1, 1, 1, 1], "network_def#window_size": 4, "bundle_root": str(tmp_path)})
    torch.save(encoder_state_dict(pre.get_parsed_content("network_def")), tmp_path / "encoder.pt")

    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "2"))
    kwargs = dict(
        bundle="btcv_finetune", fractions=[0.5], seeds=[0], pretrained={"subfore": str(tmp_path / "encoder.pt")},
        configs=["demo.json"], output_dir=str(tmp_path / "sweep"),
        overrides={"phantom_dir": str(phantom_root), "num_phantoms": 5, "num_phantom_validation": 1, "num_steps": 2,
                   "epoch_length": 2, "num_workers": 0},
    )
    csv_path = label_efficiency.main(**kwargs)
    rows = list(csv.DictReader(open(csv_path)))
    assert [(r["init"], float(r["fraction"])) for r in rows] == [("scratch", 0.5), ("subfore", 0.5)]
    assert [int(r["num_train_cases"]) for r in rows] == [2, 2]  # half of the 4 phantom training cases
    assert all(0.0 <= float(r["best_value"]) <= 1.0 and r["metric"] == "val_mean_dice" for r in rows)
    png = tmp_path / "sweep" / "label_efficiency.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "loaded" in (tmp_path / "sweep" / "subfore" / "fraction_0.5" / "seed_0" / "train.log").read_text()

    # a second call reuses every finished run (nothing retrained, same numbers)
    stamp = (tmp_path / "sweep" / "scratch" / "fraction_0.5" / "seed_0" / "models" / "model.pt").stat().st_mtime_ns
    rows2 = list(csv.DictReader(open(label_efficiency.main(**kwargs))))
    assert [r["best_value"] for r in rows2] == [r["best_value"] for r in rows]
    assert (tmp_path / "sweep" / "scratch" / "fraction_0.5" / "seed_0" / "models" / "model.pt").stat().st_mtime_ns == stamp

    with pytest.raises(FileNotFoundError, match="pretrained weights for 'x' not found"):
        label_efficiency.main(**{**kwargs, "pretrained": {"x": str(tmp_path / "missing.pt")}})

    # in process (the evidence card's default): the same run, bit for bit, and its log in train.log only
    capfd.readouterr()
    rows3 = list(csv.DictReader(open(label_efficiency.main(**{**kwargs, "pretrained": None, "output_dir": str(tmp_path / "in_process"),
                                                                "in_process": True}))))
    console = capfd.readouterr()
    log = (tmp_path / "in_process" / "scratch" / "fraction_0.5" / "seed_0" / "train.log").read_text()
    assert "Logging file is set to False" in log and "Logging file is set to False" not in console.out + console.err
    assert "train_loss" in log and "train_loss" not in console.out + console.err
    assert rows3[0]["best_value"] == rows[0]["best_value"] and int(rows3[0]["num_train_cases"]) == 2
    weights = [torch.load(tmp_path / d / "scratch" / "fraction_0.5" / "seed_0" / "models" / "model.pt") for d in ("sweep", "in_process")]
    assert weights[0].keys() == weights[1].keys() and all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    # an override naming no config id stops an in-process run as `monai.bundle run` stops (common.cli.check_command_line)
    with pytest.raises(RuntimeError, match="--num_stepz: no such key"):
        label_efficiency.main(**{**kwargs, "pretrained": None, "output_dir": str(tmp_path / "typo"), "in_process": True,
                                 "overrides": {**kwargs["overrides"], "num_stepz": 3}})
