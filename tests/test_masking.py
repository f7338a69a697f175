"""SubFore masking rule (seed 000): 16^3 subvolumes, only foreground ones masked with p = 0.6."""

from __future__ import annotations

import pytest
import torch
from monai.transforms import ScaleIntensityRange

from common.methods.subfore import SubvolumeForegroundMasker, hu_to_intensity, subvolume_means

S = 16
AIR, TISSUE = 0.1, 0.6  # scaled intensities on [0.1, 1.0]
THRESHOLD = hu_to_intensity(-132, (-175, 250), (0.1, 1.0))


def batch_with_foreground(fg: torch.Tensor) -> torch.Tensor:
    """(B, 6, 6, 6) bool grid -> (B, 1, 96, 96, 96) image: tissue in foreground cells, air elsewhere."""
    img = torch.where(fg, torch.tensor(TISSUE), torch.tensor(AIR)).float()
    return img.repeat_interleave(S, 1).repeat_interleave(S, 2).repeat_interleave(S, 3)[:, None]


def random_fg(b: int, p: float, seed: int) -> torch.Tensor:
    return torch.rand((b, 6, 6, 6), generator=torch.Generator().manual_seed(seed)) < p


def test_hu_threshold_maps_like_the_reference():
    # reference code: 0.1 on [0, 1]-scaled [-175, 250] HU, i.e. about -132 HU
    assert hu_to_intensity(-132.5, (-175, 250), (0.0, 1.0)) == pytest.approx(0.1)
    assert hu_to_intensity(-132, (-175, 250), (0.1, 1.0)) == pytest.approx(0.1 + 43 / 425 * 0.9)


def test_foreground_does_not_depend_on_intensity_scaling():
    hu = torch.full((1, 1, 96, 96, 96), -1000.0)
    hu[..., :48, :, :] = 40.0  # soft tissue in half the volume
    hu[..., 48:64, :16, :16] = -120.0  # just above -132 HU
    hu[..., 64:80, :16, :16] = -145.0  # just below
    grids = []
    for b_range in ((0.0, 1.0), (0.1, 1.0)):
        scaled = ScaleIntensityRange(-175, 250, *b_range, clip=True)(hu)
        thr = hu_to_intensity(-132, (-175, 250), b_range)
        grids.append(SubvolumeForegroundMasker(threshold=thr).sample(scaled).foreground)
    assert torch.equal(grids[0], grids[1])
    assert grids[0][0, :3].all() and grids[0][0, 3, 0, 0] and not grids[0][0, 4, 0, 0] and not grids[0][0, 5].any()


def test_only_foreground_subvolumes_are_masked():
    fg = random_fg(4, 0.5, seed=1)
    images = batch_with_foreground(fg)
    masker = SubvolumeForegroundMasker(threshold=THRESHOLD)
    for seed in range(50):
        m = masker.sample(images, torch.Generator().manual_seed(seed))
        assert torch.equal(m.foreground, fg)
        assert not (m.grid & ~fg).any(), "a background subvolume was masked"


def test_masked_fraction_of_foreground_is_about_the_ratio():
    fg = random_fg(4, 0.5, seed=2)
    images = batch_with_foreground(fg)
    masker = SubvolumeForegroundMasker(mask_ratio=0.6, threshold=THRESHOLD)
    g = torch.Generator().manual_seed(0)
    masked = sum(int(masker.sample(images, g).grid.sum()) for _ in range(300))
    total_fg = 300 * int(fg.sum())
    # 300 draws x ~430 foreground cells: binomial sd of the fraction is ~0.0014
    assert masked / total_fg == pytest.approx(0.6, abs=0.01)
    assert masker.masked_fraction == pytest.approx(masked / total_fg)


def test_fixed_count_masks_exactly_round_ratio_times_foreground():
    fg = random_fg(5, 0.4, seed=3)
    images = batch_with_foreground(fg)
    masker = SubvolumeForegroundMasker(mask_ratio=0.6, threshold=THRESHOLD, count="fixed")
    for seed in range(10):
        m = masker.sample(images, torch.Generator().manual_seed(seed))
        n_fg = fg.reshape(5, -1).sum(1).float()
        assert torch.equal(m.grid.reshape(5, -1).sum(1), torch.round(n_fg * 0.6).long())
        assert not (m.grid & ~fg).any()


