"""Pretrained weights from subfore_pretrain load into a downstream SwinUNETR; bad files are refused."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import SwinUNETR, UNet

from common.handlers import atomic_torch_save
from common.networks import PretrainedLoadError, encoder_state_dict, load_pretrained

TINY = dict(feature_size=12, depths=(1, 1, 1, 1), window_size=4, use_v2=True)


def pretrained_encoder(tmp_path, in_channels: int = 1):
    torch.manual_seed(1)
    net = SwinUNETR(in_channels=in_channels, out_channels=in_channels, **TINY)
    enc = encoder_state_dict(net)
    atomic_torch_save(enc, tmp_path / "encoder.pt")
    return net, enc


def test_encoder_export_loads_every_tensor_into_a_14_class_network(tmp_path):
    net, enc = pretrained_encoder(tmp_path)
    torch.manual_seed(2)
    downstream = SwinUNETR(in_channels=1, out_channels=14, **TINY)
    report = load_pretrained(downstream, tmp_path / "encoder.pt")
    assert len(report.loaded) == len(enc) and not report.skipped_shape and not report.unused
    assert all(torch.equal(downstream.state_dict()[k], v) for k, v in enc.items())
    assert set(report.missing) == set(downstream.state_dict()) - set(enc)
    assert all(k.startswith(("decoder", "out.")) for k in report.missing)


def test_checkpoint_dicts_ddp_prefixes_and_shape_mismatches(tmp_path):
    net, enc = pretrained_encoder(tmp_path)
    atomic_torch_save({"model": {f"module.{k}": v for k, v in net.state_dict().items()}, "optimizer": {}}, tmp_path / "ckpt.pt")
    downstream = SwinUNETR(in_channels=1, out_channels=14, **TINY)
    report = load_pretrained(downstream, tmp_path / "ckpt.pt")
    # everything but the 1-channel reconstruction head ("out.*": 14 vs 1 channels) loads
    assert report.skipped_shape and all(k.startswith("out.") for k in report.skipped_shape)
    assert len(report.loaded) == len(net.state_dict()) - len(report.skipped_shape)
    # 4-channel MRI network: the 1-channel first convolutions are spread over the 4 channels (/ 4), the rest loads as is
    brats = SwinUNETR(in_channels=4, out_channels=3, **TINY)
    report4 = load_pretrained(brats, tmp_path / "encoder.pt")
    assert report4.adapted and not report4.skipped_shape and len(report4.loaded) == len(enc) > 50
    for k in report4.adapted:
        assert enc[k].shape[1] == 1 and brats.state_dict()[k].shape[1] == 4
        torch.testing.assert_close(brats.state_dict()[k].sum(dim=1, keepdim=True), enc[k])  # same response to 4 identical channels


def test_weights_with_no_matching_tensor_are_an_error(tmp_path):
    unet = UNet(spatial_dims=3, in_channels=1, out_channels=2, channels=(4, 8), strides=(2,))
    atomic_torch_save(unet.state_dict(), tmp_path / "unet.pt")
    with pytest.raises(PretrainedLoadError, match=r"no tensor of .*unet\.pt matches SwinUNETR"):
        load_pretrained(SwinUNETR(in_channels=1, out_channels=14, **TINY), tmp_path / "unet.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a torch file")
    with pytest.raises(PretrainedLoadError, match=r"cannot read pretrained weights .*garbage\.pt"):
        load_pretrained(SwinUNETR(in_channels=1, out_channels=14, **TINY), tmp_path / "garbage.pt")
    with pytest.raises(PretrainedLoadError, match="does not exist"):
        load_pretrained(SwinUNETR(in_channels=1, out_channels=14, **TINY), tmp_path / "missing.pt")
