"""nnU-Net's CT normalisation (clip to the dataset's foreground percentiles, then its z-score), by hand."""

from __future__ import annotations

import json

import pytest
import torch

from common.transforms import nnunet_ct_normalized, nnunet_ct_settings

PROPS = {"percentile_00_5": -1000.0, "percentile_99_5": 1000.0, "mean": 100.0, "std": 200.0}


def test_clip_then_dataset_zscore_by_hand():
    out = nnunet_ct_normalized("image", PROPS)({"image": torch.tensor([[-2000.0, 0.0, 100.0, 3000.0]])})["image"]
    # clip: [-1000, 0, 100, 1000]; (x - 100) / 200
    assert torch.allclose(torch.as_tensor(out), torch.tensor([[-5.5, -0.5, 0.0, 4.5]]))


def test_reads_nnunet_fingerprint_file(tmp_path):
    path = tmp_path / "dataset_fingerprint.json"
    path.write_text(json.dumps({"foreground_intensity_properties_per_channel": {"0": {**PROPS, "median": 90.0, "max": 3000.0}}}))
    assert nnunet_ct_settings(str(path)) == {"mode": "zscore", "scope": "dataset", "clip": [-1000.0, 1000.0], "mean": 100.0, "std": 200.0}


@pytest.mark.parametrize("bad, message", [
    (None, "ct_normalization is null"),
    ({"mean": 0.0, "std": 1.0}, "missing"),
    ({**PROPS, "std": 0.0}, "std > 0"),
    ("/nonexistent/dataset_fingerprint.json", "no fingerprint file"),
])
def test_refusals_name_the_setting(bad, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        nnunet_ct_normalized("image", bad)
