"""Published SSL/supervised checkpoints of MONAI networks land in the matching downstream bundles.

No downloads: each test writes a file with the published key names, built from the module
structure of the code that made it (research-contributions' ``SSLHead`` uses MONAI's
``SwinTransformer``; SuPreM's ``Universal_model`` wraps a v1 ``SwinUNETR`` as ``backbone`` and adds
``precls_conv``, ``GAP``, ``controller`` and ``organ_embedding``; its SegResNet is MONAI's), and
checks every tensor that belongs to the encoder arrives in the bundle's network unchanged. Where
MONAI itself reads a layout (``SwinUNETR.load_from``, ``filter_swinunetr``), the result is compared
with MONAI's.
"""

from __future__ import annotations

import logging

import pytest
import torch
from monai.networks.nets import SegResNet, SwinUNETR
from monai.networks.nets.swin_unetr import SwinTransformer, filter_swinunetr
from monai.networks.utils import copy_model_state

from common.experiments.downstream import bundle_parser, network_with_weights
from common.networks import PretrainedLoadError, load_pretrained
from common.networks.layouts import recognise


def published_swinvit(seed: int = 0) -> dict[str, torch.Tensor]:
    """The encoder ``SSLHead`` pretrains (``SwinUNETR/Pretrain/models/ssl_head.py``): MONAI's
    ``SwinTransformer``, feature 48, window 7, patch 2, depths 2-2-2-2, heads 3-6-12-24."""
    torch.manual_seed(seed)
    vit = SwinTransformer(in_chans=1, embed_dim=48, window_size=(7, 7, 7), patch_size=(2, 2, 2), depths=(2, 2, 2, 2),
                          num_heads=(3, 6, 12, 24), spatial_dims=3)
    return {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v for k, v in vit.state_dict().items()}


