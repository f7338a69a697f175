"""subfore_pretrain end to end through ``python -m monai.bundle run`` (tiny network, paper configs).

Each run uses the real ``train.json`` with CPU-sized overrides (``TINY_SUBFORE``) and checks what a
user would: the loss on fixed data goes down, weights/checkpoints/TensorBoard files exist, a second
run resumes, several processes train through ``multi_gpu_train.json``, and bad input names the file.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest
import torch
from conftest import BUNDLES, TINY_SUBFORE, assert_ok, real_data, run_bundle, run_bundle_here
from monai.bundle import ConfigParser
from monai.transforms import CenterSpatialCrop, Compose
from monai.utils import set_determinism

from common.engines import MethodOutput

pytestmark = pytest.mark.slow

CONFIGS = BUNDLES / "subfore_pretrain" / "configs"
TRAIN = CONFIGS / "train.json"


def overrides(tmp_path: Path, phantom_root: Path | None = None, **extra) -> dict:
    o = {**TINY_SUBFORE, "bundle_root": str(tmp_path), "num_steps": 8, "epoch_length": 4, "checkpoint_interval": 4, "image_interval": 4}
    if phantom_root is not None:
        o.update(phantom_dir=str(phantom_root), num_phantoms=5, num_phantom_validation=1)
    o.update(extra)
    return o


def fixed_data_loss(overrides: dict, image: str, weights: Path | None) -> float:
    """Masked L1 of the bundle's network on a fixed centre crop with a fixed mask.

    Without ``weights`` the network is the seeded initialisation the training run starts from.
    """
    parser = ConfigParser()
    parser.read_config(str(TRAIN))
    parser.update({k: v for k, v in overrides.items()})
    set_determinism(seed=parser.get_parsed_content("seed"))
    net = parser.get_parsed_content("network_def", instantiate=True)
    if weights is not None:
        net.load_state_dict(torch.load(weights, map_location="cpu"))
    net.eval()
    pre = Compose(parser.get_parsed_content("train#deterministic_transforms"))
    x = CenterSpatialCrop(parser.get_parsed_content("roi_size"))(pre({"image": image})["image"])[None].float()
    masked, mask = parser.get_parsed_content("masker")(x, torch.Generator().manual_seed(0))
    with torch.no_grad():
        return float(parser.get_parsed_content("loss")(MethodOutput(reconstruction=net(masked), mask=mask), x))


def event_tags(log_dir: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags: set[str] = set()
    for f in log_dir.glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(f), size_guidance={"images": 0, "scalars": 0})
        acc.Reload()
        tags |= set(acc.Tags()["scalars"]) | set(acc.Tags()["images"])
    return tags


def test_pretraining_on_phantoms_learns_writes_outputs_and_resumes(tmp_path, phantom_root):
    o = overrides(tmp_path, phantom_root)
    out = assert_ok(run_bundle_here([TRAIN], o))
    assert "embedded synthetic CT phantoms" in out

    models = tmp_path / "models"
    for name in ("model.pt", "encoder.pt", "encoder.json"):
        assert (models / name).is_file(), name
    assert sorted(p.name for p in (models / "checkpoints").iterdir()) == ["checkpoint_4.pt", "checkpoint_8.pt", "run.json"]
    ckpt = torch.load(models / "checkpoints" / "checkpoint_8.pt", weights_only=True)
    assert set(ckpt) == {"model", "optimizer", "trainer", "nonfinite_guard", "run_identity"} and ckpt["trainer"]["iteration"] == 8
    tags = event_tags(tmp_path / "eval" / "tensorboard")
    assert {"train/loss", "train/lr", "masking/no_foreground_fallback_rate", "reconstruction/axial"} <= tags
    info = json.loads((models / "encoder.json").read_text())
    assert info["preprocessing"]["intensity"]["range"] == [0.1, 1.0] and info["training"]["num_encoder_tensors"] > 50

    image = json.loads(next(phantom_root.glob("*/dataset.json")).read_text())["training"][0]["image"]
    image = str(next(phantom_root.glob("*/dataset.json")).parent / image)
    before, after = fixed_data_loss(o, image, None), fixed_data_loss(o, image, models / "model.pt")
    assert after < 0.8 * before, (before, after)

    # a second run with a longer schedule resumes from the newest checkpoint (iteration 8)
    out2 = assert_ok(run_bundle_here([TRAIN], {**o, "num_steps": 12}))
    assert re.search(r"Resumed from .*checkpoint_8\.pt at iteration 8", out2)
    assert "Epoch: 1/" not in out2 and "Epoch: 3/3, Iter: 4/4" in out2
    assert (models / "checkpoints" / "checkpoint_12.pt").is_file()


def test_pretraining_on_real_ct_reduces_loss(tmp_path):
    ct = real_data("ts_ct_full", "example_ct.nii.gz")
    datalist = tmp_path / "datalist.json"
    # the one scan twice, so a batch of 2 holds two different random crops
    datalist.write_text(json.dumps({"training": [{"image": str(ct)}, {"image": str(ct)}]}))
    o = overrides(tmp_path, datalist=str(datalist), num_steps=10, epoch_length=5, checkpoint_interval=5)
    out = assert_ok(run_bundle([TRAIN], o))
    assert "Using 2 cases from datalist" in out
    before, after = fixed_data_loss(o, str(ct), None), fixed_data_loss(o, str(ct), tmp_path / "models" / "model.pt")
    assert after < 0.8 * before, (before, after)


# multi_gpu_train.json under torchrun (two "nodes", gloo): tests/test_store.py::test_two_torchrun_nodes_...


def test_datalist_naming_a_missing_file_stops_with_its_path(tmp_path):
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"training": [{"image": "scans/not_there_001.nii.gz"}]}))
    r = run_bundle_here([TRAIN], overrides(tmp_path, datalist=str(datalist)))
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert f"image file does not exist: {tmp_path / 'scans' / 'not_there_001.nii.gz'}" in out and "nothing was trained" in out
    # without the pre-flight check the datalist loader still lists missing files (tests/test_preflight.py)


def test_corrupt_nifti_stops_with_its_path(tmp_path, phantom_root):
    good = next(phantom_root.glob("*/imagesTr/phantom_000.nii.gz"))
    corrupt = tmp_path / "corrupt_case.nii.gz"
    raw = gzip.decompress(good.read_bytes())
    corrupt.write_bytes(gzip.compress(raw)[: len(gzip.compress(raw)) // 3])  # truncated gzip stream
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"training": [{"image": str(good)}, {"image": str(corrupt)}]}))
    # the pre-flight check's message for it is tested in-process (test_preflight, test_bad_input_matrix: "truncated")
    r = run_bundle_here([TRAIN], overrides(tmp_path, datalist=str(datalist), preflight=False))  # caught at loading without the check
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert f"cannot read image file '{corrupt}'" in out
