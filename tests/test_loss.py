"""Masked L1 loss: counts masked voxels only; reductions as documented."""

from __future__ import annotations

import pytest
import torch

from common.engines import MethodOutput
from common.methods.subfore import MaskedImageBatch, MaskedReconstructionLoss, SubForeModel, SubvolumeForegroundMasker, masked_l1


def grid_mask(cells: list[tuple[int, int, int, int]], b: int = 2, g: int = 4, s: int = 8) -> torch.Tensor:
    grid = torch.zeros(b, g, g, g, dtype=torch.bool)
    for c in cells:
        grid[c] = True
    return grid.repeat_interleave(s, 1).repeat_interleave(s, 2).repeat_interleave(s, 3)[:, None]


@pytest.mark.parametrize("reduction", ["batch", "per_sample"])
def test_unmasked_predictions_do_not_change_the_loss(reduction):
    torch.manual_seed(0)
    images, pred = torch.rand(2, 1, 32, 32, 32), torch.rand(2, 1, 32, 32, 32)
    mask = grid_mask([(0, 0, 0, 0), (0, 1, 2, 3), (1, 3, 3, 3)])
    base = masked_l1(pred, images, mask, 8, reduction)
    changed = pred.clone()
    changed[~mask.expand_as(pred)] = 100.0
    assert masked_l1(changed, images, mask, 8, reduction) == pytest.approx(base.item())
    changed_masked = pred.clone()
    changed_masked[mask.expand_as(pred)] += 1.0
    assert masked_l1(changed_masked, images, mask, 8, reduction) > base


def test_reductions_against_hand_computation():
    images = torch.zeros(2, 1, 32, 32, 32)
    pred = torch.zeros(2, 1, 32, 32, 32)
    # sample 0: two masked subvolumes with errors 1 and 3; sample 1: one with error 2
    pred[0, :, :8, :8, :8] = 1.0
    pred[0, :, 8:16, :8, :8] = 3.0
    pred[1, :, :8, :8, :8] = 2.0
    mask = grid_mask([(0, 0, 0, 0), (0, 1, 0, 0), (1, 0, 0, 0)])
    # per subvolume, per sample, then over samples: mean(mean(1, 3), 2) = 2
    assert masked_l1(pred, images, mask, 8, "per_sample").item() == pytest.approx(2.0)
    # every masked voxel weighs the same: (1 + 3 + 2) / 3
    assert masked_l1(pred, images, mask, 8, "batch").item() == pytest.approx(2.0)
    pred[1, :, :8, :8, :8] = 5.0
    assert masked_l1(pred, images, mask, 8, "per_sample").item() == pytest.approx((2.0 + 5.0) / 2)
    # the reference (src/pretrain/loss.py): sum over masked blocks of each block's mean L1, / number of blocks
    assert masked_l1(pred, images, mask, 8, "batch").item() == pytest.approx((1 + 3 + 5) / 3)
    with pytest.raises(ValueError, match="'voxel' is now called 'batch'"):
        masked_l1(pred, images, mask, 8, "voxel")


def test_nothing_masked_gives_zero_with_a_gradient():
    pred = torch.rand(1, 1, 16, 16, 16, requires_grad=True)
    loss = masked_l1(pred, torch.rand(1, 1, 16, 16, 16), torch.zeros(1, 1, 16, 16, 16, dtype=torch.bool), 8, "per_sample")
    loss.backward()
    assert loss.item() == 0.0 and pred.grad is not None


def test_batch_preparer_hands_the_mask_to_the_model_and_the_original_to_the_loss():
    torch.manual_seed(0)
    images = torch.rand(2, 1, 32, 32, 32) * 0.9 + 0.1
    masker = SubvolumeForegroundMasker(subvolume_size=8, threshold=0.0)
    masked, target, args, kwargs = MaskedImageBatch(masker)({"image": images}, device="cpu")
    mask = kwargs["mask"]
    assert args == () and torch.equal(target, images) and mask.shape == (2, 1, 32, 32, 32) and mask.dtype == torch.bool
    assert not torch.equal(masked, images) and torch.equal(masked[~mask.expand_as(masked)], images[~mask.expand_as(images)])
    net = torch.nn.Conv3d(1, 1, 3, padding=1)
    output = SubForeModel(net)(masked, *args, **kwargs)
    assert isinstance(output, MethodOutput) and output.mask is mask and torch.equal(output.input, masked)
    loss = MaskedReconstructionLoss(subvolume_size=8)(output, target)
    assert loss.item() == pytest.approx(masked_l1(net(masked), images, mask, 8, "batch").item())  # the default
    assert torch.equal(SubForeModel(net)(masked), net(masked))  # no mask: evaluation / export output
    with pytest.raises(TypeError, match="needs a method's training output"):
        MaskedReconstructionLoss(subvolume_size=8)(net(masked), target)
    with pytest.raises(KeyError, match="no 'image' key"):
        MaskedImageBatch(masker)({"img": images})
