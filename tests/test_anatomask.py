"""AnatoMask's core rules from the paper: Algorithm 1, masking dynamics, normalised-target loss, teacher decay."""

from __future__ import annotations

import math

import pytest
import torch

from common.engines import linear_ramp_momentum
from common.methods.anatomask import masked_patch_loss, normalized_patches, patchify, per_patch_mse
from common.methods.anatomask import AnatoMaskModel, anatomical_mask, count_for_ratio, random_patch_mask, significance_ratio

N = 392  # 112 x 112 x 128 in 16^3 patches: 7 x 7 x 8
RULES = ("masked_fraction", "algorithm1")


def masked_total(rule: str) -> int:
    """m from the rule's text: the reference keeps round((1 - gamma) n) patches; Algorithm 1 masks ceil(gamma n)."""
    return N - round(0.4 * N) if rule == "masked_fraction" else math.ceil(0.6 * N)


def top_patches(rule: str, r_t: float) -> int:
    """p from the rule's text: int(r_t * m) in the reference code; ceil(r_t * n) in Algorithm 1."""
    return int(r_t * masked_total(rule)) if rule == "masked_fraction" else math.ceil(round(r_t * N, 9))


def setup(batch=4, gamma=0.6, seed=0, rule="masked_fraction"):
    g = torch.Generator().manual_seed(seed)
    initial = random_patch_mask(batch, N, gamma, generator=g, count_rule=rule)
    losses = torch.rand(batch, N, generator=g)
    return initial, losses, g


@pytest.mark.parametrize("rule", RULES)
def test_random_mask_has_m_per_sample_and_differs_across_samples(rule):
    initial, _, _ = setup(rule=rule)
    assert (initial.sum(1) == masked_total(rule)).all()
    assert len({tuple(row.nonzero().flatten().tolist()) for row in initial}) == 4


@pytest.mark.parametrize("rule, t, expected_top, expected_random", [
    # r_t = 0.5 t / T; by hand at n = 392, gamma = 0.6 (the example: reference 117 + 118, Algorithm 1 196 + 40)
    ("masked_fraction", 0, 0, 235), ("masked_fraction", 50, 58, 177), ("masked_fraction", 100, 117, 118),
    ("algorithm1", 0, 0, 236), ("algorithm1", 50, 98, 138), ("algorithm1", 100, 196, 40),
])
def test_counts_per_sample_at_the_start_middle_and_end_of_training(rule, t, expected_top, expected_random):
    r_t = significance_ratio(t, 100, 0.0, 0.5)
    initial, losses, g = setup(rule=rule)
    losses = losses.masked_fill(initial, 0.0) + initial * (1.0 + losses)  # initially masked patches rank above the rest
    final = anatomical_mask(losses, initial, gamma=0.6, r_t=r_t, generator=g, count_rule=rule)
    assert (final.sum(1) == expected_top + expected_random).all()
    for b in range(4):
        ranked = sorted(initial[b].nonzero().flatten().tolist(), key=lambda i: -float(losses[b, i]))
        assert set(ranked[:expected_top]) <= set(final[b].nonzero().flatten().tolist())


def test_count_rule_is_checked():
    initial, losses, _ = setup()
    with pytest.raises(ValueError, match="count_rule must be one of"):
        anatomical_mask(losses, initial, 0.6, 0.5, count_rule="nope")
    with pytest.raises(ValueError, match=r"must lie in \[0, 0.6\]"):
        AnatoMaskModel(torch.nn.Conv3d(1, 1, 1), total_steps=4, r_end=0.8, count_rule="algorithm1")


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("r_t", [0.0, 0.1, 0.25, 0.5])
def test_final_mask_count_and_top_set_are_exact(r_t, rule):
    initial, losses, g = setup(rule=rule)
    final = anatomical_mask(losses, initial, gamma=0.6, r_t=r_t, generator=g, count_rule=rule)
    assert (final.sum(1) == masked_total(rule)).all()  # exactly m per sample
    p = top_patches(rule, r_t)
    for b in range(4):
        ranked = sorted(initial[b].nonzero().flatten().tolist(), key=lambda i: -float(losses[b, i]))
        top = set(ranked[:p])  # the p highest-loss patches among those the teacher reconstructed
        assert top <= set(final[b].nonzero().flatten().tolist())
        if p:
            # nothing outside the top set beats its weakest member (among initially masked patches)
            weakest = min(float(losses[b, i]) for i in top)
            rest = [float(losses[b, i]) for i in ranked[p:]]
            assert all(v <= weakest for v in rest)
    assert len({tuple(row.nonzero().flatten().tolist()) for row in final}) == 4  # masks differ across samples


