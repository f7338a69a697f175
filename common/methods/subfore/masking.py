"""SubFore subvolume foreground masking (seed 000).

A cubic ROI is cut into non-overlapping ``s^3`` subvolumes (default ``s = 16``, so a 96^3 ROI gives a
6x6x6 grid). A subvolume is *foreground* when the mean of its (windowed, scaled) intensity is above a
threshold; only foreground subvolumes are candidates for masking, each masked with probability
``mask_ratio`` (Bernoulli, the default) or, as an option, exactly ``round(mask_ratio * n_foreground)``
of them per sample. Background (air) subvolumes are never masked. A crop with no foreground at all
either falls back to masking among *all* its subvolumes with the same rule (``no_foreground="mask_all"``,
the default: every crop trains the network) or is left unmasked (``"unmasked"``: the reference,
``src/models/swin.py`` l. 171, whose loss is 0 when nothing is masked); such crops are counted.

Everything is computed on the batch's device with batched tensor ops: no Python loop over samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from common.masking.grid import expand_grid

MaskCount = Literal["bernoulli", "fixed"]
MaskFill = Literal["noise", "zeros"]


def hu_to_intensity(hu: float, hu_window: tuple[float, float], intensity_range: tuple[float, float]) -> float:
    """Map a HU value into the scaled intensity space produced by ``ScaleIntensityRanged``.

    The mapping is the same linear map the transform applies (``a_min, a_max -> b_min, b_max``), so a
    threshold stated in HU means the same tissue whatever the scaling (e.g. -132 HU is 0.101 on
    ``[0, 1]`` and 0.191 on ``[0.1, 1.0]`` for the window ``[-175, 250]``).
    """
    a_min, a_max = (float(v) for v in hu_window)
    b_min, b_max = (float(v) for v in intensity_range)
    if a_max <= a_min:
        raise ValueError(f"hu_window must be increasing, got {hu_window}")
    return b_min + (float(hu) - a_min) / (a_max - a_min) * (b_max - b_min)


@dataclass
class SubvolumeMask:
    """The result of one masking draw for a batch.

    Attributes:
        grid: ``(B, Gd, Gh, Gw)`` bool, True where the subvolume is masked.
        foreground: ``(B, Gd, Gh, Gw)`` bool, True where the subvolume is foreground.
        fallback: ``(B,)`` bool, True for samples with no foreground (random masking was used).
        subvolume_size: edge length ``s`` of a subvolume in voxels.
    """

    grid: torch.Tensor
    foreground: torch.Tensor
    fallback: torch.Tensor
    subvolume_size: int

    def voxel_mask(self) -> torch.Tensor:
        """Expand the grid to voxels: ``(B, 1, Gd*s, Gh*s, Gw*s)`` bool."""
        return expand_grid(self.grid, self.subvolume_size)


def subvolume_means(images: torch.Tensor, s: int) -> torch.Tensor:
    """Mean intensity of every ``s^3`` subvolume, averaged over channels.

    Args:
        images: ``(B, C, D, H, W)`` with D, H, W divisible by ``s``.
    Returns:
        ``(B, D/s, H/s, W/s)`` float.
    """
    if images.ndim != 5:
        raise ValueError(f"expected a (B, C, D, H, W) batch, got shape {tuple(images.shape)}")
    b, _, d, h, w = images.shape
    if d % s or h % s or w % s:
        raise ValueError(
            f"ROI {tuple(images.shape[2:])} is not divisible by the subvolume size {s}: "
            "set roi_size to a multiple of subvolume_size"
        )
    x = images.float().mean(dim=1).reshape(b, d // s, s, h // s, s, w // s, s)
    return x.mean(dim=(2, 4, 6))


class SubvolumeForegroundMasker:
    """Draw SubFore masks for a batch and apply them.

    Args:
        subvolume_size: subvolume edge ``s`` in voxels (paper: 16).
        mask_ratio: probability of masking a foreground subvolume (paper: 0.6); with
            ``count="fixed"`` the fraction of foreground subvolumes masked per sample.
        threshold: foreground threshold on the subvolume's mean *scaled* intensity; build it from HU
            with :func:`hu_to_intensity` so it does not depend on the intensity scaling.
        count: ``"bernoulli"`` (independent draw per subvolume) or ``"fixed"`` (exact count per sample).
        fill: what masked voxels are replaced with: ``"noise"`` (N(0, 1), default) or ``"zeros"``.
        no_foreground: a crop without foreground subvolumes: ``"mask_all"`` (its subvolumes are all
            candidates) or ``"unmasked"`` (nothing masked, as the reference).

    The masker keeps running counts (``num_samples``, ``num_fallback``, ``num_foreground``,
    ``num_masked``) so a handler can report how often the no-foreground fallback fired. They are
    accumulated on the batch's device and only read back when asked for, so masking adds no
    host-device synchronisation to a training step.
    """

    def __init__(
        self,
        subvolume_size: int = 16,
        mask_ratio: float = 0.6,
        threshold: float = 0.19,
        count: MaskCount = "bernoulli",
        fill: MaskFill = "noise",
        no_foreground: str = "mask_all",
    ) -> None:
        if subvolume_size < 1:
            raise ValueError(f"subvolume_size must be >= 1, got {subvolume_size}")
        if not 0.0 < mask_ratio <= 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1], got {mask_ratio}")
        if count not in ("bernoulli", "fixed"):
            raise ValueError(f"count must be 'bernoulli' or 'fixed', got {count!r}")
        if fill not in ("noise", "zeros"):
            raise ValueError(f"fill must be 'noise' or 'zeros', got {fill!r}")
        if no_foreground not in ("mask_all", "unmasked"):
            raise ValueError(f"no_foreground must be 'mask_all' or 'unmasked', got {no_foreground!r}")
        self.fallback_to_all = no_foreground == "mask_all"
        self.subvolume_size = int(subvolume_size)
        self.mask_ratio = float(mask_ratio)
        self.threshold = float(threshold)
        self.count = count
        self.fill = fill
        self.reset_stats()

    def reset_stats(self) -> None:
        """Zero the running counters."""
        self.num_samples = 0
        self._counts: torch.Tensor | None = None  # (fallback, foreground, masked) on the batch device

    def _count(self, i: int) -> int:
        return 0 if self._counts is None else int(self._counts[i])

    @property
    def num_fallback(self) -> int:
        """Samples that had no foreground subvolume (masked among all, or left unmasked: ``no_foreground``)."""
        return self._count(0)

    @property
    def num_foreground(self) -> int:
        """Foreground subvolumes seen."""
        return self._count(1)

    @property
    def num_masked(self) -> int:
        """Subvolumes masked."""
        return self._count(2)

    @property
    def fallback_rate(self) -> float:
        """Fraction of samples so far that had no foreground subvolume."""
        return self.num_fallback / max(self.num_samples, 1)

    @property
    def masked_fraction(self) -> float:
        """Masked subvolumes over foreground subvolumes so far (about ``mask_ratio``)."""
        return self.num_masked / max(self.num_foreground, 1)

    def sample(self, images: torch.Tensor, generator: torch.Generator | None = None) -> SubvolumeMask:
        """Draw a mask for ``images`` ``(B, C, D, H, W)`` without applying it."""
        foreground = subvolume_means(images, self.subvolume_size) > self.threshold  # (B, Gd, Gh, Gw)
        b = foreground.shape[0]
        flat_fg = foreground.reshape(b, -1)
        fallback = ~flat_fg.any(dim=1)  # (B,)
        candidates = flat_fg | fallback[:, None] if self.fallback_to_all else flat_fg
        scores = torch.rand(flat_fg.shape, generator=generator, device=images.device)
        if self.count == "bernoulli":
            flat_mask = candidates & (scores < self.mask_ratio)
        else:
            # Exactly k_b = round(ratio * n_candidates_b) per sample: rank the candidates by a random
            # score (non-candidates pushed to the end) and keep the k_b lowest ranks.
            k = torch.round(candidates.sum(dim=1).float() * self.mask_ratio).long()  # (B,)
            order = torch.where(candidates, scores, torch.full_like(scores, 2.0)).argsort(dim=1)
            rank = order.argsort(dim=1)
            flat_mask = rank < k[:, None]
        grid = flat_mask.reshape(foreground.shape)
        self.num_samples += b
        counts = torch.stack([fallback.sum(), flat_fg.sum(), flat_mask.sum()])
        self._counts = counts if self._counts is None or self._counts.device != counts.device else self._counts + counts
        return SubvolumeMask(grid=grid, foreground=foreground, fallback=fallback, subvolume_size=self.subvolume_size)

    def apply(self, images: torch.Tensor, voxel_mask: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Replace masked voxels of ``images`` ``(B, C, D, H, W)``; ``voxel_mask`` is ``(B, 1, D, H, W)``."""
        if self.fill == "zeros":
            return images.masked_fill(voxel_mask, 0.0)
        noise = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)
        return torch.where(voxel_mask, noise, images)

    def __call__(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask a batch.

        Args:
            images: ``(B, C, D, H, W)`` scaled intensities.
            generator: optional RNG on ``images.device`` for reproducible draws.
        Returns:
            ``(masked_images, voxel_mask)`` with shapes ``(B, C, D, H, W)`` and ``(B, 1, D, H, W)`` bool.
        """
        voxel_mask = self.sample(images, generator).voxel_mask()
        return self.apply(images, voxel_mask, generator), voxel_mask
