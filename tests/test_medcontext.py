"""MedContext's core rules, checked against the paper's/reference's equations on small tensors."""

from __future__ import annotations

import math

import pytest
import torch
from ignite.engine import Engine, Events
from monai.networks.nets import UNETR, SegResNet, SwinUNETR

from common.engines import TeacherEMAUpdate, cosine_momentum
from common.methods.medcontext import MedContextLoss, context_loss
from common.methods.medcontext import tube_mask
from common.engines import MethodOutput
from common.methods.medcontext import MedContextModel


def tiny_unetr() -> UNETR:
    return UNETR(1, 3, img_size=32, feature_size=4, hidden_size=32, mlp_dim=64, num_heads=2, proj_type="perceptron", res_block=True, conv_block=True)


def tiny_segresnet() -> SegResNet:
    return SegResNet(spatial_dims=3, in_channels=1, out_channels=3, init_filters=8, blocks_down=(1, 1), blocks_up=(1,))


# ---- tube mask -----------------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.6, 1.0])
def test_tube_mask_shape_ratio_and_tubes(ratio):
    mask = tube_mask((6, 6, 6), ratio, batch_size=4, per_sample=True, generator=torch.Generator().manual_seed(0))
    assert mask.shape == (4, 6, 6, 6) and mask.dtype == torch.bool
    per_plane = mask.sum(dim=(2, 3))  # (B, D): masked in-plane positions at every index of the first axis
    assert (per_plane == math.floor(ratio * 36)).all()
    assert (mask == mask[:, :1]).all()  # identical along the first axis: tubes


def test_tube_mask_one_per_batch_or_per_sample():
    g = torch.Generator().manual_seed(1)
    shared = tube_mask((6, 6, 6), 0.6, batch_size=3, generator=g)
    assert (shared == shared[:1]).all()
    own = tube_mask((6, 6, 6), 0.6, batch_size=3, per_sample=True, generator=g)
    assert not (own == own[:1]).all()
    with pytest.raises(ValueError, match="mask ratio"):
        tube_mask((6, 6, 6), 1.5)


# ---- EMA -----------------------------------------------------------------------------------------


def test_teacher_update_is_the_ema_formula_tensor_by_tensor():
    model = MedContextModel(tiny_segresnet())
    with torch.no_grad():
        for p in model.student.parameters():
            p.add_(torch.randn_like(p))  # student and teacher differ
    before = {k: v.clone() for k, v in model.teacher.state_dict().items()}
    student = {k: v.clone() for k, v in model.student.state_dict().items()}
    m = 0.9
    model.update_teacher(m)
    after = model.teacher.state_dict()
    params = {n for n, _ in model.teacher.named_parameters()}
    for name in before:
        expected = m * before[name] + (1 - m) * student[name] if name in params else student[name]  # buffers: copied
        torch.testing.assert_close(after[name], expected)


def test_teacher_gets_no_gradient_and_mask_token_does():
    model = MedContextModel(tiny_unetr(), mask_ratio=0.6)
    model.train()
    out = model(torch.rand(2, 1, 32, 32, 32))
    loss = MedContextLoss(lambda logits, y: logits.mean(), beta=0.5)(out, torch.zeros(1))
    loss.backward()
    assert all(not p.requires_grad and p.grad is None for p in model.teacher.parameters())
    assert model.mask_token.grad is not None and model.mask_token.grad.abs().sum() > 0
    assert {id(p) for p in model.student_parameters()} == {id(p) for p in model.student.parameters()} | {id(model.mask_token)}


def test_momentum_schedule_start_middle_end():
    total = 1000
    assert cosine_momentum(0, total) == pytest.approx(0.996)
    assert cosine_momentum(total // 2, total) == pytest.approx(0.998)  # 1 + 0.5 * (0.996 - 1) * (1 + cos(pi / 2))
    assert cosine_momentum(total - 1, total) == pytest.approx(1.0 - 0.002 * (1 + math.cos(math.pi * 999 / 1000)))
    assert 0.99999 < cosine_momentum(total - 1, total) < 1.0
    assert [cosine_momentum(i, total) for i in (0, 250, 500, 750, 999)] == sorted(cosine_momentum(i, total) for i in (0, 250, 500, 750, 999))


def run_ema(mode: str, epoch_length: int, max_epochs: int) -> list[float]:
    model = MedContextModel(tiny_segresnet())
    update = TeacherEMAUpdate(model, total_steps=epoch_length * max_epochs, mode=mode, warmup_epochs=50)
    seen = []
    engine = Engine(lambda e, b: None)
    update.attach(engine)
    engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: seen.append(update.momentum))
    engine.run(range(epoch_length), max_epochs=max_epochs)
    return seen


