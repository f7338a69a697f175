"""Command-line overrides: a typo or a lower-case boolean stops the run before anything happens."""

from __future__ import annotations

import pytest
from conftest import BUNDLES, run_bundle

from common.cli import (
    CommandLineError,
    check_command_line,
    config_files,
    format_override,
    parse_overrides,
)

TRAIN = BUNDLES / "btcv_finetune" / "configs" / "train.json"
MAIN = "/venv/lib/python3.11/site-packages/monai/bundle/__main__.py"


def test_overrides_are_parsed_as_monai_reads_them():
    assert parse_overrides(["--config_file", "a.json", "--lr=0.1", "--flag", "--x", "1"]) == {"config_file": "a.json", "lr": "0.1", "flag": "", "x": "1"}
    assert config_files("['a.json', 'b.json']") == ["a.json", "b.json"] and config_files("a.json,b.json") == ["a.json", "b.json"]
    assert [format_override(v) for v in (True, None, [1, 2], "x", 0.5)] == ["True", "None", "[1, 2]", "x", "0.5"]


def test_unknown_keys_and_string_booleans_are_refused(monkeypatch):
    argv = [MAIN, "run", "--config_file", str(TRAIN)]
    check_command_line([*argv, "--learning_rate", "0.1", "--resume", "False", "--network_def#use_checkpoint", "True"])  # all fine
    with pytest.raises(CommandLineError) as err:
        check_command_line([*argv, "--learning_rat", "0.1", "--resume", "false", "--train#handlerz", "[]"])
    message = str(err.value)
    assert "--learning_rat: no such key" in message and "did you mean --learning_rate?" in message
    assert "--resume false: read as the string 'false'" in message and "write --resume False" in message
    assert "--train#handlerz: no such key" in message
    check_command_line([*argv, "--tracking", "mlflow", "--experiment_name", "x", "--run_name", "y"])  # MONAI's tracking keys
    check_command_line(["pytest", "--learning_rat", "1"])  # not a bundle run: nothing to check
    monkeypatch.setenv("BUNDLE_ALLOW_NEW_KEYS", "1")
    check_command_line([*argv, "--my_new_key", "1"])


def test_a_bundle_run_with_a_typo_stops_before_training(tmp_path):
    result = run_bundle([TRAIN], {"bundle_root": str(tmp_path), "num_stepz": 4})
    out = result.stdout + result.stderr
    assert result.returncode != 0 and "--num_stepz: no such key" in out and "did you mean --num_steps?" in out
    assert not (tmp_path / "models").exists()  # nothing was started or written
