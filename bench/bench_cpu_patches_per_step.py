"""CPU training step of a small SegResNetDS with one patch against two patches a step; prints JSON.

Why it matters: PyTorch's CPU convolution runs a 3x3x3 kernel with its native ``slow_conv3d`` instead of
oneDNN when the batch is 1 and ``batch x channels x first two spatial sizes <= 20480`` (its
``use_mkldnn`` rule). A CPU-sized network (8 initial filters) on CT-FM's z-first patches (32x64x64)
falls under it at full resolution, so one patch a step costs more than two: the medium evidence
protocol keeps ctfm_segmentation's two patches a step for that reason. Other orders of the same
patch (64x64x32, the RAS bundles') clear the rule and are shown for comparison.

Fields: ``<shape>_b<batch>_s`` (median seconds per step: forward, DeepSupervisionLoss(DiceCE),
backward, AdamW), ``conv_kernels`` (the forward kernels the profiler saw per case), and
``ratio_two_vs_one`` = b2_s / b1_s for the z-first patch (below 1: two patches are cheaper than one).

    python bench/bench_cpu_patches_per_step.py [--threads 1] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import platform

import torch
from monai.losses import DeepSupervisionLoss, DiceCELoss
from monai.networks.nets import SegResNetDS
from timing import median_time

CASES = {"z_first": (32, 64, 64), "z_last": (64, 64, 32)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (the evidence runner gives each of two parallel runs 1)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--init_filters", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    loss_fn = DeepSupervisionLoss(DiceCELoss(to_onehot_y=True, softmax=True, batch=True))
    result: dict = {"bench": "cpu_patches_per_step", "torch": torch.__version__, "threads": args.threads, "init_filters": args.init_filters,
                    "cpu": platform.processor() or platform.machine(), "conv_kernels": {}}
    for name, shape in CASES.items():
        for batch in (1, 2):
            net = SegResNetDS(spatial_dims=3, in_channels=1, out_channels=6, init_filters=args.init_filters, blocks_down=(1, 1, 1, 1, 1), dsdepth=4)
            optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
            images = torch.randn(batch, 1, *shape)
            labels = torch.randint(0, 6, (batch, 1, *shape)).float()  # DeepSupervisionLoss resizes the label with interpolate (float)

            def step() -> None:
                optimizer.zero_grad(set_to_none=True)
                loss_fn(net(images), labels).backward()
                optimizer.step()

            result[f"{name}_b{batch}_s"] = round(median_time(step, args.repeats, torch.device("cpu")), 3)
            with torch.profiler.profile() as prof, torch.no_grad():
                net(images)
            result["conv_kernels"][f"{name}_b{batch}"] = sorted({e.key for e in prof.key_averages() if e.key in ("aten::slow_conv3d_forward", "aten::mkldnn_convolution")})
    result["ratio_two_vs_one"] = round(result["z_first_b2_s"] / result["z_first_b1_s"], 3)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
