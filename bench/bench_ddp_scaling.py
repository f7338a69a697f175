"""2-process DDP (gloo, CPU) against one process, in one run: a correctness-and-overhead figure; prints JSON.

SubFore's network, masking and loss from ``subfore_pretrain/configs/train.json``, on one fixed batch
of ``batch`` CT-like crops, masked once (seeded), for ``steps`` AdamW steps from the same start:

- ``single``: one process, ``torch`` threads = ``--threads``, the whole batch per step (the baseline);
- ``ddp``: ``--procs`` processes (``torch.multiprocessing.spawn``, gloo, file rendezvous), one thread
  each, ``batch / procs`` samples per process, gradients averaged by ``DistributedDataParallel``;
- ``reference``: one process, one thread (as each rank), computing what DDP must compute -- the gradient
  of the mean of the per-rank losses of the same sample split -- which the DDP run's first gradient must match.

Figures: ``overhead_ratio`` = DDP seconds per step / single-process seconds per step (median over the
steps after the first; on a CPU with ``procs`` x 1 threads against 1 x ``threads``, 1.0 is no overhead),
and ``relative_grad_error`` = max |g_ddp - g_reference| / max |g_reference| over all parameters, for the
first step (gradients, not weights after several steps: Adam normalises each update, so float noise in a
near-zero gradient becomes a whole step and would hide what is being checked).

    python bench/bench_ddp_scaling.py [--roi 64] [--feature_size 12] [--batch 4] [--steps 5] [--procs 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from timing import subfore_config
from torch.nn.parallel import DistributedDataParallel



def bundle_parts(args: argparse.Namespace) -> tuple[torch.nn.Module, torch.nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(SubFore model, loss, masked batch, voxel mask, images) from the bundle config, identical in every process."""
    from bench_subfore_masking import synthetic_batch

    from common.methods.subfore import SubForeModel

    parser = subfore_config(**{"device": "$torch.device('cpu')", "roi_size": [args.roi] * 3,
                   "feature_size": args.feature_size, "network_def#depths": args.depths, "network_def#window_size": args.window})
    torch.manual_seed(0)
    network = SubForeModel(parser.get_parsed_content("network_def"))
    images = synthetic_batch(args.batch, args.roi, torch.device("cpu"))
    masked, voxel_mask = parser.get_parsed_content("masker")(images)
    return network, parser.get_parsed_content("loss"), masked, voxel_mask, images


def train(network: torch.nn.Module, loss_fn, chunks: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], steps: int, lr: float) -> tuple[list[float], dict]:
    """``steps`` AdamW steps on the mean loss of ``chunks``; returns the seconds of each step and the first gradients."""
    opt = torch.optim.AdamW(network.parameters(), lr=lr)
    times, first_grads = [], {}
    for step in range(steps):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = sum(loss_fn(network(x, mask=m), y) for x, m, y in chunks) / len(chunks)
        loss.backward()
        if step == 0:
            first_grads = {n.removeprefix("module."): p.grad.clone() for n, p in network.named_parameters() if p.grad is not None}
        opt.step()
        times.append(time.perf_counter() - t)
    return times, first_grads


def ddp_worker(rank: int, args: argparse.Namespace, init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=args.procs)
    network, loss_fn, x, m, y = bundle_parts(args)
    part = args.batch // args.procs
    sl = slice(rank * part, (rank + 1) * part)
    times, grads = train(DistributedDataParallel(network), loss_fn, [(x[sl], m[sl], y[sl])], args.steps, args.lr)
    if rank == 0:
        torch.save({"grads": grads, "times": times}, out)
    dist.barrier()
    dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--roi", type=int, default=64)
    ap.add_argument("--feature_size", type=int, default=12)
    ap.add_argument("--depths", type=int, nargs=4, default=[1, 1, 1, 1])
    ap.add_argument("--window", type=int, default=4)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the single process (the DDP run uses 1 per process)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--device", default="cpu", help="ignored: this figure is gloo DDP on the CPU on any machine (the suite passes its device)")
    args = ap.parse_args()
    if args.batch % args.procs:
        raise SystemExit(f"--batch {args.batch} must divide among --procs {args.procs}")
    torch.set_num_threads(args.threads)
    network, loss_fn, x, m, y = bundle_parts(args)
    start = {k: v.clone() for k, v in network.state_dict().items()}
    single_times, _ = train(network, loss_fn, [(x, m, y)], args.steps, args.lr)

    part = args.batch // args.procs
    network.load_state_dict(start)
    torch.set_num_threads(1)  # as in each rank: float sums in another thread split differ by ~1e-4 of the largest gradient
    _, reference = train(network, loss_fn, [(x[i : i + part], m[i : i + part], y[i : i + part]) for i in range(0, args.batch, part)], 1, args.lr)

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "rank0.pt")
        t = time.perf_counter()
        mp.spawn(ddp_worker, args=(args, os.path.join(tmp, "rendezvous"), out), nprocs=args.procs, join=True)
        ddp_wall = time.perf_counter() - t
        ddp = torch.load(out, weights_only=True)
    if ddp["grads"].keys() != reference.keys():
        raise SystemExit(f"DDP and reference gradients differ in parameters: {sorted(ddp['grads'].keys() ^ reference.keys())[:5]}")
    error = max((ddp["grads"][k] - g).abs().max().item() for k, g in reference.items())
    scale = max(g.abs().max().item() for g in reference.values())
    single_s, ddp_s = statistics.median(single_times[1:]), statistics.median(ddp["times"][1:])
    print(json.dumps({
        "benchmark": "ddp_scaling", "device": "cpu", "backend": "gloo", "host": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
        "network": f"SwinUNETR fs{args.feature_size} depths {args.depths} window {args.window}", "roi": args.roi, "batch": args.batch,
        "procs": args.procs, "single_threads": args.threads, "steps": args.steps,
        "single_s_per_step": round(single_s, 4), "ddp_s_per_step": round(ddp_s, 4), "overhead_ratio": round(ddp_s / single_s, 3),
        "ddp_wall_s_incl_startup": round(ddp_wall, 2),
        "max_grad_error": error, "max_grad": scale, "relative_grad_error": error / scale, "parameters_compared": len(reference),
    }, indent=2))


if __name__ == "__main__":
    main()
