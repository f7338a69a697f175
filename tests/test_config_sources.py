"""Bundle configs are written from one source per shared block (common/dev/config_sources)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from common.dev.config_sources import BUNDLE_SOURCES, GENERATED_KEY, generated_configs, stale
from common.dev.config_sources.compose import SourceError, compose
from common.dev.config_sources.writer import dumps

ROOT = Path(__file__).resolve().parent.parent


def test_committed_configs_match_their_sources():
    problems = stale(ROOT / "bundles")
    assert not problems, "\n".join(problems)


def test_every_written_config_is_marked_and_names_its_sources():
    configs = generated_configs()
    assert len(configs) >= 50
    for g in configs:
        data = json.loads(g.text)
        assert next(iter(data)) == GENERATED_KEY
        assert f"common/dev/config_sources/bundles/{g.bundle}/{g.name}" in data[GENERATED_KEY]
        for block in g.blocks:
            assert block in data[GENERATED_KEY]


def test_check_reports_an_edited_config_and_a_config_without_source(tmp_path):
    bundles = tmp_path / "bundles"
    for d in (ROOT / "bundles").iterdir():
        if (d / "configs").is_dir():
            shutil.copytree(d / "configs", bundles / d.name / "configs")
    assert stale(bundles) == []
    train = bundles / "btcv_finetune" / "configs" / "train.json"
    train.write_text(train.read_text().replace('"num_steps": 25000', '"num_steps": 100'))
    (bundles / "btcv_finetune" / "configs" / "mine.json").write_text("{}")
    problems = stale(bundles)
    assert any("btcv_finetune/configs/train.json: differs" in p for p in problems)
    assert any("mine.json: has no source" in p for p in problems)
    assert len(problems) == 2


def _write(folder: Path, name: str, data: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(data))


def test_compose_rules(tmp_path):
    blocks, bundle = tmp_path / "blocks", tmp_path / "bundles" / "demo_bundle"
    # a shared block naming a bundle-own block (_name): each bundle gets its own value, referred to as a plain @key
    _write(blocks, "base", {"_blocks_": ["_name"], "root": "$locate(@bundle_name)", "imports": ["$import os"], "train": {"a": 1, "b": {"c": 2}},
                            "gone": 0, "seq": [1, 2]})
    _write(blocks, "more", {"_blocks_": ["base"], "train#b#d": 3, "+imports": ["$import torch"], "new#nested#x": 5})
    _write(bundle, "_own", {"classes": ["x", "y"]})
    _write(bundle, "_name", {"bundle_name": "demo_bundle"})
    source = {"_blocks_": ["more", "_own"], "train#a": 10, "+train#b": {"e": 4}, "-gone": None, "-seq#0": None, "extra": [1]}
    config, used = compose(source, blocks, bundle)
    assert used == ["_name", "base", "more", "_own"]
    assert config == {
        "bundle_name": "demo_bundle", "root": "$locate(@bundle_name)", "imports": ["$import os", "$import torch"],
        "train": {"a": 10, "b": {"c": 2, "d": 3, "e": 4}}, "seq": [2], "new": {"nested": {"x": 5}}, "classes": ["x", "y"], "extra": [1],
    }


def test_a_source_means_what_the_same_overlay_means_to_monai(tmp_path):
    """Composing a source onto a block gives the config MONAI builds from the two files as --config_file overlays."""
    from monai.bundle import ConfigParser

    blocks, bundle = tmp_path / "blocks", tmp_path / "bundles" / "b"
    base = {"imports": ["$import os"], "train": {"a": 1, "b": {"c": 2}}, "lr": 0.1}
    overlay = {"train#b#d": 3, "+imports": ["$import torch"], "lr": 0.2, "train#a": {"x": 1}}
    _write(blocks, "base", base)
    composed, _ = compose({"_blocks_": ["base"], **overlay}, blocks, bundle)
    _write(tmp_path, "base_file", base)
    _write(tmp_path, "overlay_file", overlay)
    merged = ConfigParser.load_config_files([str(tmp_path / "base_file.json"), str(tmp_path / "overlay_file.json")])
    assert composed == merged


def test_overlay_sources_keep_ids_and_merge_keys_for_monai(tmp_path):
    blocks, bundle = tmp_path / "blocks", tmp_path / "bundles" / "b"
    _write(blocks, "ov", {"_overlay_": True, "train#dataloader#shuffle": False, "+imports": ["$import x"], "drop": 1})
    config, _ = compose({"_overlay_": True, "_blocks_": ["ov"], "-drop": None, "a#b": 1}, blocks, bundle)
    assert config == {"train#dataloader#shuffle": False, "+imports": ["$import x"], "a#b": 1}


@pytest.mark.parametrize("source, message", [
    ({"_blocks_": ["nope"]}, "unknown block 'nope'"),
    ({"_blocks_": ["loop"]}, "block cycle"),
    ({"-missing": None}, "removes an entry that is not there"),
    ({"x": 1, "+x": [2]}, r"'\+x' cannot be set \(ValueError: config must be dict or list"),  # MONAI merge_kv's own message
])
def test_compose_errors_name_the_problem(tmp_path, source, message):
    blocks = tmp_path / "blocks"
    _write(blocks, "loop", {"_blocks_": ["loop"]})
    with pytest.raises(SourceError, match=message):
        compose(source, blocks, tmp_path / "bundles" / "b")


def test_writer_round_trips_and_keeps_short_values_inline():
    for g in generated_configs():
        config = json.loads(g.text)
        assert dumps(config) == g.text
    text = dumps({"a": [1, 2], "b": {"c": "x" * 200}})
    assert '"a": [1, 2]' in text and json.loads(text)["b"]["c"] == "x" * 200


def test_every_bundle_with_configs_has_sources():
    with_configs = {d.name for d in (ROOT / "bundles").iterdir() if (d / "configs").is_dir()}
    assert with_configs == {d.name for d in BUNDLE_SOURCES.iterdir() if d.is_dir()}
