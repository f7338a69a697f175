"""btcv_finetune's sliding window with TensorRT (MONAI's ``trt_compile``) against PyTorch AMP, in one run; prints JSON.

On the real full CT (``../shared/data/ts_ct_full``) preprocessed by ``btcv_finetune/configs/inference.json``
at ``--pixdim`` with the bundle's network at full size (SwinUNETR feature_size 48; random weights, so the
figure is the engine's, not a trained model's -- agreement is measured on the logits this network gives):

- ``torch_sw_s``: ``sliding_window_inference`` with the PyTorch network under autocast (what
  ``inference.json`` runs with ``amp`` on a GPU);
- ``trt_sw_s``: the same call with the network wrapped by ``monai.networks.trt_compile`` (ONNX export ->
  TensorRT engine of ``--precision``, batch ``--sw_batch_size``; built once, its build time reported as
  ``trt_build_s``);
- agreement: ``label_disagreement`` (share of voxels whose argmax label differs), ``max_abs_logit_diff``
  and the per-label Dice between the two label maps (MONAI's ``compute_dice``).

Needs CUDA, TensorRT and polygraphy (``trt_compile``'s own needs); without them it exits with the reason,
which the suite lists as "not run".

    python bench/bench_tensorrt.py [--pixdim 1.5] [--precision fp16] [--sw_batch_size 4] [--repeats 3] [--device cuda]
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import tempfile
import time
from pathlib import Path

import torch
from monai.bundle import ConfigParser
from monai.inferers import sliding_window_inference
from monai.metrics import compute_dice
from monai.networks.utils import one_hot
from timing import median_time

REPO = Path(__file__).resolve().parent.parent
CT = REPO.parent / "shared" / "data" / "ts_ct_full" / "example_ct.nii.gz"
INFERENCE = REPO / "bundles" / "btcv_finetune" / "configs" / "inference.json"


def missing_requirements(device: str) -> str | None:
    """Why ``trt_compile`` cannot run here, or None."""
    if not device.startswith("cuda") or not torch.cuda.is_available():
        return "TensorRT needs a CUDA device"
    absent = [m for m in ("tensorrt", "polygraphy", "onnx") if importlib.util.find_spec(m) is None]
    return f"not installed on this machine: {', '.join(absent)} (trt_compile's requirements)" if absent else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--image", default=str(CT))
    ap.add_argument("--pixdim", type=float, default=1.5)
    ap.add_argument("--roi", type=int, default=96)
    ap.add_argument("--sw_batch_size", type=int, default=4)
    ap.add_argument("--precision", choices=("fp32", "tf32", "fp16", "bf16"), default="fp16")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    reason = missing_requirements(args.device)
    if reason:
        raise SystemExit(reason)
    if not Path(args.image).is_file():
        raise SystemExit(f"image not found: {args.image} (the real CT lives in ../shared/data)")
    from monai.networks import trt_compile

    device = torch.device(args.device)
    parser = ConfigParser()
    parser.read_config(str(INFERENCE))
    parser.update({"bundle_root": tempfile.mkdtemp(prefix="bench_trt_"), "pixdim": [args.pixdim] * 3, "roi_size": [args.roi] * 3})
    torch.manual_seed(0)
    net = parser.get_parsed_content("network").to(device).eval()
    x = parser.get_parsed_content("preprocessing")({"image": args.image})["image"][None].to(device)
    roi = [args.roi] * 3

    def window(model) -> torch.Tensor:
        with torch.no_grad(), torch.autocast("cuda", enabled=model is net):
            return sliding_window_inference(x, roi, args.sw_batch_size, model, overlap=0.5, mode="gaussian").float()

    torch_s = median_time(lambda: window(net), args.repeats, device)
    reference = window(net)

    plan_dir = Path(tempfile.mkdtemp(prefix="trt_plan_"))
    trt_net = trt_compile(copy.deepcopy(net), str(plan_dir / "model"),
                          args={"precision": args.precision, "dynamic_batchsize": [1, args.sw_batch_size, args.sw_batch_size]})
    t = time.perf_counter()
    window(trt_net)  # builds the engine
    torch.cuda.synchronize()
    build_s = time.perf_counter() - t
    trt_s = median_time(lambda: window(trt_net), args.repeats, device)
    result = window(trt_net)

    n = reference.shape[1]
    ref_label, trt_label = reference.argmax(1, keepdim=True), result.argmax(1, keepdim=True)
    dice = compute_dice(one_hot(trt_label, n), one_hot(ref_label, n), include_background=False, ignore_empty=False)[0]
    print(json.dumps({
        "benchmark": "tensorrt", "gpu": torch.cuda.get_device_name(0), "image": args.image, "preprocessed_shape": list(x.shape[2:]),
        "network": "SwinUNETR fs48 (random weights)", "precision": args.precision, "sw_batch_size": args.sw_batch_size, "repeats": args.repeats,
        "torch_sw_s": round(torch_s, 4), "trt_sw_s": round(trt_s, 4), "trt_build_s": round(build_s, 1), "speedup": round(torch_s / trt_s, 3),
        "label_disagreement": float((ref_label != trt_label).float().mean()), "max_abs_logit_diff": float((reference - result).abs().max()),
        "dice_per_label": [round(float(d), 4) for d in dice.nan_to_num(1.0)],
    }, indent=2))


if __name__ == "__main__":
    main()