def as_published(vit: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``model_swinvit.pt``'s names: DDP's ``module.`` and the MLPs as ``fc1``/``fc2`` (the names
    ``SwinTransformerBlock.load_from`` reads; MONAI's ``MLPBlock`` now says ``linear1``/``linear2``)."""
    return {"module." + k.replace(".mlp.linear1.", ".mlp.fc1.").replace(".mlp.linear2.", ".mlp.fc2."): v for k, v in vit.items()}


def swinunetr_network(bundle: str = "btcv_finetune", **overrides) -> torch.nn.Module:
    torch.manual_seed(123)
    return bundle_parser(bundle, [], overrides).get_parsed_content("network_def")


def assert_landed(net: torch.nn.Module, expected: dict[str, torch.Tensor]) -> None:
    state = net.state_dict()
    wrong = [k for k, v in expected.items() if k not in state or not torch.equal(state[k], v)]
    assert not wrong, f"{len(wrong)} of {len(expected)} tensors did not land: {wrong[:5]}"


def test_research_contributions_model_swinvit_loads_as_monai_load_from_does(tmp_path):
    vit = published_swinvit()
    path = tmp_path / "model_swinvit.pt"
    torch.save({"epoch": 100, "state_dict": as_published(vit)}, path)
    # names MONAI's SwinUNETR.load_from reads from this file (it raises on any it misses; see below)
    assert {"module.patch_embed.proj.weight", "module.layers1.0.blocks.0.mlp.fc1.weight", "module.layers3.0.downsample.reduction.weight"} \
        <= set(torch.load(path, weights_only=True)["state_dict"])

    net = swinunetr_network(**{"network_def#use_v2": False})
    report = load_pretrained(net, path)
    assert report.layout == "monai_swinvit_ssl" and report.dropped == 0 and not report.unused and not report.skipped_shape
    assert_landed(net, {f"swinViT.{k}": v for k, v in vit.items()})
    assert all(not k.startswith("swinViT.") for k in report.missing)  # only the decoder stays at initialisation

    reference = swinunetr_network(**{"network_def#use_v2": False})
    reference.load_from(torch.load(path, weights_only=True))  # MONAI's own reader of this file
    ours, theirs = net.state_dict(), reference.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs if k.startswith("swinViT.")), "differs from SwinUNETR.load_from"


def test_swinvit_ssl_weights_into_the_default_v2_network_and_the_four_channel_brats_bundle(tmp_path):
    vit = published_swinvit()
    path = tmp_path / "model_swinvit.pt"
    torch.save({"state_dict": as_published(vit)}, path)
    net = swinunetr_network()  # use_v2: True, the bundle's default
    report = load_pretrained(net, path)
    assert len(report.loaded) == len(vit)
    v2_blocks = [k for k in report.missing if k.startswith("swinViT.")]
    assert v2_blocks and all(k.split(".")[1] in {"layers1c", "layers2c", "layers3c", "layers4c"} for k in v2_blocks)

    brats = swinunetr_network("brats_finetune")
    report = load_pretrained(brats, path)
    assert report.adapted == ["swinViT.patch_embed.proj.weight"] and len(report.loaded) == len(vit)
    first = brats.state_dict()["swinViT.patch_embed.proj.weight"]
    assert first.shape[1] == 4 and torch.allclose(first.sum(1, keepdim=True), vit["patch_embed.proj.weight"], atol=1e-6)


def test_research_contributions_pretraining_checkpoint_ssl_head(tmp_path):
    vit = published_swinvit()
    heads = {"rotation_head.weight": torch.randn(4, 768), "rotation_head.bias": torch.randn(4),
             "contrastive_head.weight": torch.randn(512, 768), "contrastive_head.bias": torch.randn(512),
             "conv.0.weight": torch.randn(384, 768, 3, 3, 3), "conv.0.bias": torch.randn(384),
             "conv.20.weight": torch.randn(1, 48, 1, 1, 1), "conv.20.bias": torch.randn(1)}
    path = tmp_path / "model_bestValRMSE.pt"
    torch.save({"epoch": 7, "state_dict": {f"module.{k}": v for k, v in {**{f"swin_vit.{k}": v for k, v in vit.items()}, **heads}.items()}}, path)
    net = swinunetr_network(**{"network_def#use_v2": False})
    report = load_pretrained(net, path)
    assert report.layout == "monai_swinvit_ssl_head" and report.dropped == len(heads) and not report.unused
    assert_landed(net, {f"swinViT.{k}": v for k, v in vit.items()})


def test_monai_dae_ssl_weights_match_filter_swinunetr(tmp_path):
    vit = published_swinvit()
    # the inverse of MONAI's filter_swinunetr: "encoder.layers1.0.0.blocks..." <- "layers1.0.blocks..."
    published = {("encoder." + k if k.startswith("patch_embed") else "encoder." + k[:10] + "0." + k[10:]): v for k, v in vit.items()}
    published |= {"encoder.mask_token": torch.zeros(1, 1, 48), "encoder.norm.weight": torch.ones(768), "encoder.norm.bias": torch.zeros(768),
                  "out.conv.conv.weight": torch.randn(1, 48, 1, 1, 1), "out.conv.conv.bias": torch.randn(1)}
    assert all(filter_swinunetr(k, v)[0] == f"swinViT.{k0}" for (k, v), k0 in zip(published.items(), vit))
    path = tmp_path / "ssl_pretrained_weights.pth"
    torch.save({"model": published}, path)
    net = swinunetr_network(**{"network_def#use_v2": False})
    report = load_pretrained(net, path)
    assert report.layout == "monai_swinunetr_dae" and report.dropped == 5 and not report.unused
    assert_landed(net, {f"swinViT.{k}": v for k, v in vit.items()})

    reference = swinunetr_network(**{"network_def#use_v2": False})
    copy_model_state(reference, torch.load(path, weights_only=True)["model"], filter_func=filter_swinunetr, inplace=True)  # MONAI's recipe
    assert all(torch.equal(net.state_dict()[k], v) for k, v in reference.state_dict().items())


def suprem_swinunetr_file(path, num_classes: int = 32) -> dict[str, torch.Tensor]:
    """``{"net": Universal_model.state_dict() under DDP, ...}`` as SuPreM's training saves it; returns the backbone."""
    torch.manual_seed(5)
    backbone = SwinUNETR(in_channels=1, out_channels=num_classes, feature_size=48, use_v2=False).state_dict()
    heads = {"precls_conv.0.weight": torch.randn(48), "precls_conv.0.bias": torch.randn(48), "precls_conv.2.weight": torch.randn(8, 48, 1, 1, 1),
             "precls_conv.2.bias": torch.randn(8), "GAP.0.weight": torch.randn(768), "GAP.0.bias": torch.randn(768),
             "GAP.3.weight": torch.randn(256, 768, 1, 1, 1), "GAP.3.bias": torch.randn(256),
             "controller.weight": torch.randn(153, 512, 1, 1, 1), "controller.bias": torch.randn(153), "organ_embedding.weight": torch.randn(num_classes, 256)}
    net = {f"module.backbone.{k}": v for k, v in backbone.items()} | {f"module.{k}": v for k, v in heads.items()}
    torch.save({"net": net, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4}]}, "epoch": 2100}, path)
    return backbone


