"""Training memory of SubFore's SwinUNETR with and without ``gradient_checkpointing``, in one run; prints JSON.

On any machine (no GPU needed): the network of ``subfore_pretrain/configs/train.json`` at the given size
runs one forward pass on PyTorch's ``meta`` device (shapes only, no arithmetic, well under a second for
SwinUNETR-48 at 4 x 96^3) while a ``saved_tensors_hooks`` pair records every tensor autograd keeps for
the backward pass -- the activation memory of a training step, counted per storage. Adding the
parameters four times (weights, gradients, AdamW's two moments) gives ``estimated_gib``, the floor of
what a step needs; it counts fp32 activations (with bf16 autocast the matmul inputs are kept at half
size, so the real figure is lower) and leaves out the allocator's and cuDNN's workspace.

On a GPU (``--device cuda``) it also runs one real AMP training step per setting and reports
``torch.cuda.max_memory_allocated`` (``peak_gib``).

    python bench/bench_training_memory.py [--feature_size 48] [--roi 96] [--batch 4] [--budget_gib 24] [--device cpu]
"""

from __future__ import annotations

import argparse
import json

import torch
from timing import subfore_config

GIB = 2**30


def bundle_network(feature_size: int, checkpointing: bool) -> torch.nn.Module:
    parser = subfore_config(feature_size=feature_size, gradient_checkpointing=checkpointing)
    return parser.get_parsed_content("network_def")


def saved_activation_bytes(network: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes of the distinct storages autograd saves for backward during ``network(x)`` (train mode)."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[storage._cdata] = storage.nbytes()  # one entry per storage: views of a kept tensor cost nothing more
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        network.train()(x)
    return sum(storages.values())


def gpu_peak_bytes(network: torch.nn.Module, x: torch.Tensor) -> int:
    """``max_memory_allocated`` over one AMP (bf16 where supported) AdamW step of the masked-L1 kind."""
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    network = network.cuda()
    opt = torch.optim.AdamW(network.parameters())
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    for _ in range(2):  # the second step holds the optimizer state too
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=dtype):
            loss = (network(x) - x).abs().mean()
        loss.backward()
        opt.step()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--feature_size", type=int, default=48)
    ap.add_argument("--roi", type=int, default=96)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--budget_gib", type=float, default=24.0, help="the GPU memory the setting must fit (the issue's 24 GB card)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    shape = (args.batch, 1, args.roi, args.roi, args.roi)
    report: dict = {"benchmark": "training_memory", "network": f"SwinUNETR fs{args.feature_size} (use_v2)", "roi": args.roi, "batch": args.batch,
                    "budget_gib": args.budget_gib, "device": args.device, "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None}
    for checkpointing in (False, True):
        network = bundle_network(args.feature_size, checkpointing)
        param_bytes = sum(p.numel() * p.element_size() for p in network.parameters())
        activations = saved_activation_bytes(network.to("meta"), torch.empty(shape, device="meta"))
        key = "checkpointing" if checkpointing else "plain"
        report[key] = {"saved_activations_gib": round(activations / GIB, 3), "parameters_gib": round(param_bytes / GIB, 3),
                       "estimated_gib": round((activations + 4 * param_bytes) / GIB, 3)}
        if args.device.startswith("cuda"):
            x = torch.rand(shape, device="cuda")
            try:
                report[key]["peak_gib"] = round(gpu_peak_bytes(bundle_network(args.feature_size, checkpointing), x) / GIB, 3)
            except torch.OutOfMemoryError:
                report[key]["peak_gib"] = None
            torch.cuda.empty_cache()
    report["checkpointing_activation_ratio"] = round(report["checkpointing"]["saved_activations_gib"] / report["plain"]["saved_activations_gib"], 3)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