def test_ascending_option_picks_the_lowest_losses():
    initial, losses, g = setup()
    p = top_patches("masked_fraction", 0.5)
    final = anatomical_mask(losses, initial, gamma=0.6, r_t=0.5, descending=False, generator=g)
    for b in range(4):
        ranked = sorted(initial[b].nonzero().flatten().tolist(), key=lambda i: float(losses[b, i]))
        assert set(ranked[:p]) <= set(final[b].nonzero().flatten().tolist())
        assert not set(ranked[-5:]) & set(ranked[:p])


def test_losses_outside_the_initial_mask_are_not_ranked():
    """Only patches the teacher reconstructed have a loss: values elsewhere must not change the mask."""
    initial, losses, _ = setup()
    high = anatomical_mask(losses.masked_fill(~initial, 100.0), initial, 0.6, 0.5, generator=torch.Generator().manual_seed(5))
    low = anatomical_mask(losses.masked_fill(~initial, -100.0), initial, 0.6, 0.5, generator=torch.Generator().manual_seed(5))
    assert torch.equal(high, low)
    assert ((high & initial).sum(1) >= top_patches("masked_fraction", 0.5)).all()


def test_masking_dynamics_easy_to_hard_and_hard_to_easy():
    assert significance_ratio(0, 1000) == 0.0
    assert significance_ratio(500, 1000) == pytest.approx(0.25)
    assert significance_ratio(1000, 1000) == pytest.approx(0.5)
    assert significance_ratio(0, 1000, r_start=0.5, r_end=0.0) == pytest.approx(0.5)  # hard-to-easy ablation
    assert significance_ratio(1000, 1000, r_start=0.5, r_end=0.0) == pytest.approx(0.0)
    assert count_for_ratio(0.3, 10) == 3  # float noise: 0.3 * 10 = 3.0000000000000004


def test_teacher_decay_ramps_then_stays():
    assert linear_ramp_momentum(0, 1000) == pytest.approx(0.999)
    assert linear_ramp_momentum(125, 1000) == pytest.approx(0.99945)  # half-way through the first 25 %
    assert linear_ramp_momentum(250, 1000) == pytest.approx(0.9999)
    assert linear_ramp_momentum(999, 1000) == pytest.approx(0.9999)


def test_normalised_target_loss_by_hand():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(1, 1, 4, 4, 2, generator=g)  # two 2^3 patches along W... (2, 2, 1) grid = 4 patches
    prediction = torch.rand(1, 1, 4, 4, 2, generator=g)
    p = 2
    patches = patchify(images, p)
    assert patches.shape == (1, 4, 8)
    torch.testing.assert_close(patches[0, 0], images[0, 0, :2, :2, :2].reshape(-1))  # first patch in C order
    by_hand = []
    for k in range(4):
        x = patches[0, k]
        t = (x - x.mean()) / torch.sqrt(x.var() + 1e-6)  # mean 0, unit (unbiased) variance
        by_hand.append(t)
    targets = normalized_patches(images, p)[0]
    torch.testing.assert_close(targets, torch.stack(by_hand))
    assert targets.mean(dim=1).abs().max() < 1e-5
    pred = patchify(prediction, p)[0]
    per_patch = torch.stack([((pred[k] - by_hand[k]) ** 2).mean() for k in range(4)])
    torch.testing.assert_close(per_patch_mse(prediction, images, p)[0], per_patch)
    mask = torch.tensor([[True, False, True, False]])
    assert float(masked_patch_loss(prediction, images, mask, p)) == pytest.approx(float((per_patch[0] + per_patch[2]) / 2), rel=1e-5)
    # the reference's teacher comparison: raw, unnormalised patches
    raw = torch.stack([((pred[k] - patches[0, k]) ** 2).mean() for k in range(4)])
    torch.testing.assert_close(per_patch_mse(prediction, images, p, normalize=False)[0], raw)


