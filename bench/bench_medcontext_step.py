"""One MedContext training step against one plain supervised step, same network and batch; prints JSON.

Steps timed (forward, loss, backward, AdamW; the MedContext step also updates the EMA teacher):

- ``supervised_s``: DiceCE on the student's logits (the baseline);
- ``medcontext_s``: :class:`common.methods.medcontext.MedContextModel` with both student passes batched;
- ``medcontext_unbatched_s``: the same with two separate student passes (as the reference);

``ratio`` = medcontext_s / supervised_s (the issue's bar: at most 2.5; the reference does three full
forwards). ``--size tiny`` is the CPU test network (UNETR hidden 48, feature_size 8, 64^3);
``--size paper`` is the bundle's UNETR (hidden 768, feature_size 32, 96^3, 4 crops).

    python bench/bench_medcontext_step.py [--size tiny|paper] [--network unetr|segresnet] [--repeats 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import platform

import torch
from monai.losses import DiceCELoss
from monai.networks.nets import UNETR, SegResNet
from timing import median_time

from common.methods.medcontext import MedContextLoss
from common.methods.medcontext import MedContextModel

SIZES = {
    "tiny": {"roi": 64, "batch": 2, "unetr": {"hidden_size": 48, "mlp_dim": 96, "num_heads": 4, "feature_size": 8}, "segresnet": 8},
    "paper": {"roi": 96, "batch": 4, "unetr": {"hidden_size": 768, "mlp_dim": 3072, "num_heads": 12, "feature_size": 32}, "segresnet": 32},
}


def build(network: str, size: str, classes: int = 14) -> torch.nn.Module:
    s = SIZES[size]
    if network == "unetr":
        return UNETR(1, classes, img_size=s["roi"], proj_type="perceptron", res_block=True, conv_block=True, norm_name="instance", **s["unetr"])
    return SegResNet(spatial_dims=3, in_channels=1, out_channels=classes, init_filters=s["segresnet"], blocks_down=(1, 2, 2, 4), blocks_up=(1, 1, 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=SIZES, default="tiny")
    ap.add_argument("--network", choices=("unetr", "segresnet"), default="unetr")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    s = SIZES[args.size]
    images = torch.rand(s["batch"], 1, s["roi"], s["roi"], s["roi"], device=device)
    labels = torch.randint(0, 14, (s["batch"], 1, s["roi"], s["roi"], s["roi"]), device=device)
    dice_ce = DiceCELoss(to_onehot_y=True, softmax=True, squared_pred=True, smooth_nr=0.0, smooth_dr=1e-6)
    amp = device.type == "cuda"

    def step_fn(model, params, loss_fn, after=None):
        opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-5)
        model.train()

        def step():
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, enabled=amp):
                loss = loss_fn(model(images), labels)
            loss.backward()
            opt.step()
            if after:
                after()

        return step

    plain = build(args.network, args.size).to(device)
    supervised = step_fn(plain, plain.parameters(), dice_ce)
    results = {"supervised_s": median_time(supervised, args.repeats, device)}
    for name, batched in (("medcontext_s", True), ("medcontext_unbatched_s", False)):
        mc = MedContextModel(build(args.network, args.size), mask_ratio=0.6, batched_student=batched).to(device)
        step = step_fn(mc, list(mc.student_parameters()), MedContextLoss(dice_ce, beta=0.5), after=lambda mc=mc: mc.update_teacher(0.996))
        results[name] = median_time(step, args.repeats, device)
    report = {
        "benchmark": "medcontext_step_vs_supervised_step",
        "network": args.network,
        "size": args.size,
        "batch": s["batch"],
        "roi": s["roi"],
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "amp": amp,
        "repeats": args.repeats,
        **{k: round(v, 4) for k, v in results.items()},
        "ratio": round(results["medcontext_s"] / results["supervised_s"], 3),
        "ratio_unbatched": round(results["medcontext_unbatched_s"] / results["supervised_s"], 3),
        "bar": 2.5,
    }
    report["within_bar"] = report["ratio"] <= report["bar"]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
