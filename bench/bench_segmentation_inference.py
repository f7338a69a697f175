"""btcv_finetune inference end to end against a plain ``sliding_window_inference`` call, in one run; prints JSON.

On one full real CT (``../shared/data/ts_ct_full``, 122x101x112 at 3 mm) with the tiny SwinUNETR
(feature_size 12, depths 1, window 4; random weights -- the cost does not depend on them):

- ``bundle_s``: ``inference.json``'s evaluator run for the case: read NIfTI, orient, resample,
  window, crop, sliding-window inference, argmax, invert to the input grid, write the label map;
- ``plain_sw_s``: MONAI's ``sliding_window_inference`` on the already preprocessed tensor with the
  same network, ROI, overlap and blending (what the bundle adds nothing to);
- ``overhead_ratio`` = bundle_s / plain_sw_s (1.0 would mean pre/post-processing is free);
- ``onnx_sw_s`` (CPU only): the same sliding window with the network exported to ONNX
  (``common.zoo.onnx.export_onnx``) and run by ONNX Runtime's CPU provider (what
  ``inference_onnx.json`` does), against ``plain_sw_s`` in PyTorch.

    python bench/bench_segmentation_inference.py [--pixdim 3.0] [--roi 96] [--overlap 0.5] [--repeats 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import torch
from monai.bundle import ConfigParser
from monai.inferers import sliding_window_inference
from timing import median_time

REPO = Path(__file__).resolve().parent.parent
CT = REPO.parent / "shared" / "data" / "ts_ct_full" / "example_ct.nii.gz"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", default=str(CT))
    ap.add_argument("--pixdim", type=float, default=3.0, help="resampling spacing (mm); 3.0 is the scan's own, the bundle default is 1.5")
    ap.add_argument("--roi", type=int, default=96)
    ap.add_argument("--overlap", type=float, default=0.5)
    ap.add_argument("--sw_batch_size", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--full_size", action="store_true", help="SwinUNETR feature_size 48 (the bundle default) instead of the tiny net")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    if not Path(args.image).is_file():
        raise SystemExit(f"image not found: {args.image} (the real CT lives in ../shared/data)")
    device = torch.device(args.device)
    tmp = Path(tempfile.mkdtemp(prefix="bench_inference_"))
    datalist = tmp / "datalist.json"
    datalist.write_text(json.dumps({"test": [{"image": args.image}]}))
    overrides = {
        "bundle_root": str(tmp), "datalist": str(datalist), "datalist_keys": ["test"], "overwrite": True,
        "pixdim": [args.pixdim] * 3, "roi_size": [args.roi] * 3, "sw_overlap": args.overlap, "sw_batch_size": args.sw_batch_size,
        "num_workers": 0, "device": f"$torch.device('{args.device}')", "amp": device.type == "cuda",
    }
    if not args.full_size:
        overrides.update({"feature_size": 12, "network_def#depths": [1, 1, 1, 1], "network_def#window_size": 4})
    parser = ConfigParser()
    parser.read_config(str(REPO / "bundles" / "btcv_finetune" / "configs" / "inference.json"))
    parser.update(overrides)
    torch.manual_seed(0)
    net = parser.get_parsed_content("network")
    (tmp / "models").mkdir()
    torch.save(net.state_dict(), tmp / "models" / "model.pt")
    evaluator = parser.get_parsed_content("evaluator")
    bundle_s = median_time(evaluator.run, args.repeats, device)

    x = parser.get_parsed_content("preprocessing")({"image": args.image})["image"][None].to(device)
    net.eval()

    def plain() -> None:
        with torch.no_grad(), torch.autocast(device.type, enabled=device.type == "cuda"):
            sliding_window_inference(x, [args.roi] * 3, args.sw_batch_size, net, overlap=args.overlap, mode="gaussian")

    plain_s = median_time(plain, args.repeats, device)
    onnx_s = None
    if device.type == "cpu":
        from common.networks.onnx_runtime import OnnxRuntimeNetwork
        from common.zoo.onnx import export_onnx

        net_overrides = {k: v for k, v in overrides.items() if k.startswith("network_def") or k in ("feature_size", "roi_size")}
        export_onnx(REPO / "bundles" / "btcv_finetune", weights=str(tmp / "models" / "model.pt"), output=tmp / "model.onnx", overrides=net_overrides)
        ort_net = OnnxRuntimeNetwork(tmp / "model.onnx", providers=["CPUExecutionProvider"])

        def onnx() -> None:
            sliding_window_inference(x, [args.roi] * 3, args.sw_batch_size, ort_net, overlap=args.overlap, mode="gaussian")

        onnx_s = median_time(onnx, args.repeats, device)
    out = next((tmp / "eval" / "predictions").glob("*.nii.gz"))
    print(json.dumps({
        "benchmark": "btcv_finetune inference.json vs plain sliding_window_inference",
        "image": args.image, "preprocessed_shape": list(x.shape[2:]), "pixdim": args.pixdim, "roi": args.roi, "overlap": args.overlap,
        "network": "SwinUNETR fs48" if args.full_size else "SwinUNETR fs12 depths 1 window 4",
        "device": str(device), "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
        "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
        "bundle_s": round(bundle_s, 3), "plain_sw_s": round(plain_s, 3), "overhead_ratio": round(bundle_s / plain_s, 3),
        "onnx_sw_s": round(onnx_s, 3) if onnx_s is not None else None,
        "prediction": str(out.name), "repeats": args.repeats,
    }, indent=2))


if __name__ == "__main__":
    main()