def test_voxel_mask_is_aligned_to_the_subvolume_grid():
    images = batch_with_foreground(random_fg(3, 0.6, seed=4))
    m = SubvolumeForegroundMasker(threshold=THRESHOLD).sample(images, torch.Generator().manual_seed(0))
    vox = m.voxel_mask()
    assert vox.shape == (3, 1, 96, 96, 96) and vox.dtype == torch.bool
    blocks = vox[:, 0].reshape(3, 6, S, 6, S, 6, S).permute(0, 1, 3, 5, 2, 4, 6).reshape(3, 6, 6, 6, -1)
    assert (blocks.all(-1) | ~blocks.any(-1)).all(), "a 16^3 block is partly masked"
    assert torch.equal(blocks[..., 0], m.grid)


def test_same_seed_same_mask_and_different_seed_different_mask():
    images = batch_with_foreground(random_fg(2, 0.7, seed=5))
    masker = SubvolumeForegroundMasker(threshold=THRESHOLD)
    a = masker(images, torch.Generator().manual_seed(7))
    b = masker(images, torch.Generator().manual_seed(7))
    c = masker(images, torch.Generator().manual_seed(8))
    assert torch.equal(a[1], b[1]) and torch.equal(a[0], b[0])
    assert not torch.equal(a[1], c[1])


def test_mixed_batch_and_no_foreground_fallback():
    fg = torch.zeros(3, 6, 6, 6, dtype=torch.bool)
    fg[1] = True  # all tissue
    fg[2, :3] = True  # half
    images = batch_with_foreground(fg)  # sample 0: only air
    masker = SubvolumeForegroundMasker(mask_ratio=0.6, threshold=THRESHOLD)
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(3)
    for _ in range(100):
        m = masker.sample(images, g)
        assert m.fallback.tolist() == [True, False, False]
        assert not (m.grid[2] & ~fg[2]).any()
        counts += m.grid.reshape(3, -1).sum(1)
    # the air-only crop falls back to random masking over all 216 cells at the same ratio
    assert counts[0] / (100 * 216) == pytest.approx(0.6, abs=0.03)
    assert counts[2] / (100 * 108) == pytest.approx(0.6, abs=0.03)
    assert masker.num_fallback == 100 and masker.fallback_rate == pytest.approx(1 / 3)


def test_fill_noise_and_zeros_only_touch_masked_voxels():
    images = batch_with_foreground(torch.ones(2, 6, 6, 6, dtype=torch.bool))
    for fill in ("noise", "zeros"):
        masked, vox = SubvolumeForegroundMasker(threshold=THRESHOLD, fill=fill)(images, torch.Generator().manual_seed(0))
        assert torch.equal(masked[~vox.expand_as(masked)], images[~vox.expand_as(images)])
        inside = masked[vox.expand_as(masked)]
        if fill == "zeros":
            assert (inside == 0).all()
        else:
            assert inside.mean().abs() < 0.01 and inside.std() == pytest.approx(1.0, abs=0.01)


def test_subvolume_means_and_bad_roi():
    x = torch.rand((1, 2, 32, 32, 32), generator=torch.Generator().manual_seed(0))
    means = subvolume_means(x, 16)
    assert means.shape == (1, 2, 2, 2)
    assert means[0, 0, 0, 0].item() == pytest.approx(x[0, :, :16, :16, :16].mean().item(), rel=1e-5)
    assert means[0, 1, 0, 1].item() == pytest.approx(x[0, :, 16:, :16, 16:].mean().item(), rel=1e-5)
    with pytest.raises(ValueError, match="not divisible by the subvolume size 16"):
        subvolume_means(torch.zeros(1, 1, 40, 32, 32), 16)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_mask_is_computed_on_the_batch_device():
    images = batch_with_foreground(random_fg(2, 0.5, seed=6)).cuda()
    masked, vox = SubvolumeForegroundMasker(threshold=THRESHOLD)(images)
    assert masked.is_cuda and vox.is_cuda