def test_suprem_swinunetr_loads_everything_but_its_output_layer_through_the_bundle_model_entry(tmp_path, caplog):
    path = tmp_path / "supervised_suprem_swinunetr_2100.pth"
    backbone = suprem_swinunetr_file(path)
    caplog.set_level(logging.INFO)
    net = network_with_weights(bundle_parser("btcv_finetune", [], {"network_def#use_v2": False, "device": "$torch.device('cpu')"}), str(path))
    assert_landed(net, {k: v for k, v in backbone.items() if not k.startswith("out.")})
    state = net.state_dict()
    assert state["out.conv.conv.weight"].shape[0] == 14  # BTCV's head, at initialisation
    log = caplog.text
    assert "published layout suprem_swinunetr, 13 of its head tensors left out" in log and "0 unused from the file" in log, log[-2000:]
    assert f"loaded {len(backbone) - 2} tensors" in log


def test_suprem_segresnet_into_medcontext_segresnet(tmp_path):
    torch.manual_seed(9)
    published = SegResNet(blocks_down=[1, 2, 2, 4], blocks_up=[1, 1, 1], init_filters=16, in_channels=1, out_channels=32).state_dict()
    path = tmp_path / "supervised_suprem_segresnet_2100.pth"
    torch.save({"net": {f"module.{k}": v for k, v in published.items()}, "epoch": 2100}, path)
    torch.manual_seed(0)
    net = bundle_parser("medcontext_unetr", ["segresnet.json"], {"network_def#init_filters": 16}).get_parsed_content("network_def")
    report = load_pretrained(net, path)
    assert report.layout == "suprem_segresnet" and report.dropped == 2 and not report.skipped_shape
    assert_landed(net, {k: v for k, v in published.items() if not k.startswith("conv_final.2.conv.")})
    assert report.missing == ["conv_final.2.conv.bias", "conv_final.2.conv.weight"]
    # without SuPreM's "net" wrapper, a SegResNet state dict is this collection's own: nothing is left out
    assert recognise({k: v for k, v in published.items()}, ()) is None


def test_a_layout_of_another_network_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "supervised_suprem_unet_2100.pth"
    torch.save({"net": {"module.backbone.down_tr64.ops.0.conv1.weight": torch.randn(32, 1, 3, 3, 3),
                        "module.backbone.down_tr64.ops.0.conv1.bias": torch.randn(32)}}, path)
    with pytest.raises(PretrainedLoadError, match="supervised_suprem_unet_2100.pth"):
        load_pretrained(swinunetr_network(), path)
