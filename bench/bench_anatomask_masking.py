r"""AnatoMask mask generation (Algorithm 1): vectorized version against a per-sample NumPy loop; prints JSON.

All draw the random initial mask, rank the initially masked patches by the teacher's per-patch loss,
keep the top ``ceil(r_t * n)`` and fill randomly up to ``ceil(gamma * n)``, on the same losses:

- ``vectorized_s``: :func:`common.methods.anatomask.anatomical_mask` on the device (this project);
- ``per_sample_numpy_s``: a loop over the batch with NumPy argsort / ``setdiff1d`` /
  ``np.random.choice`` per sample, with the host round trip (an efficient per-sample baseline);
- ``algorithm1_python_s``: Algorithm 1 transcribed as the paper writes it, per sample and per patch
  (sorted list of regions, top ``p`` added one by one, random regions drawn one by one from
  ``G \ (M_top U M_random)``).

``speedup_*`` is baseline / vectorized (the issue's goal: at least 50x on CPU). With ``--step``, one
full AnatoMask training step (teacher pass, mask, student pass, loss, backward, AdamW, EMA) of a
``DynUNet`` with ``--filters`` on the same batch is timed too, and ``mask_fraction_of_step`` reported
(goal: under 2 %).

    python bench/bench_anatomask_masking.py [--batch 4] [--patches 392] [--repeats 50] [--device cpu] [--step --filters 8 16 32 64 128]
"""

from __future__ import annotations

import argparse
import json
import math
import platform

import numpy as np
import torch
from timing import median_time

from common.methods.anatomask import anatomical_mask, random_patch_mask


def loop_anatomask(losses: torch.Tensor, gamma: float, r_t: float, rng: np.random.Generator) -> torch.Tensor:
    """Per-sample baseline of Algorithm 1 (host NumPy), returning the same kind of ``(B, n)`` mask."""
    batch, n = losses.shape
    host = losses.detach().cpu().numpy()
    total, p = math.ceil(gamma * n), math.ceil(r_t * n)
    out = np.zeros((batch, n), dtype=bool)
    for b in range(batch):
        initial = rng.choice(n, size=total, replace=False)
        order = initial[np.argsort(-host[b, initial])]
        top = order[:p]
        rest = np.setdiff1d(np.arange(n), top)
        fill = rng.choice(rest, size=total - p, replace=False)
        out[b, top] = True
        out[b, fill] = True
    return torch.from_numpy(out).to(losses.device)


def algorithm1_python(losses: torch.Tensor, gamma: float, r_t: float, rng: np.random.Generator) -> torch.Tensor:
    """Algorithm 1 line by line, per sample: Python lists and sets, one region at a time."""
    batch, n = losses.shape
    host = losses.detach().cpu().tolist()
    total, p = math.ceil(gamma * n), math.ceil(r_t * n)
    out = torch.zeros(batch, n, dtype=torch.bool)
    for b in range(batch):
        initial = set(rng.choice(n, size=total, replace=False).tolist())
        ranked = sorted(initial, key=lambda k: -host[b][k])  # for k in argsort(L_rec): g'_i <- g_k
        top = set()
        for i in range(p):  # select top p regions
            top.add(ranked[i])
        chosen = set(top)
        for _ in range(total - p):  # randomly sample regions from G \ (M_top U M_random)
            remaining = [g for g in range(n) if g not in chosen]
            chosen.add(remaining[int(rng.integers(len(remaining)))])
        out[b, sorted(chosen)] = True
    return out.to(losses.device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--patches", type=int, default=392, help="7 x 7 x 8 for 112 x 112 x 128 in 16^3 patches")
    ap.add_argument("--gamma", type=float, default=0.6)
    ap.add_argument("--r_t", type=float, default=0.25)
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--step", action="store_true", help="also time one training step at 112 x 112 x 128")
    ap.add_argument("--filters", type=int, nargs=5, default=[32, 64, 128, 256, 512])
    ap.add_argument("--step_repeats", type=int, default=3)
    args = ap.parse_args()
    device = torch.device(args.device)
    losses = torch.rand(args.batch, args.patches, device=device)
    rng = np.random.default_rng(0)

    def vectorized():
        initial = random_patch_mask(args.batch, args.patches, args.gamma, device=device, count_rule="algorithm1")
        return anatomical_mask(losses, initial, args.gamma, args.r_t, count_rule="algorithm1")  # the baselines count as Algorithm 1

    def baseline():
        return loop_anatomask(losses, args.gamma, args.r_t, rng)

    def literal():
        return algorithm1_python(losses, args.gamma, args.r_t, rng)

    a, b, c = vectorized(), baseline(), literal()
    assert a.shape == b.shape == c.shape and (a.sum(1) == b.sum(1)).all() and (a.sum(1) == c.sum(1)).all()  # same counts
    t_vec = median_time(vectorized, args.repeats, device)
    t_loop = median_time(baseline, args.repeats, device)
    t_literal = median_time(literal, max(3, args.repeats // 10), device)
    report = {
        "benchmark": "anatomask_mask_generation",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "batch": args.batch,
        "patches": args.patches,
        "gamma": args.gamma,
        "r_t": args.r_t,
        "repeats": args.repeats,
        "vectorized_s": t_vec,
        "per_sample_numpy_s": t_loop,
        "algorithm1_python_s": t_literal,
        "speedup_vs_numpy_loop": round(t_loop / t_vec, 1),
        "speedup_vs_algorithm1_python": round(t_literal / t_vec, 1),
        "goal_speedup": 50,
    }
    if args.step:
        report.update(time_step(args, device))
        report["mask_fraction_of_step"] = round(t_vec / report["step_s"], 5)
    print(json.dumps(report, indent=2))


def time_step(args, device: torch.device) -> dict:
    """One AnatoMask step (r_t = 0.25, so the teacher pass runs) on a batch of 112 x 112 x 128 volumes."""
    from monai.networks.nets import DynUNet

    from common.methods.anatomask import AnatoMaskLoss
    from common.methods.anatomask import AnatoMaskModel

    net = DynUNet(3, 1, 1, kernel_size=[3] * 5, strides=[1, 2, 2, 2, 2], upsample_kernel_size=[2] * 4, filters=args.filters, res_block=True, norm_name="instance")
    model = AnatoMaskModel(net, total_steps=4).to(device).train()
    model.steps_done.fill_(2)
    images = torch.randn(args.batch, 1, 112, 112, 128, device=device)
    loss_fn = AnatoMaskLoss()
    opt = torch.optim.AdamW(model.student.parameters(), lr=1e-4, weight_decay=1e-5)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, enabled=device.type == "cuda"):
            loss = loss_fn(model(images), images)
        loss.backward()
        opt.step()
        model.update_teacher(0.999)
        model.steps_done.fill_(2)

    return {"step_s": median_time(step, args.step_repeats, device), "step_filters": args.filters}


if __name__ == "__main__":
    main()
