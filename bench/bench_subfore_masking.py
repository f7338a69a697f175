"""SubFore masking cost against a training step, in one run; prints JSON.

Measures, on the same batch of ``batch`` ROIs of ``roi^3`` (default 4 x 96^3, the paper's batch):

- ``mask_s``: the whole masking path of a step (foreground test, draw, voxel mask, noise fill,
  mask handed to the model), i.e. ``MaskedImageBatch`` minus the host-to-device copy;
- ``step_s``: one optimisation step (forward, masked L1, backward, AdamW) of the tiny SwinUNETR
  used by the tests (feature_size 12, depths 1, window 4);
- ``loop_mask_s``: a per-sample Python-loop masker (baseline) doing the same work.

and reports ``mask_fraction_of_step`` (the issue's bar: < 0.02) and ``vectorized_speedup``.

    python bench/bench_subfore_masking.py [--roi 96] [--batch 4] [--repeats 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import platform

import torch
from monai.networks.nets import SwinUNETR
from timing import median_time

from common.methods.subfore import MaskedImageBatch, MaskedReconstructionLoss, SubForeModel
from common.methods.subfore import SubvolumeForegroundMasker, hu_to_intensity


def loop_mask(images: torch.Tensor, s: int, ratio: float, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Baseline: the same rule, one sample and one subvolume at a time."""
    masked, mask = images.clone(), torch.zeros_like(images[:, :1], dtype=torch.bool)
    _, _, d, h, w = images.shape
    for b in range(images.shape[0]):
        cells = [(i, j, k) for i in range(0, d, s) for j in range(0, h, s) for k in range(0, w, s)]
        fg = [c for c in cells if images[b, :, c[0] : c[0] + s, c[1] : c[1] + s, c[2] : c[2] + s].mean() > threshold]
        for i, j, k in fg or cells:
            if torch.rand(()) < ratio:
                mask[b, :, i : i + s, j : j + s, k : k + s] = True
                masked[b, :, i : i + s, j : j + s, k : k + s] = torch.randn(images.shape[1], s, s, s)
    return masked, torch.cat([images, mask.float()], 1)


def synthetic_batch(batch: int, roi: int, device: torch.device) -> torch.Tensor:
    """Scaled CT-like crops: a body (tissue) in air, so about half the subvolumes are foreground."""
    g = torch.Generator().manual_seed(0)
    x = torch.full((batch, 1, roi, roi, roi), 0.1)
    zz, yy, xx = torch.meshgrid(*(torch.linspace(-1, 1, roi),) * 3, indexing="ij")
    body = (xx**2 + (yy / 0.8) ** 2) < 0.7
    x[:, :, body] = 0.5 + 0.1 * torch.rand((batch, 1, int(body.sum())), generator=g)
    return x.to(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--roi", type=int, default=96)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)

    images = synthetic_batch(args.batch, args.roi, device)
    threshold = hu_to_intensity(-132, (-175, 250), (0.1, 1.0))
    masker = SubvolumeForegroundMasker(16, 0.6, threshold)
    prepare = MaskedImageBatch(masker)
    net = SubForeModel(SwinUNETR(in_channels=1, out_channels=1, feature_size=12, depths=(1, 1, 1, 1), window_size=4, use_v2=True)).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=1e-2)
    loss_fn = MaskedReconstructionLoss(16)
    masked, target, _, kwargs = prepare({"image": images}, device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(net(masked, **kwargs), target).backward()
        opt.step()

    mask_s = median_time(lambda: prepare({"image": images}, device), args.repeats, device)
    loop_s = median_time(lambda: loop_mask(images, 16, 0.6, threshold), max(1, args.repeats // 2), device)
    step_s = median_time(step, max(1, args.repeats // 2), device)
    print(
        json.dumps(
            {
                "benchmark": "subfore_masking_vs_train_step",
                "device": str(device),
                "host": platform.processor() or platform.machine(),
                "torch_threads": torch.get_num_threads(),
                "batch": args.batch,
                "roi": args.roi,
                "mask_s": round(mask_s, 5),
                "loop_mask_s": round(loop_s, 5),
                "step_s": round(step_s, 4),
                "mask_fraction_of_step": round(mask_s / step_s, 5),
                "meets_2_percent_bar": mask_s / step_s < 0.02,
                "vectorized_speedup": round(loop_s / mask_s, 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
