"""The options that reproduce the reference code where it differs from a bundle's default (issue: fidelity
corrections), each checked against the rule the reference code implements, not against this project's output."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import BUNDLES
from monai.bundle import ConfigParser
from monai.networks.nets.segresnet_ds import SegResEncoder

from common.methods.ctfm import ContrastiveModel, ProjectionHead
from common.methods.subfore import SubvolumeForegroundMasker
from common.methods.subfore.loss import masked_l1
from common.transforms import CTWindowsd, WindowsAlongDepthd


def parser_for(bundle: str, *files: str, **overrides) -> ConfigParser:
    p = ConfigParser()
    p.read_config([str(BUNDLES / bundle / "configs" / f) for f in files])
    p.update({"bundle_root": str(BUNDLES / bundle), **overrides})
    return p


def test_depth_stacked_windows_have_the_reference_shape_and_order():
    # sinoct.yaml: ConcatItemsd([blood, subdural, stroke, bone], dim=1) of (1, 48, 128, 128) volumes, in_channels 1
    hu = torch.linspace(-1000, 2000, 48 * 16 * 16).reshape(1, 48, 16, 16)
    windows = [[40.0, 80.0], [25.0, 300.0], [32.0, 8.0], [600.0, 3000.0]]
    channels = CTWindowsd("image", windows)({"image": hu})["image"]
    stacked = WindowsAlongDepthd("image")({"image": channels})["image"]
    assert stacked.shape == (1, 4 * 48, 16, 16)
    separate = [CTWindowsd("image", [w])({"image": hu})["image"] for w in windows]  # one key per window, as the reference
    assert torch.equal(stacked, torch.cat(separate, dim=1))
    sinoct = parser_for("ctfm_classification", "train.json", "sinoct.json")
    assert sinoct.get_parsed_content("in_channels") == 1 and parser_for("ctfm_classification", "train.json").get_parsed_content("in_channels") == 4
    assert isinstance(sinoct.get_parsed_content("window_stack_transform"), WindowsAlongDepthd)
    with pytest.raises(RuntimeError) as err:  # MONAI wraps the expression's error; the cause names the setting
        parser_for("ctfm_classification", "train.json", window_stack="planes").get_parsed_content("in_channels")
    assert "window_stack must be one of ['channels', 'depth']" in str(err.value.__cause__)


def test_per_view_batch_norm_equals_separate_forwards_of_each_crop_view():
    torch.manual_seed(0)
    encoder = SegResEncoder(spatial_dims=3, in_channels=1, init_filters=4, blocks_down=(1, 1, 1), norm="batch")
    model = ContrastiveModel(encoder, ProjectionHead(16, 8, 4), bn_batches="per_view").train()
    b, k = 3, 2
    views = torch.randn(b, 2, k, 1, 16, 16, 16)
    out = model(views)
    # the reference: each (view, crop) forwarded on its own, a batch of the B scans (models/frameworks/utils.py)
    separate = [[model.head(model.pool(views[:, v, c])) for c in range(k)] for v in range(2)]
    assert torch.allclose(out.view1, torch.stack(separate[0], dim=1), atol=1e-6)
    assert torch.allclose(out.view2, torch.stack(separate[1], dim=1), atol=1e-6)
    model.per_view = False  # all 2BK views in one batch: other batch statistics, other projections
    joint = model(views)
    assert not torch.allclose(joint.view1, out.view1, atol=1e-4)
    assert parser_for("ctfm_pretrain", "train.json", "reference_schedule.json")["bn_batches"] == "per_view"
    with pytest.raises(ValueError, match="bn_batches"):
        ContrastiveModel(encoder, bn_batches="per_crop")


def test_anatomask_reference_schedule_warms_up_from_1e6_and_ends_at_0():
    # LinearWarmupCosineAnnealingLR(optimizer, warmup, epoch, 1e-6): warmup_start_lr = 1e-6, eta_min = 0
    p = parser_for("anatomask_pretrain", "train.json", "reference_schedule.json")
    p["optimizer"] = "$torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=@learning_rate)"
    sched = p.get_parsed_content("lr_scheduler")
    base, warmup, total = p.get_parsed_content("learning_rate"), p["warmup_steps"], p["num_steps"]
    assert (warmup, total) == (20 * 179, 1000 * 179)  # 843 cases, 15% held out: 716 // 4 = 179 iterations per epoch

    def lr(step: int) -> float:
        sched.last_epoch = step
        return sched.get_lr()[0]

    def reference(step: int) -> float:  # linear from 1e-6 to base, then cosine from base to eta_min = 0
        if step < warmup:
            return 1e-6 + (base - 1e-6) * step / warmup
        return 0.0 + 0.5 * base * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))

    for step in (0, warmup // 2, warmup, warmup + 1000, total // 2, total - 100, total):
        assert math.isclose(lr(step), reference(step), rel_tol=1e-9, abs_tol=1e-15), step
    assert lr(0) == pytest.approx(1e-6) and lr(total) == 0.0 and lr(total - 100) < 1e-9  # no 1e-6 floor at the end


def test_a_crop_without_foreground_is_left_unmasked_as_the_reference():
    images = torch.zeros(2, 1, 32, 32, 32)
    images[1, :, :16] = 1.0  # sample 1: foreground in the first half; sample 0: all air
    gen = torch.Generator().manual_seed(0)
    unmasked = SubvolumeForegroundMasker(subvolume_size=8, mask_ratio=0.6, threshold=0.5, no_foreground="unmasked")
    mask = unmasked.sample(images, gen)
    assert not mask.grid[0].any() and mask.grid[1].any() and not (mask.grid[1] & ~mask.foreground[1]).any()
    assert unmasked.num_fallback == 1  # counted either way
    fallback = SubvolumeForegroundMasker(subvolume_size=8, mask_ratio=0.6, threshold=0.5)  # default: mask among all
    assert fallback.sample(images, torch.Generator().manual_seed(0)).grid[0].any()
    pred = torch.zeros(1, 1, 32, 32, 32, requires_grad=True)  # nothing masked: loss 0, still part of the graph
    loss = masked_l1(pred, images[:1], mask.voxel_mask()[:1], 8, "batch")
    assert loss.item() == 0.0 and loss.requires_grad
    with pytest.raises(ValueError, match="no_foreground"):
        SubvolumeForegroundMasker(no_foreground="skip")
    assert parser_for("subfore_pretrain", "train.json", "reference_schedule.json").get_parsed_content("masker").fallback_to_all is False


@pytest.mark.parametrize("mode", ["gaussian", "constant"])
def test_sliding_window_blending_is_an_option(mode):
    p = parser_for("medcontext_unetr", "inference.json", **({} if mode == "gaussian" else {"sw_mode": mode}))
    assert p.get_parsed_content("inferer").mode == mode  # constant: the reference's test_8.py (MONAI's default)
