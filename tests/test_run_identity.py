"""Run identity (resume only the run asked for), provenance records and the pretraining contract.

Unit tests build configs with MONAI's ConfigParser in-process; the sequences a user runs go through
``python -m monai.bundle run`` (tiny settings).
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path

import pytest
import torch
from conftest import BUNDLES, TINY_SUBFORE, assert_ok, run_bundle, run_bundle_here
from monai.bundle import ConfigParser
from monai.optimizers import WarmupCosineSchedule

from common.handlers import AtomicCheckpointSaver, ResumeFromLatest, list_checkpoints
from common.runs import (
    RUN_RECORD,
    BundleRun,
    PreprocessingMismatchError,
    RunIdentity,
    RunMismatchError,
    build_record,
    check_contract,
    compare,
    flatten_settings,
    override_hints,
    read_record,
    supersede,
    write_record,
)
from common.runs.identity import diff_settings

SUBFORE = [BUNDLES / "subfore_pretrain" / "configs" / f for f in ("train.json", "demo.json")]
BTCV = [BUNDLES / "btcv_finetune" / "configs" / f for f in ("train.json", "demo.json")]


# -- settings ------------------------------------------------------------------------------------------
def test_settings_leave_out_operational_keys_and_walk_components():
    config = {"lr": 0.1, "num_workers": 4, "models_dir": "/x", "net": {"_target_": "Net", "depths": [1, 1], "blocks": [{"k": 3}]},
              "train": {"dataloader": {"num_workers": "@num_workers", "batch_size": 2}}, "run": ["$x"]}
    s = flatten_settings(config)
    assert s == {"lr": 0.1, "net#_target_": "Net", "net#depths": [1, 1], "net#blocks#0#k": 3, "train#dataloader#batch_size": 2}
    assert diff_settings(s, {**s, "lr": 0.2, "extra": 1}) == [("extra", "(unset)", 1), ("lr", 0.1, 0.2)]


def test_the_workflow_hands_its_parser_to_the_run_identity_and_a_plain_workflow_is_said_unchecked(tmp_path, caplog):
    """``BundleWorkflow`` fills ``@bundle_run``; under a plain ``ConfigWorkflow`` the identity is not checked, said once."""
    from monai.bundle import ConfigWorkflow

    from common.runs import BundleRun, BundleWorkflow

    overrides = {"run_dir": str(tmp_path / "run"), "learning_rate": 0.01}
    wf = BundleWorkflow(config_file=[str(f) for f in BTCV], workflow_type="train", logging_file=False, **overrides)
    run = wf.parser.get_parsed_content("bundle_run")
    assert isinstance(run, BundleRun) and run.parser is wf.parser and run.config_files == [str(f) for f in BTCV] and run.overrides == overrides
    identity = wf.parser.get_parsed_content("run_identity")
    assert identity.checked and identity.settings["learning_rate"] == 0.01 and identity.bundle == "btcv_finetune"
    plain = ConfigWorkflow(config_file=[str(f) for f in BTCV], workflow_type="train", logging_file=False, run_dir=str(tmp_path / "plain"))
    with caplog.at_level("WARNING"):
        unchecked = plain.parser.get_parsed_content("run_identity")
        unchecked.check()
        plain.parser.get_parsed_content("run_identity", lazy=False)  # built again: not said again
    assert not unchecked.checked and unchecked.state_dict() == {}
    assert sum("run identity not checked" in r.getMessage() for r in caplog.records) == 1
    assert "--workflow_name common.runs.BundleWorkflow" in caplog.text


def _identity_config(root: Path, files: list[Path], **extra) -> ConfigParser:
    cases = [{"image": str(f)} for f in files]
    config = {
        "bundle_root": str(root), "checkpoint_dir": str(root / "models" / "checkpoints"), "models_dir": str(root / "models"),
        "resume": True, "learning_rate": 0.1, "num_steps": 10, "num_workers": 2, "pretrained": "",
        "train": {"dataset": {"data": cases}},
        "run_identity": {"_target_": "common.runs.RunIdentity", "checkpoint_dir": "@checkpoint_dir", "outputs": ["@models_dir"], "resume": "@resume",
                         "bundle_run": "@bundle_run"},
        "bundle_run": None,
    }
    parser = ConfigParser(config)
    parser.update(extra)
    parser["bundle_run"] = BundleRun(parser, [], dict(extra))  # what BundleWorkflow does
    return parser


def _save_checkpoint(identity: RunIdentity, directory: Path, iteration: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    torch.save({"run_identity": identity.state_dict(), "trainer": {"iteration": iteration}}, directory / f"checkpoint_{iteration}.pt")


def test_identity_decides_fresh_resume_continue_and_stop(tmp_path, caplog):
    data = [tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"]
    for i, f in enumerate(data):
        f.write_bytes(b"x" * (10 + i))
    root = tmp_path / "run"
    first = _identity_config(root, data).get_parsed_content("run_identity")
    first.check()  # fresh: writes run.json
    assert (root / "models" / "checkpoints" / RUN_RECORD).is_file()
    _save_checkpoint(first, root / "models" / "checkpoints", 4)

    _identity_config(root, data, num_workers=0).get_parsed_content("run_identity").check()  # operational change: same run

    with caplog.at_level(logging.WARNING):
        _identity_config(root, data, num_steps=20).get_parsed_content("run_identity").check()
    assert "Continuing run" in caplog.text and "num_steps 10 -> 20" in caplog.text

    _save_checkpoint(first, root / "models" / "checkpoints", 10)  # the run finished its 10 steps
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        _identity_config(root, data).get_parsed_content("run_identity").check()
    assert "is already complete at iteration 10: nothing to train (raise --num_steps to continue it)" in caplog.text

    with pytest.raises(RunMismatchError) as err:
        _identity_config(root, data, num_steps=3).get_parsed_content("run_identity").check()
    assert "past this command's num_steps 3" in str(err.value)

    with pytest.raises(RunMismatchError) as err:
        _identity_config(root, data, learning_rate=0.2).get_parsed_content("run_identity").check()
    assert "learning_rate: 0.1 -> 0.2" in str(err.value) and "--resume False" in str(err.value) and "--run_dir" in str(err.value)

    other = tmp_path / "c.nii.gz"
    other.write_bytes(b"y" * 99)
    with pytest.raises(RunMismatchError) as err:
        _identity_config(root, [data[0], other]).get_parsed_content("run_identity").check()
    assert "cases: training: 2 -> 2 files" in str(err.value) and "b.nii.gz (11 B)" in str(err.value) and "c.nii.gz (99 B)" in str(err.value)

    weights = tmp_path / "w.pt"
    torch.save({"w": torch.ones(1)}, weights)
    with pytest.raises(RunMismatchError) as err:
        _identity_config(root, data, pretrained=str(weights)).get_parsed_content("run_identity").check()
    assert re.search(r"pretrained:  -> sha256:[0-9a-f]{16}", str(err.value))

    # the data moved to another folder (same names and sizes): the same run
    moved = tmp_path / "moved"
    moved.mkdir()
    for f in data:
        (moved / f.name).write_bytes(f.read_bytes())
    _identity_config(root, [moved / f.name for f in data]).get_parsed_content("run_identity").check()


def test_resume_false_moves_the_earlier_run_aside(tmp_path):
    data = tmp_path / "a.nii.gz"
    data.write_bytes(b"x")
    root = tmp_path / "run"
    first = _identity_config(root, [data]).get_parsed_content("run_identity")
    first.check()
    _save_checkpoint(first, root / "models" / "checkpoints", 4)
    (root / "models" / "model.pt").write_bytes(b"weights")
    _identity_config(root, [data], learning_rate=0.5, resume=False).get_parsed_content("run_identity").check()
    moved = [p for p in root.iterdir() if p.name.startswith("models.superseded-")]
    assert len(moved) == 1 and (moved[0] / "model.pt").read_bytes() == b"weights"
    assert (moved[0] / "checkpoints" / "checkpoint_4.pt").is_file()
    assert not list_checkpoints(root / "models" / "checkpoints") and (root / "models" / "checkpoints" / RUN_RECORD).is_file()


def test_weights_without_a_run_record_start_a_fresh_run_with_a_warning(tmp_path, caplog):
    """A downloaded bundle's models/model.pt (or MONAI Label's starting model): trained from, replaced, and said so."""
    data = tmp_path / "a.nii.gz"
    data.write_bytes(b"x")
    (tmp_path / "run" / "models").mkdir(parents=True)
    (tmp_path / "run" / "models" / "model.pt").write_bytes(b"downloaded")
    with caplog.at_level(logging.WARNING):
        _identity_config(tmp_path / "run", [data]).get_parsed_content("run_identity").check()
    assert "model.pt: not made by a run recorded" in caplog.text and (tmp_path / "run" / "models" / "model.pt").read_bytes() == b"downloaded"


def test_supersede_refuses_a_bundle_folder(tmp_path):
    (tmp_path / "b" / "configs").mkdir(parents=True)
    with pytest.raises(RunMismatchError, match="configs folder"):
        supersede([tmp_path / "b"])
    assert supersede([tmp_path / "empty"]) == []


def test_longer_run_replans_the_cosine_schedule(tmp_path):
    """Continuing a 10-step run to 20 steps: from step 5 on, the lr is that of a 20-step schedule (not the old one's)."""
    def parts(t_total):
        net = torch.nn.Linear(2, 2)
        opt = torch.optim.SGD(net.parameters(), lr=1.0)
        return net, opt, WarmupCosineSchedule(opt, warmup_steps=2, t_total=t_total)

    from ignite.engine import Engine

    net, opt, sched = parts(10)
    engine = Engine(lambda e, b: None)
    for _ in range(5):
        opt.step()
        sched.step()
    engine.state.iteration, engine.state.epoch, engine.state.max_epochs, engine.state.epoch_length = 5, 5, 10, 1
    AtomicCheckpointSaver(str(tmp_path), {"model": net, "optimizer": opt, "trainer": engine}).save(engine)  # no scheduler state

    net2, opt2, sched2 = parts(20)
    engine2 = Engine(lambda e, b: None)
    engine2.state.max_epochs = 20
    ResumeFromLatest(str(tmp_path), {"model": net2, "optimizer": opt2, "trainer": engine2}, schedulers=[sched2])(engine2)
    _, _, fresh = parts(20)
    for _ in range(5):
        fresh.optimizer.step()
        fresh.step()
    assert sched2.t_total == 20 and sched2.last_epoch == 5
    assert math.isclose(opt2.param_groups[0]["lr"], fresh.get_last_lr()[0], rel_tol=1e-9)
    sched2.step(), fresh.step()
    assert math.isclose(sched2.get_last_lr()[0], fresh.get_last_lr()[0], rel_tol=1e-9)


# -- provenance and contract -----------------------------------------------------------------------
WINDOW = {"orientation": "RAS", "pixdim": [1.5, 1.5, 1.5], "intensity": {"mode": "window", "window": [-175.0, 250.0], "range": [0.1, 1.0]}, "in_channels": 1}


def _weights_with_record(tmp_path: Path, preprocessing: dict, network: str = "SwinUNETR", state: dict | None = None) -> Path:
    path = tmp_path / "encoder.pt"
    torch.save(state if state is not None else {"w": torch.ones(2)}, path)
    write_record(path, build_record(path, "encoder", network, preprocessing))
    return path


def test_contract_names_both_values_and_the_override(tmp_path, caplog):
    theirs = {**WINDOW, "pixdim": [2.0, 2.0, 2.0], "intensity": {"mode": "zscore", "scope": "volume"}}
    path = _weights_with_record(tmp_path, theirs)
    hints = override_hints({"pixdim": "@pixdim", "intensity": {"mode": "window", "window": "@hu_window", "range": "@intensity_range"}})
    with pytest.raises(PreprocessingMismatchError) as err:
        check_contract(path, WINDOW, "SwinUNETR", override_hints=hints)
    msg = str(err.value)
    assert "pixdim: weights [2.0, 2.0, 2.0], this bundle [1.5, 1.5, 1.5] (set here by --pixdim)" in msg
    assert "intensity: weights z-score (volume), this bundle HU window [-175.0, 250.0] -> [0.1, 1.0] (set here by --hu_window --intensity_range)" in msg
    assert "--allow_preprocessing_mismatch True" in msg
    with caplog.at_level(logging.WARNING):
        assert check_contract(path, WINDOW, "SwinUNETR", allow_mismatch=True)["kind"] == "encoder"
    assert "loading anyway" in caplog.text and "z-score" in caplog.text
    with pytest.raises(PreprocessingMismatchError, match="network: weights from SwinUNETR"):
        check_contract(_weights_with_record(tmp_path, WINDOW), WINDOW, "DynUNet")


def test_contract_rules(tmp_path, caplog):
    assert compare(WINDOW, {**WINDOW, "in_channels": 4}) == []  # 1 -> 4 channels is spread over the first layer
    assert compare({**WINDOW, "in_channels": 4}, WINDOW) == [("in_channels", 4, 1)]
    assert compare({**WINDOW, "orientation": "ras"}, WINDOW) == []
    assert compare(WINDOW, {**WINDOW, "intensity": {"mode": "windows", "windows": ["brain"]}}, ignore=["intensity"]) == []
    bare = tmp_path / "external.pt"
    torch.save({"w": torch.ones(1)}, bare)
    with caplog.at_level(logging.INFO):
        assert check_contract(bare, WINDOW, "SwinUNETR") is None
    assert "has no provenance record" in caplog.text
    path = _weights_with_record(tmp_path, WINDOW)
    torch.save({"w": torch.zeros(3)}, path)  # the weights replaced after export: the record no longer describes them
    assert read_record(path) is None


def test_anatomask_zscore_weights_are_refused_by_btcv(tmp_path, caplog):
    """The known case: AnatoMask pretrains on z-scored CT, btcv_finetune fine-tunes on an HU window."""
    pre = ConfigParser()
    pre.read_config(str(BUNDLES / "anatomask_pretrain" / "configs" / "train.json"))
    pre.update({"bundle_root": str(tmp_path / "pre"), "dynunet_filters": [8, 16, 32, 64, 128], "filters": [8, 16, 32, 64, 128]})
    weights = _weights_with_record(tmp_path, pre.get_parsed_content("preprocessing_settings"), "DynUNet", pre.get_parsed_content("network_def").state_dict())
    down = ConfigParser()
    down.read_config([str(BUNDLES / "btcv_finetune" / "configs" / f) for f in ("train.json", "dynunet.json")])
    down.update({"bundle_root": str(tmp_path / "down"), "pretrained": str(weights), "device": "$torch.device('cpu')", "dynunet_filters": [8, 16, 32, 64, 128]})
    down["bundle_run"] = BundleRun(down, [], {})  # as BundleWorkflow gives it: the hints name the overrides
    with pytest.raises(RuntimeError) as err:
        down.get_parsed_content("network")
    cause = err.value.__cause__
    assert isinstance(cause, PreprocessingMismatchError)
    assert "intensity: weights z-score (volume), this bundle HU window [-175.0, 250.0] -> [0.1, 1.0] (set here by --hu_window --intensity_range)" in str(cause)
    assert "downstream_window.json" in str(cause)
    down.update({"allow_preprocessing_mismatch": True})  # the bundle's override: loads, with the differences as a warning
    with caplog.at_level(logging.WARNING):
        down.get_parsed_content("network", lazy=False)
    assert "loading anyway" in caplog.text and "z-score" in caplog.text
    # the overlay that pretrains with btcv's window makes weights btcv accepts
    aligned = ConfigParser()
    aligned.read_config([str(BUNDLES / "anatomask_pretrain" / "configs" / f) for f in ("train.json", "downstream_window.json")])
    assert not compare(aligned.get_parsed_content("preprocessing_settings"), down.get_parsed_content("preprocessing_settings"))


# -- sequences through monai.bundle run -------------------------------------------------------------
def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_pretraining_sequences(tmp_path, phantom_root):
    """demo -> other data / other network (stopped, nothing written) -> longer run (continued) -> --resume False (moved aside)."""
    base = {**TINY_SUBFORE, "bundle_root": str(tmp_path), "phantom_dir": str(phantom_root), "num_phantoms": 5, "num_phantom_validation": 1,
            "num_steps": 4, "epoch_length": 2, "checkpoint_interval": 2, "image_interval": 100}
    run_dir = tmp_path / "runs" / "demo"
    assert_ok(run_bundle_here(SUBFORE, base))
    model = run_dir / "models" / "model.pt"
    before = _sha(model)

    record = json.loads((run_dir / "models" / "encoder.json").read_text())
    assert record["sha256"] == _sha(run_dir / "models" / "encoder.pt") and record["kind"] == "encoder"
    assert record["bundle"] == "subfore_pretrain" and record["bundle_version"] and len(record["run"]["fingerprint"]) == 64
    assert record["preprocessing"]["intensity"] == {"mode": "window", "window": [-175.0, 250.0], "range": [0.1, 1.0]}
    assert record["preprocessing"]["pixdim"] == [3.0, 3.0, 3.0] and record["preprocessing"]["orientation"] == "RAS"
    assert record["training"]["iteration"] == 4 and math.isfinite(record["training"]["last_loss"])
    assert record["data"]["num_cases"] == {"training": 4} and record["network"]["family"] == "SwinUNETR"
    assert record["software"]["torch"] == torch.__version__ and record["created"].startswith("20")
    assert record["machine"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and record["machine"]["cpu"]
    assert json.loads((run_dir / "models" / "model.json").read_text())["kind"] == "full network"

    from common.data import ensure_phantom_dataset

    other = ensure_phantom_dataset(tmp_path / "other", num_cases=2, num_validation=0, seed=123)  # the user's "own data"
    result = run_bundle_here(SUBFORE, {**base, "dataset_dir": str(other)})
    out = result.stdout + result.stderr
    assert result.returncode != 0 and "belongs to another run" in out and "cases: training: 8 -> 4 files" in out
    assert _sha(model) == before

    result = run_bundle_here(SUBFORE, {**base, "feature_size": 24})
    out = result.stdout + result.stderr
    assert result.returncode != 0 and "feature_size: 12 -> 24" in out and "size mismatch" not in out
    assert len(out.splitlines()) < 120 and _sha(model) == before

    out = assert_ok(run_bundle_here(SUBFORE, {**base, "num_steps": 6}))
    assert "Continuing run" in out and re.search(r"Resumed from .*checkpoint_4\.pt at iteration 4", out)
    assert list_checkpoints(run_dir / "models" / "checkpoints")[-1][0] == 6
    assert json.loads((run_dir / "models" / "model.json").read_text())["training"]["iteration"] == 6

    out = assert_ok(run_bundle_here(SUBFORE, {**base, "num_steps": 2, "feature_size": 24, "resume": False}))
    aside = [p for p in run_dir.iterdir() if p.name.startswith("models.superseded-")]
    assert len(aside) == 1 and list_checkpoints(aside[0] / "checkpoints")[-1][0] == 6 and (aside[0] / "model.pt").is_file()
    assert "Resumed" not in out and list_checkpoints(run_dir / "models" / "checkpoints")[-1][0] == 2  # a new run from step 0

    # the paper configuration writes to the bundle's own models/, never into the demo's run
    result = run_bundle_here([SUBFORE[0]], {**base, "num_steps": 1, "epoch_length": 1})
    assert "belongs to another run" not in result.stdout + result.stderr
    assert (tmp_path / "models" / "checkpoints" / RUN_RECORD).is_file()


@pytest.mark.slow
def test_finetune_scratch_then_pretrained_does_not_reuse_the_scratch_run(tmp_path, phantom_root):
    base = {"bundle_root": str(tmp_path), "phantom_dir": str(phantom_root), "num_phantoms": 5, "num_phantom_validation": 1,
            "num_workers": 0, "num_steps": 2, "epoch_length": 1, "val_interval": 1}
    assert_ok(run_bundle_here(BTCV, base))
    run_dir = tmp_path / "runs" / "demo"
    best = json.loads((run_dir / "models" / "model.json").read_text())
    assert best["kind"] == "best model" and best["bundle"] == "btcv_finetune" and best["started_from"] is None
    assert best["training"]["best_metric"]["name"] == "val_mean_dice" and best["preprocessing"]["intensity"]["mode"] == "window"

    # a pretrained encoder with a record (from subfore's config, matching preprocessing)
    pre = ConfigParser()
    pre.read_config([str(p) for p in SUBFORE])
    pre.update({"bundle_root": str(tmp_path / "pre")})
    from common.networks import encoder_state_dict

    encoder = tmp_path / "encoder.pt"
    torch.save(encoder_state_dict(pre.get_parsed_content("network_def")), encoder)
    write_record(encoder, build_record(encoder, "encoder", "SwinUNETR", pre.get_parsed_content("preprocessing_settings")))

    result = run_bundle_here(BTCV, {**base, "pretrained": str(encoder)})
    out = result.stdout + result.stderr
    assert result.returncode != 0 and re.search(r"pretrained:  -> sha256:[0-9a-f]{16}", out) and "Resumed" not in out

    out = assert_ok(run_bundle_here(BTCV, {**base, "pretrained": str(encoder), "resume": False}))
    assert "Resumed" not in out and "match its record" in out
    best = json.loads((run_dir / "models" / "model.json").read_text())
    assert best["started_from"]["pretrained"]["sha256"] == _sha(encoder)

    # preprocessing that differs from the weights' record is refused, and the override turns it into a warning
    result = run_bundle_here(BTCV, {**base, "pretrained": str(encoder), "resume": False, "hu_window": [-1000.0, 1000.0]})
    out = result.stdout + result.stderr
    assert result.returncode != 0 and "weights HU window [-175.0, 250.0] -> [0.1, 1.0], this bundle HU window [-1000.0, 1000.0] -> [0.1, 1.0]" in out
    # the override turning the stop into a warning: test_contract_names_both_values_and_the_override (in-process)


@pytest.mark.parametrize("bundle", ["btcv_finetune", "brats_finetune", "medcontext_unetr", "ctfm_segmentation", "ctfm_classification"])
def test_demo_and_paper_runs_have_separate_folders_that_evaluate_and_inference_follow(bundle):
    def models_dir(*names: str) -> str:
        parser = ConfigParser()
        parser.read_config([str(BUNDLES / bundle / "configs" / n) for n in names])
        parser.update({"bundle_root": "/b"})
        return parser.get_parsed_content("models_dir")

    assert models_dir("train.json") == models_dir("inference.json") == "/b/models"  # where the Model Zoo and MONAI Label look
    demo = {models_dir("train.json", "demo.json"), models_dir("inference.json", "demo.json"), models_dir("train.json", "demo.json", "evaluate.json")}
    assert demo == {"/b/runs/demo/models"}