def test_ema_modes_global_iteration_and_reference():
    seen = run_ema("global_iteration", epoch_length=3, max_epochs=2)
    assert seen == [pytest.approx(cosine_momentum(i, 6)) for i in range(6)]  # every iteration, by global index
    # the reference: once per epoch, indexed by the in-epoch batch index into a schedule with a 50-epoch warmup
    # from 0; BTCV's 18 cases, 5000 epochs: m = 0.996 * 17 / (50 * 18 - 1) at every epoch
    assert cosine_momentum(17, 18 * 5000, warmup_steps=50 * 18) == pytest.approx(0.996 * 17 / 899)
    model = MedContextModel(tiny_segresnet())
    update = TeacherEMAUpdate(model, total_steps=18 * 60, mode="epoch_end_batch_index", warmup_epochs=50)
    engine = Engine(lambda e, b: None)
    update.attach(engine)
    applied = []
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: applied.append(update.momentum))
    engine.run(range(18), max_epochs=2)
    assert applied == [pytest.approx(0.996 * 17 / 899)] * 2


# ---- masking inside the network ------------------------------------------------------------------


@pytest.mark.parametrize("make, space", [(tiny_unetr, "token"), (tiny_segresnet, "input")])
def test_masked_pass_batched_equals_separate_and_differs_from_clean(make, space):
    torch.manual_seed(0)
    model = MedContextModel(make(), mask_ratio=0.5)
    assert model.mask_space == space
    with torch.no_grad():
        model.mask_token.normal_()
    x = torch.rand(2, 1, 32, 32, 32)
    mask = model.make_mask(x)
    with torch.no_grad():
        clean_b, masked_b = model._student_masked(x, mask, batched=True)
        _, masked_s = model._student_masked(x, mask, batched=False)
        clean_s = model.student(x)
    torch.testing.assert_close(clean_b, clean_s, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(masked_b, masked_s, atol=1e-5, rtol=1e-4)
    assert (masked_s - clean_s).abs().max() > 1e-4  # the mask changed the prediction
    nothing = model.make_mask(x) & False
    with torch.no_grad():
        torch.testing.assert_close(model._student_masked(x, nothing, batched=False)[1], clean_s, atol=1e-5, rtol=1e-4)


def test_input_mask_replaces_exactly_the_masked_cubes():
    model = MedContextModel(tiny_segresnet(), mask_ratio=0.5, patch_size=16)
    with torch.no_grad():
        model.mask_token.fill_(-7.0)
    x = torch.rand(2, 1, 32, 32, 32)
    mask = model.make_mask(x)
    out = model._mask_input(x, mask)
    voxels = mask.repeat_interleave(16, 1).repeat_interleave(16, 2).repeat_interleave(16, 3)[:, None]
    assert (out[voxels] == -7.0).all() and torch.equal(out[~voxels], x[~voxels])


def test_swinunetr_uses_input_masking_and_bad_roi_is_refused():
    model = MedContextModel(SwinUNETR(in_channels=1, out_channels=3, feature_size=12, depths=(1, 1, 1, 1), window_size=4))
    assert model.mask_space == "input"
    with pytest.raises(ValueError, match="not divisible"):
        model.make_mask(torch.rand(1, 1, 40, 32, 32))
    with pytest.raises(ValueError, match="needs a ViT patch embedding"):
        MedContextModel(tiny_segresnet(), mask_space="token")


# ---- loss ----------------------------------------------------------------------------------------


def test_each_loss_term_by_hand():
    g = torch.Generator().manual_seed(0)
    s, sm, t = (torch.randn(2, 3, 4, 4, 4, generator=g) for _ in range(3))
    y = torch.randn(2, 3, 4, 4, 4, generator=g)
    seg = lambda logits, target: ((logits - target) ** 2).sum() / 10.0
    out = MethodOutput(student=s, student_masked=sm, teacher=t, grid_mask=torch.zeros(2, 1, 1, 1, dtype=torch.bool))
    loss_fn = MedContextLoss(seg, beta=0.5)
    total = loss_fn(out, y)
    by_hand_seg_clean = float(((s - y) ** 2).sum() / 10.0)
    by_hand_seg_masked = float(((sm - y) ** 2).sum() / 10.0)
    by_hand_context = float(((t - sm) ** 2).sum() / t.numel()) / math.sqrt(float((t**2).sum()))
    assert float(loss_fn.terms["seg_clean"]) == pytest.approx(by_hand_seg_clean, rel=1e-5)
    assert float(loss_fn.terms["seg_masked"]) == pytest.approx(by_hand_seg_masked, rel=1e-5)
    assert float(loss_fn.terms["context"]) == pytest.approx(by_hand_context, rel=1e-5)
    assert float(total) == pytest.approx(by_hand_seg_clean + by_hand_seg_masked + 0.5 * by_hand_context, rel=1e-5)
    # the context term sends no gradient into the teacher's logits
    t.requires_grad_(True)
    sm.requires_grad_(True)
    context_loss(t, sm).backward()
    assert t.grad is None and sm.grad is not None


def test_one_training_step_with_swinunetr():
    """The trainer's pieces (model, loss, optimiser over student_parameters, EMA) on SwinUNETR."""
    from monai.losses import DiceCELoss

    torch.manual_seed(0)
    model = MedContextModel(SwinUNETR(in_channels=1, out_channels=3, feature_size=12, depths=(1, 1, 1, 1), window_size=4), mask_ratio=0.6)
    model.train()
    opt = torch.optim.AdamW(model.student_parameters(), lr=1e-3)
    teacher_before = [p.clone() for p in model.teacher.parameters()]
    x, y = torch.rand(1, 1, 64, 64, 64), torch.randint(0, 3, (1, 1, 64, 64, 64))  # SwinUNETR needs > 1 voxel at 1/32
    loss_fn = MedContextLoss(DiceCELoss(to_onehot_y=True, softmax=True), beta=0.5)
    loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()
    model.update_teacher(0.9)
    assert torch.isfinite(loss) and float(loss_fn.terms["context"]) > 0
    moved = [not torch.equal(a, b) for a, b in zip(teacher_before, model.teacher.parameters())]
    assert any(moved)  # the teacher followed the updated student


@pytest.mark.parametrize("make", [tiny_unetr, tiny_segresnet])
def test_supervised_setting_skips_passes_without_changing_loss_or_gradients(make):
    """mask_ratio 0 and beta 0 (a comparison's supervised baseline): one student pass and no teacher
    pass give the loss and the gradients of the full computation (both passes, context term at weight 0)."""
    from monai.losses import DiceCELoss

    torch.manual_seed(0)
    x, y = torch.rand(2, 1, 32, 32, 32), torch.randint(0, 3, (2, 1, 32, 32, 32))
    fast = MedContextModel(make(), mask_ratio=0.0, teacher_logits=False).train()
    full = MedContextModel(make(), mask_ratio=0.0).train()
    full.load_state_dict(fast.state_dict())
    calls = {"student": 0, "teacher": 0}
    for name in calls:
        getattr(fast, name).register_forward_hook(lambda *_, n=name: calls.__setitem__(n, calls[n] + 1))
    # the full computation by hand: both student passes run, the teacher's logits feed a weight-0 term
    out = full(x)
    _, masked = full._student_masked(x, out.grid_mask, batched=False)
    assert out.teacher is not None and not out.grid_mask.any()
    seg = DiceCELoss(to_onehot_y=True, softmax=True)
    full_loss = MedContextLoss(seg, beta=0.0)(MethodOutput(out, student_masked=masked), y)
    full_loss.backward()
    fast_loss_fn = MedContextLoss(seg, beta=0.0)
    fast_loss = fast_loss_fn(fast(x), y)
    fast_loss.backward()
    assert calls == {"student": 1, "teacher": 0}
    torch.testing.assert_close(fast_loss, full_loss)
    assert math.isnan(float(fast_loss_fn.terms["context"]))
    for (name, a), b in zip(fast.student.named_parameters(), full.student.parameters()):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-6, rtol=1e-4, msg=name)


def test_no_teacher_logits_with_a_context_weight_is_refused():
    torch.manual_seed(0)
    model = MedContextModel(tiny_segresnet(), mask_ratio=0.5, teacher_logits=False).train()
    x, y = torch.rand(1, 1, 32, 32, 32), torch.randint(0, 3, (1, 1, 32, 32, 32))
    with pytest.raises(ValueError, match="beta is 0.5 but the model computed no teacher logits"):
        MedContextLoss(lambda a, b: a.mean(), beta=0.5)(model(x), y)
