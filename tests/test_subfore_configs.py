"""The bundle's config files parse, hold the paper settings, and build both networks."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import BUNDLES
from monai.bundle import ConfigParser

from common.networks import encoder_state_dict

CONFIGS = BUNDLES / "subfore_pretrain" / "configs"
METADATA_FIELDS = [
    "version", "changelog", "monai_version", "pytorch_version", "numpy_version", "required_packages_version",
    "task", "description", "authors", "copyright", "network_data_format", "name", "intended_use", "references",
]


def parser_for(*names: str, **overrides) -> ConfigParser:
    p = ConfigParser()
    p.read_config([str(CONFIGS / n) for n in names])
    p.update(overrides)
    return p


def test_train_json_keeps_the_seed_settings():
    p = parser_for("train.json")
    expected = {
        "pixdim": [1.5, 1.5, 1.5], "hu_window": [-175.0, 250.0], "intensity_range": [0.1, 1.0], "roi_size": [96, 96, 96],
        "subvolume_size": 16, "mask_ratio": 0.6, "foreground_threshold": -132.0, "learning_rate": 1e-4, "weight_decay": 1e-2,
        "warmup_steps": 100, "num_steps": 1600, "batch_size": 4, "feature_size": 48,
    }
    assert {k: p[k] for k in expected} == expected
    assert p["network_def"]["_target_"] == "SwinUNETR" and p["network_def"]["use_v2"] is True
    optim = p.get_parsed_content("optimizer")
    assert isinstance(optim, torch.optim.AdamW) and optim.defaults["weight_decay"] == 0.01
    masker = p.get_parsed_content("masker")
    assert abs(masker.threshold - (0.1 + 43 / 425 * 0.9)) < 1e-9


def test_unetr_overlay_builds_and_exports_its_encoder():
    p = parser_for("train.json", "unetr.json", roi_size=[32, 32, 32])
    p["network_def"].update(hidden_size=96, mlp_dim=192, num_heads=4, feature_size=8)
    net = p.get_parsed_content("network_def")
    assert type(net).__name__ == "UNETR"
    assert net(torch.rand(1, 1, 32, 32, 32)).shape == (1, 1, 32, 32, 32)
    keys = encoder_state_dict(net)
    assert keys and all(k.startswith(("vit.", "encoder")) for k in keys)


def test_metadata_has_the_model_zoo_fields():
    meta = json.loads((CONFIGS / "metadata.json").read_text())
    assert [f for f in METADATA_FIELDS if f not in meta] == []
    assert meta["name"] == "subfore_pretrain" and meta["version"] in meta["changelog"]
    image = meta["network_data_format"]["inputs"]["image"]
    assert image["spatial_shape"] == [96, 96, 96] and image["value_range"] == [0.1, 1.0]


def test_cache_on_device_keeps_volumes_on_the_device_and_crops_there(tmp_path, phantom_root):
    p = parser_for("train.json", bundle_root=str(tmp_path), phantom_dir=str(phantom_root), num_phantoms=5, num_phantom_validation=1,
                   roi_size=[32, 32, 32], batch_size=2, num_workers=2, cache_on_device=True, device="$torch.device('cpu')")
    loader = p.get_parsed_content("train#dataloader")
    assert loader.num_workers == 0  # the cached tensors live on the device: threads, not worker processes
    cached = loader.dataset._cache[0]["image"]
    assert cached.device == torch.device("cpu") and cached.shape[1:] != (32, 32, 32)  # the whole volume is cached, not a crop
    batch = next(iter(loader))
    assert batch["image"].shape == (2, 1, 32, 32, 32) and batch["image"].device == torch.device("cpu")


def test_gradient_checkpointing_option_gives_the_same_gradients():
    tiny = {"feature_size": 12, "network_def#depths": [1, 1, 1, 1], "network_def#window_size": 4}
    x = torch.rand(1, 1, 64, 64, 32)
    grads = []
    for on in (False, True):
        net = parser_for("train.json", **tiny, gradient_checkpointing=on).get_parsed_content("network_def")
        assert any(getattr(m, "use_checkpoint", False) for m in net.modules()) == on
        if grads:
            net.load_state_dict(grads[0][0])  # same weights as the run without checkpointing
        net(x).square().mean().backward()
        grads.append(({k: v.detach().clone() for k, v in net.state_dict().items()}, [p.grad.clone() for p in net.parameters()]))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads[0][1], grads[1][1]))  # recomputation, same result


def test_channels_last_option_keeps_the_result():
    """``channels_last`` stores the conv weights in ``channels_last_3d`` (0.6-0.7x step time on a CPU, bench/bench_training_speed.py);
    the network computes the same function, so checkpoints and exported weights stay interchangeable."""
    tiny = {"feature_size": 12, "network_def#depths": [1, 1, 1, 1], "network_def#window_size": 4, "device": "$torch.device('cpu')"}
    x = torch.rand(1, 1, 64, 64, 32)
    plain = parser_for("train.json", **tiny).get_parsed_content("network")
    fast = parser_for("train.json", **tiny, channels_last=True).get_parsed_content("network")
    conv = next(m for m in fast.modules() if isinstance(m, torch.nn.Conv3d) and m.in_channels > 1)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last_3d) and not conv.weight.is_contiguous()
    fast.load_state_dict(plain.state_dict())
    assert torch.allclose(plain(x), fast(x), atol=1e-5)


def test_reference_schedule_overlay_resolves_to_the_reference_codes_run():
    """src/pretrain/pretrain.py: 1600 epochs of 399 iterations, AdamW lr 8e-4, weight decay 5e-2, warmup 20
    epochs, drop path 0.1, gradient checkpointing, clip_grad_norm_(1e5), timm ModelEmaV2 (decay 0.9999),
    [0, 1] scaling; the loss averaged over every masked block of the batch."""
    p = parser_for("train.json", "reference_schedule.json")
    assert p.get_parsed_content("num_steps") == 1600 * 399 and p.get_parsed_content("epoch_length") == 399
    assert p.get_parsed_content("warmup_steps") == 20 * 399
    optim = p.get_parsed_content("optimizer")
    assert optim.defaults["lr"] == 8e-4 and optim.defaults["weight_decay"] == 5e-2
    sched = p.get_parsed_content("lr_scheduler")
    lrs = []
    for step in range(1600 * 399):
        if step in (0, 20 * 399, 1600 * 399 - 1):
            lrs.append(optim.param_groups[0]["lr"])
        if step >= 20 * 399 + 1:
            break
        sched.step()
    assert lrs[0] == 0.0 and abs(lrs[1] - 8e-4) < 1e-12  # linear warmup to the peak at 7980 steps
    assert p.get_parsed_content("intensity_range") == [0.0, 1.0] and p.get_parsed_content("loss_reduction") == "batch"
    net = p.get_parsed_content("network_def")
    assert net.swinViT.layers4[0].blocks[-1].drop_path.drop_prob == pytest.approx(0.1) and p.get_parsed_content("gradient_checkpointing")
    handlers = p.get_parsed_content("train#handlers")
    clip = [h for h in handlers if type(h).__name__ == "GradientClipping"]
    ema = [h for h in handlers if type(h).__name__ == "EMAHandler"]
    assert len(clip) == 1 and clip[0].max_norm == 1e5 and len(ema) == 1 and ema[0].momentum == pytest.approx(1e-4)
    assert p.get_parsed_content("masker").threshold == pytest.approx(0.1, abs=2e-3)  # -132 HU on [0, 1]: the reference's 0.1
