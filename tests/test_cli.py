"""Command-line overrides: a typo or a lower-case boolean stops the run before anything happens."""

from __future__ import annotations

import pytest
from conftest import BUNDLES, run_bundle

from common.cli import CommandLineError, check_overrides, command, config_file_list, format_override, value_list
from common.runs import BundleWorkflow

TRAIN = BUNDLES / "btcv_finetune" / "configs" / "train.json"


def test_override_values_and_config_file_lists():
    assert [format_override(v) for v in (True, None, [1, 2], "x", 0.5)] == ["True", "None", "[1, 2]", "x", "0.5"]
    assert config_file_list(["a.json", "b.json"]) == ["a.json", "b.json"] and config_file_list("a.json,b.json") == ["a.json", "b.json"]
    assert config_file_list(str(TRAIN)) == [str(TRAIN)]
    assert value_list("validation") == ["validation"] and value_list(("a", "b")) == ["a", "b"] and value_list(None) == []


def test_unknown_keys_and_string_booleans_are_refused(monkeypatch):
    """Overrides as Python Fire hands them to the workflow: ``--resume false`` arrives as the string 'false'."""
    files = [str(TRAIN)]
    check_overrides(files, {"learning_rate": 0.1, "resume": False, "network_def#use_checkpoint": True})  # all fine
    with pytest.raises(CommandLineError) as err:
        check_overrides(files, {"learning_rat": 0.1, "resume": "false", "train#handlerz": []})
    message = str(err.value)
    assert "--learning_rat: no such key" in message and "did you mean --learning_rate?" in message
    assert "--resume false: read as the string 'false'" in message and "write --resume False" in message
    assert "--train#handlerz: no such key" in message
    check_overrides(files, {"experiment_name": "x", "run_name": "y"}, tracking=True)  # MONAI's tracking keys
    with pytest.raises(CommandLineError):
        check_overrides(files, {"experiment_name": "x"})  # without tracking they are new keys
    with pytest.raises(CommandLineError, match="learning_rat"):  # the workflow checks before it builds anything
        BundleWorkflow(config_file=files, workflow_type="train", logging_file=False, learning_rat=0.1)
    monkeypatch.setenv("BUNDLE_ALLOW_NEW_KEYS", "1")
    check_overrides(files, {"my_new_key": 1})


def test_a_bundle_run_with_a_typo_stops_before_training(tmp_path):
    result = run_bundle([TRAIN], {"bundle_root": str(tmp_path), "num_stepz": 4})
    out = result.stdout + result.stderr
    assert result.returncode != 0 and "--num_stepz: no such key" in out and "did you mean --num_steps?" in out
    assert not (tmp_path / "models").exists()  # nothing was started or written


def test_the_collections_commands_read_overrides_as_monai_bundle_run_does(capsys, phantom_root):
    """``python -m common.data.check`` and ``common.data.preprocess`` read their command lines with Python Fire, as
    ``monai.bundle run`` does, and refuse what its workflow refuses (status 2, nothing read or written)."""
    from common.data import check, preprocess

    assert command(check.main, ["--config_file", str(TRAIN), "--datalis", "/data/x.json"]) == 2
    assert "--datalis: no such key" in capsys.readouterr().err
    assert command(preprocess.main, ["--config_file", str(TRAIN), "--resume", "false"]) == 2
    assert "write --resume False" in capsys.readouterr().err
    assert command(preprocess.main, ["--config_file", str(TRAIN.with_name("nope.json"))]) == 2
    assert "no such file" in capsys.readouterr().err
    phantoms = ["--phantom_dir", str(phantom_root), "--num_phantoms", "5", "--num_phantom_validation", "1"]
    assert command(check.main, ["--config_file", str(TRAIN), "--keys", "validation", *phantoms]) == 0  # one list: a name, not its letters
    assert "All 1 cases (validation) are usable." in capsys.readouterr().out
    assert command(preprocess.main, ["--config_file", str(TRAIN), "--codec", "zip", "--store_dir", str(phantom_root / "st"), *phantoms]) == 2
    assert "--codec zip: give one of lz4hc, zstd" in capsys.readouterr().err and not (phantom_root / "st").exists()
