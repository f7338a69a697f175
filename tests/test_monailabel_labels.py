"""MONAI Label's label names match the label map a bundle writes (``python -m common.zoo.export --monailabel``).

MONAI Label names labels from the first metadata output's ``channel_def`` (``{name.lower(): int(key)}``).
brats_finetune's network outputs region channels (TC, WT, ET) but writes a label map in the dataset's
numbering, so its Model Zoo metadata would give MONAI Label the channel indices; the MONAI Label
export describes the written map instead. The real server reading it is in tests/test_monailabel.py.
"""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import BUNDLES
from monai.bundle import ConfigParser

from common.zoo.export import export_bundle
from common.zoo.monailabel import NETWORK_OUTPUT_KEY, monailabel_labels
from common.zoo.verify import ALL_CHECKS, verify_bundle

#: no network is built: the label checks read configs and metadata only
LABEL_CHECKS_ONLY = tuple(c for c in ALL_CHECKS if c not in ("files", "json", "metadata_schema", "channel_def", "monailabel_labels"))


def _brats_copy(tmp_path, label_scheme: str):
    src = tmp_path / "src" / "brats_finetune"
    shutil.copytree(BUNDLES / "brats_finetune", src, ignore=shutil.ignore_patterns("models", "eval", "runs"))
    parser = ConfigParser()
    parser.read_config(str(src / "configs" / "inference.json"))
    parser["label_scheme"] = label_scheme
    ConfigParser.export_config_file(parser.config, str(src / "configs" / "inference.json"), indent=2)
    return src


@pytest.mark.parametrize(
    "scheme, written",
    [
        # the written value of each region is its own part: WT minus TC, TC minus ET, ET (module table of common.transforms.brats)
        ("msd", {"wt": 1, "tc": 2, "et": 3}),  # MSD Task01: 1 oedema, 2 non-enhancing, 3 enhancing
        ("brats2021", {"tc": 1, "wt": 2, "et": 4}),  # BraTS 2021: 1 necrotic core, 2 oedema, 4 enhancing
    ],
)
def test_monailabel_export_names_the_written_label_map(tmp_path, scheme, written):
    src = _brats_copy(tmp_path, scheme)
    zoo_meta = json.loads((src / "configs" / "metadata.json").read_text())
    assert monailabel_labels(zoo_meta) != written  # the Model Zoo metadata names the network's channels 0, 1, 2

    dest, _ = export_bundle(src, tmp_path / "app" / "model", monailabel=True)
    meta = json.loads((dest / "configs" / "metadata.json").read_text())
    assert monailabel_labels(meta) == written
    outputs = meta["network_data_format"]["outputs"]
    assert list(outputs) == ["pred", NETWORK_OUTPUT_KEY]  # MONAI Label restores and writes the first output's key: pred
    assert outputs["pred"]["format"] == "labels" and outputs["pred"]["num_channels"] == 1
    assert outputs["pred"]["value_range"] == [0, max(written.values())]
    assert outputs[NETWORK_OUTPUT_KEY] == zoo_meta["network_data_format"]["outputs"]["pred"]  # the network's description, unchanged
    findings = {f.check: f for f in verify_bundle(dest, skip=LABEL_CHECKS_ONLY)}
    assert all(f.ok for f in findings.values()), findings
    assert "match the written label map" in findings["monailabel_labels"].detail

    # the Model Zoo copy is not failed for it, but the mismatch and the way out are reported
    zoo = {f.check: f for f in verify_bundle(src, skip=LABEL_CHECKS_ONLY)}["monailabel_labels"]
    assert zoo.ok and "--monailabel" in zoo.detail and str(dict(sorted(written.items(), key=lambda kv: kv[1]))) in zoo.detail


def test_a_stale_monailabel_export_fails_the_label_check(tmp_path):
    """The MONAI Label copy's inference.json changed after export: its metadata names the old map."""
    dest, _ = export_bundle(_brats_copy(tmp_path, "msd"), tmp_path / "app" / "model", monailabel=True)
    infer = dest / "configs" / "inference.json"
    infer.write_text(infer.read_text().replace('"label_scheme": "msd"', '"label_scheme": "brats2021"'))
    finding = {f.check: f for f in verify_bundle(dest, skip=LABEL_CHECKS_ONLY)}["monailabel_labels"]
    assert not finding.ok and "{'wt': 1, 'tc': 2, 'et': 3}" in finding.detail and "{'tc': 1, 'wt': 2, 'et': 4}" in finding.detail


def test_monailabel_export_refuses_a_bundle_without_a_written_label_map(tmp_path):
    with pytest.raises(KeyError, match="label_map_names"):
        export_bundle(BUNDLES / "ctfm_classification", tmp_path / "out", monailabel=True)
    assert not (tmp_path / "out").exists()  # stopped before writing anything
