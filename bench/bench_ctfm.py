"""CT-FM figures in one run; prints JSON.

- ``embedding``: scans/s of :func:`common.retrieval.embed_scan` on the real CT ``ts_ct_full`` (the
  ctfm_retrieval preprocessing: SPL, 3x1x1 mm, foreground crop, 24x128x128 patches) with the full-size
  SegResEncoder (init_filters 32, blocks_down [1,2,2,4,4], 77.8M parameters), patches batched
  ``--patch_batch`` at a time, against one patch per forward pass (baseline);
- ``step``: one intra-sample contrastive step (views -> encoder -> projection head -> NT-Xent ->
  backward -> AdamW) against one plain forward/backward of the encoder on the same crops (pooled
  features summed as the loss, AdamW); ``ratio`` = contrastive / plain.

    python bench/bench_ctfm.py [--crops 4] [--crop_size 32 128 128] [--repeats 2] [--device cpu] [--skip_embedding]

Needs ../shared/data/ts_ct_full for the embedding figure (left out, with a reason, when absent).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from monai.bundle import ConfigParser
from monai.networks.nets.segresnet_ds import SegResEncoder
from timing import median_time

from common.methods.ctfm import NTXentLoss
from common.methods.ctfm import ContrastiveModel, PooledEncoder
from common.retrieval import embed_scan, patch_embeddings

REPO = Path(__file__).resolve().parent.parent
REAL_CT = REPO.parent / "shared" / "data" / "ts_ct_full" / "example_ct.nii.gz"
FULL = {"spatial_dims": 3, "in_channels": 1, "init_filters": 32, "blocks_down": (1, 2, 2, 4, 4)}


def embedding_figures(device: torch.device, patch_batch: int) -> dict:
    if not REAL_CT.is_file():
        return {"skipped": f"{REAL_CT} not found"}
    parser = ConfigParser()
    parser.read_config(str(REPO / "bundles" / "ctfm_retrieval" / "configs" / "inference.json"))
    parser.update({"bundle_root": str(REPO / "bundles" / "ctfm_retrieval")})
    t = time.perf_counter()
    image = torch.as_tensor(parser.get_parsed_content("preprocessing")({"image": str(REAL_CT)})["image"])
    preprocess_s = time.perf_counter() - t
    patch = tuple(parser.get_parsed_content("patch_size"))
    torch.manual_seed(0)
    embedder = PooledEncoder(SegResEncoder(**FULL)).to(device).eval()
    with torch.inference_mode():
        n_patches = patch_embeddings(embedder, image, patch, patch_batch).shape[0]
    batched = median_time(lambda: embed_scan(embedder, image, patch, "min", patch_batch), 1, device)
    single = median_time(lambda: embed_scan(embedder, image, patch, "min", 1), 1, device)
    return {
        "scan": str(REAL_CT.relative_to(REPO.parent)), "preprocessed_shape": list(image.shape), "patches": n_patches,
        "preprocess_s": round(preprocess_s, 3), "embed_s": round(batched, 3), "scans_per_s": round(1 / batched, 4),
        "scans_per_s_including_preprocessing": round(1 / (batched + preprocess_s), 4),
        "baseline_one_patch_per_pass_s": round(single, 3), "speedup_vs_one_patch": round(single / batched, 3),
    }


def step_figures(device: torch.device, crops: int, crop_size: list[int], repeats: int) -> dict:
    torch.manual_seed(0)
    views = torch.rand(1, 2, crops, 1, *crop_size, device=device)  # one scan, two views of each crop
    model = ContrastiveModel(SegResEncoder(**FULL)).to(device)
    loss_fn = NTXentLoss(0.1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-6)

    def contrastive() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(model(views)).backward()
        opt.step()

    def plain() -> None:
        opt.zero_grad(set_to_none=True)
        model.pool(views.flatten(0, 2)).sum().backward()
        opt.step()

    plain_s = median_time(plain, repeats, device)
    contrastive_s = median_time(contrastive, repeats, device)
    return {"views": 2 * crops, "crop_size": crop_size, "plain_s": round(plain_s, 3), "contrastive_s": round(contrastive_s, 3), "ratio": round(contrastive_s / plain_s, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crops", type=int, default=4, help="crops per scan for the step figure (the bundle's default is 15)")
    ap.add_argument("--crop_size", type=int, nargs=3, default=[32, 128, 128])
    ap.add_argument("--patch_batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--skip_embedding", action="store_true")
    args = ap.parse_args()
    device = torch.device(args.device)
    result = {
        "benchmark": "ctfm", "device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
        "encoder_parameters_m": round(sum(p.numel() for p in SegResEncoder(**FULL).parameters()) / 1e6, 2),
        "step": step_figures(device, args.crops, args.crop_size, args.repeats),
    }
    if not args.skip_embedding:
        result["embedding"] = embedding_figures(device, args.patch_batch)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