def test_bad_inputs_are_refused():
    initial, losses, _ = setup()
    with pytest.raises(ValueError, match="must both be"):
        anatomical_mask(losses[:, :10], initial, 0.6, 0.5)
    with pytest.raises(ValueError, match="initially masked"):
        anatomical_mask(losses, torch.zeros_like(initial), 0.6, 0.5)
    with pytest.raises(ValueError, match="not divisible"):
        patchify(torch.rand(1, 1, 5, 4, 4), 2)


# ---- SparK-style masked U-Net -------------------------------------------------------------------


def tiny_dynunet(out_channels: int = 1):
    from monai.networks.nets import DynUNet

    return DynUNet(3, 1, out_channels, kernel_size=[3] * 5, strides=[1, 2, 2, 2, 2], upsample_kernel_size=[2] * 4,
                   filters=[8, 16, 32, 64, 128], res_block=True, norm_name="instance")


def perturb_masked(images: torch.Tensor, visible: torch.Tensor, p: int = 16) -> torch.Tensor:
    voxels = visible.repeat_interleave(p, 1).repeat_interleave(p, 2).repeat_interleave(p, 3)[:, None]
    out = images.clone()
    out[~voxels] = torch.randn(int((~voxels).sum())) * 10.0
    return out


def test_masked_voxels_never_reach_visible_features_at_any_scale():
    from common.methods.anatomask import AnatoMaskModel

    torch.manual_seed(0)
    model = AnatoMaskModel(tiny_dynunet(), total_steps=10)
    x = torch.rand(2, 1, 32, 32, 32)
    visible = ~random_patch_mask(2, 8, 0.6, generator=torch.Generator().manual_seed(3)).view(2, 2, 2, 2)
    x2 = perturb_masked(x, visible)
    for net in (model.student, model.teacher):  # the teacher (a deep copy) masks with its own context
        with torch.no_grad():
            a, b = net.encode(x, visible), net.encode(x2, visible)
        assert len(a) == 5 and [f.shape[2] for f in a] == [32, 16, 8, 4, 2]  # four downsamplings to 1/16
        for fa, fb in zip(a, b):
            m = net.context.visible  # cleared after the forward
            assert m is None
            torch.testing.assert_close(fa, fb, rtol=0, atol=0)
    # the property is not vacuous: the plain (dense) U-Net's encoder does see the masked content
    with torch.no_grad():
        dense_a = model.network.input_block(x * 1.0)
        dense_b = model.network.input_block(x2)
    assert (dense_a - dense_b).abs().max() > 1e-3


def test_anatomask_step_counts_masks_and_trains_only_the_student():
    from common.methods.anatomask import AnatoMaskLoss
    from common.methods.anatomask import AnatoMaskModel

    torch.manual_seed(0)
    model = AnatoMaskModel(tiny_dynunet(), total_steps=4, gamma=0.6)
    model.train()
    x = torch.rand(2, 1, 32, 32, 32)
    out = model(x)
    assert out.r_t == 0.0 and int(model.steps_done) == 1  # t = 0: random mask only
    assert (out.patch_mask.sum(1) == math.ceil(0.6 * 8)).all() and out.reconstruction.shape == x.shape
    loss = AnatoMaskLoss()(out, x)
    loss.backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    assert all(p.grad is not None for p in model.student.mask_tokens)
    model.steps_done.fill_(2)
    assert model(x).r_t == pytest.approx(0.25)  # r_t = 0.5 * 2 / 4: the teacher ranks patches now
    torch.optim.SGD(model.parameters(), lr=1.0).step()  # the student moves (gradients from the loss above)
    before = [p.clone() for p in model.teacher.parameters()]
    model.update_teacher(0.5)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.teacher.parameters()))
    frozen = AnatoMaskModel(tiny_dynunet(), total_steps=4, teacher="random")
    before = [p.clone() for p in frozen.teacher.parameters()]
    frozen.update_teacher(0.5)
    assert all(torch.equal(a, b) for a, b in zip(before, frozen.teacher.parameters()))  # the ablation's fixed teacher


def test_pretrained_unet_loads_into_the_downstream_network():
    from common.networks import load_pretrained
    from common.methods.anatomask import AnatoMaskModel

    model = AnatoMaskModel(tiny_dynunet(), total_steps=4)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/anatomask.pt"
        torch.save(model.network.state_dict(), path)
        downstream = tiny_dynunet(out_channels=14)
        report = load_pretrained(downstream, path)
    encoder_keys = [k for k in downstream.state_dict() if k.startswith(("input_block", "downsamples", "bottleneck"))]
    assert set(encoder_keys) <= set(report.loaded)  # every encoder tensor matched
    assert any(k.startswith("upsamples") for k in report.loaded)  # and the decoder
    assert report.skipped_shape and all(k.startswith("output_block") for k in report.skipped_shape)  # only the 1 -> 14 channel head differs


def test_step_targets_are_the_normalised_patches_and_give_the_same_loss():
    """The normalised targets are computed once per step and shared; the loss equals the one from images."""
    from common.methods.anatomask import AnatoMaskLoss
    from common.methods.anatomask import AnatoMaskModel

    torch.manual_seed(0)
    model = AnatoMaskModel(tiny_dynunet(), total_steps=4).train()
    x = torch.rand(2, 1, 32, 32, 32)
    out = model(x)
    torch.testing.assert_close(out.targets, normalized_patches(x, 16))
    from_images = masked_patch_loss(out.reconstruction, x, out.patch_mask, 16)
    torch.testing.assert_close(AnatoMaskLoss()(out, x), from_images)


def test_reference_epoch_schedule_by_hand():
    """The reference's ``keep_ratio = (epoch + 1) / (epochs - 1) * 0.5``: 1000 steps of 100 = 10 epochs."""
    r = [significance_ratio(s, 1000, 0.0, 0.5, schedule="epoch", epoch_length=100) for s in (0, 99, 100, 550, 999, 1000)]
    assert r == pytest.approx([0.5 / 9, 0.5 / 9, 1.0 / 9, 3.0 / 9, 5.0 / 9, 5.0 / 9])  # constant in an epoch; above r_T at the end
    # hard-to-easy with the same per-epoch clock
    assert significance_ratio(0, 1000, 0.5, 0.0, schedule="epoch", epoch_length=100) == pytest.approx(0.5 - 0.5 / 9)
    # at the end the reference's 0.5556 of 235 masked patches is capped at the masked count; at 0.5 it picks int(117.5) = 117
    with pytest.raises(ValueError, match="epoch_length"):
        significance_ratio(0, 1000, schedule="epoch", epoch_length=None)
    with pytest.raises(ValueError, match="at least 2 epochs"):
        significance_ratio(0, 100, schedule="epoch", epoch_length=100)
    with pytest.raises(ValueError, match="r_schedule"):
        significance_ratio(0, 100, schedule="epochs")


def test_model_reads_the_epoch_schedule():
    from monai.networks.nets import DynUNet

    net = DynUNet(3, 1, 1, [3, 3, 3], [1, 2, 2], [2, 2], filters=[4, 8, 16], norm_name="instance", res_block=True)
    model = AnatoMaskModel(net, total_steps=40, r_schedule="epoch", epoch_length=10)
    model.steps_done.fill_(25)  # epoch 2 of 4: (2 + 1) / 3 * 0.5
    assert model.r_t() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="at least 2 epochs"):
        AnatoMaskModel(net, total_steps=10, r_schedule="epoch", epoch_length=10)


def test_reference_weight_decay_groups_are_inert_in_adamw():
    """The reference puts mask tokens in a group with ``weight_decay_scale`` 0, a key only its unused
    ``lr_wd_annealing`` reads: ``torch.optim.AdamW`` ignores it, so the tokens decay like every weight
    (as here, where every student parameter has the same weight decay)."""
    token = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.AdamW([{"params": [token], "weight_decay_scale": 0.0, "lr_scale": 1.0}], lr=0.5, weight_decay=0.1)
    token.grad = torch.zeros(3)
    opt.step()
    assert torch.allclose(token.detach(), torch.full((3,), 1.0 - 0.5 * 0.1))  # decoupled decay applied despite the scale 0
