"""ONNX export of a bundle's network, checked against PyTorch with ONNX Runtime, and an ONNX Runtime
network for the bundles' own inference workflows.

- :func:`export_onnx` builds ``network_def`` from the bundle's ``inference.json`` (else
  ``train.json``) with the bundle's weights, exports it with MONAI's ``convert_to_onnx`` (the
  TorchScript-based ``torch.onnx`` exporter, opset 17, batch axis dynamic, spatial size fixed at the
  sliding-window ROI, or the metadata's input size for whole-image networks), then runs ONNX Runtime
  and PyTorch on the same random batch of two and reports the largest absolute and relative
  difference; beyond ``atol + rtol * |pytorch|`` anywhere is an error. Tolerance: ``atol`` 1e-3,
  ``rtol`` 1e-3 on logits (float32; measured differences are around 1e-5, see the bundles' docs).
- :class:`common.networks.onnx_runtime.OnnxRuntimeNetwork` (runtime code, vendored with exported
  bundles; this module is tooling) runs the result inside the bundles' ``inference_onnx.json``.

Command::

    python -m common.zoo.onnx bundles/btcv_finetune [--weights models/model.pt] [--output models/model.onnx]

Upstream gap: MONAI's ``onnx_export`` bundle command exports and (optionally) compares once at the
export input; it neither checks a second batch size nor offers a network object that runs the
result inside a bundle workflow.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.cli import command, value_list
from common.networks.onnx_runtime import OnnxRuntimeNetwork
from common.networks.pretrained import read_state_dict

logger = logging.getLogger(__name__)

OPSET = 17
ATOL = 1e-3
RTOL = 1e-3


class OnnxAgreementError(RuntimeError):
    """ONNX Runtime's output differs from PyTorch's beyond the tolerance."""


def _parser(bundle: Path, configs: Sequence[str], overrides: Mapping[str, Any]):
    from monai.bundle import ConfigParser

    base = bundle / "configs" / ("inference.json" if (bundle / "configs" / "inference.json").is_file() else "train.json")
    parser = ConfigParser()
    parser.read_config([str(base), *(str(bundle / "configs" / c) if not Path(c).is_absolute() else c for c in configs)])
    parser["bundle_root"] = str(bundle)
    parser["device"] = "$torch.device('cpu')"
    if "pretrained" in parser:
        parser["pretrained"] = ""
    for k, v in overrides.items():
        parser[k] = v
    return parser


def input_shape(parser: Any, bundle: Path) -> list[int]:
    """``[1, C, *spatial]``: the sliding-window ROI when the bundle has one, else the metadata's input size."""
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    image = next(iter(meta["network_data_format"]["inputs"].values()))
    spatial = list(parser["roi_size"]) if "roi_size" in parser else list(image["spatial_shape"])
    channels = int(parser.get_parsed_content("in_channels")) if "in_channels" in parser else int(image["num_channels"])
    return [1, channels, *(int(s) for s in spatial)]


def export_onnx(
    bundle: str | os.PathLike, weights: str | None = None, output: str | os.PathLike | None = None, configs: Sequence[str] = (),
    overrides: Mapping[str, Any] | None = None, atol: float = ATOL, rtol: float = RTOL, seed: int = 0,
) -> dict[str, Any]:
    """Export ``bundle``'s network with ``weights`` (default ``models/model.pt``; ``""``: random
    initialisation, for structural checks) to ``output`` (default ``models/model.onnx``) and check ONNX
    Runtime against PyTorch on a batch of two. Returns the report (also written as ``<output>.json``).

    Raises:
        FileNotFoundError: no weights file where one was asked for.
        OnnxAgreementError: outputs differ beyond ``atol + rtol * |pytorch|``.
    """
    from monai.networks.utils import convert_to_onnx

    bundle = Path(bundle).resolve()
    parser = _parser(bundle, configs, overrides or {})
    torch.manual_seed(seed)
    net = parser.get_parsed_content("network_def").eval()
    weights = str(bundle / "models" / "model.pt") if weights is None else weights
    if weights:
        if not Path(weights).is_file():
            raise FileNotFoundError(f"weights {weights} not found: train the bundle first, or pass --weights")
        net.load_state_dict(read_state_dict(weights))  # unwraps checkpoints ({"model": ...}) and DDP's module. as the bundles' loader does
    output = Path(output) if output else bundle / "models" / "model.onnx"
    output.parent.mkdir(parents=True, exist_ok=True)
    shape = input_shape(parser, bundle)
    start = time.perf_counter()
    convert_to_onnx(net, [torch.rand(*shape)], input_names=["image"], output_names=["pred"],
                    dynamic_axes={"image": {0: "batch"}, "pred": {0: "batch"}}, opset_version=OPSET, filename=str(output),
                    use_trace=True, dynamo=False)
    seconds = time.perf_counter() - start
    x = torch.rand(2, *shape[1:], generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref = net(x)
    ref = (ref if isinstance(ref, torch.Tensor) else ref[0]).numpy()
    got = OnnxRuntimeNetwork(output, providers=["CPUExecutionProvider"])(x).numpy()
    diff = np.abs(got - ref)
    report = {"bundle": bundle.name, "network": type(net).__name__, "onnx": str(output), "weights": weights or "random initialisation",
              "input_shape": ["batch", *shape[1:]], "opset": OPSET, "export_seconds": round(seconds, 2),
              "max_abs_diff": float(diff.max()), "max_abs_output": float(np.abs(ref).max()), "atol": atol, "rtol": rtol,
              "agrees": bool(np.all(diff <= atol + rtol * np.abs(ref)))}
    Path(f"{output}.json").write_text(json.dumps(report, indent=1))
    if not report["agrees"]:
        raise OnnxAgreementError(f"{output}: ONNX Runtime differs from PyTorch by up to {report['max_abs_diff']:.3g} "
                                 f"(tolerance {atol} + {rtol} x |output|)")
    logger.info(f"{output}: exported {report['network']}, ONNX Runtime agrees with PyTorch (max |diff| {report['max_abs_diff']:.2e})")
    return report


def main(bundle: str, weights: str | None = None, output: str | None = None, configs: Sequence[str] = ()) -> int:
    """Export a bundle's network to ONNX and check it against PyTorch with ONNX Runtime; print the report as JSON.

    Args:
        bundle: the bundle folder.
        weights: weights file (default ``<bundle>/models/model.pt``; ``''`` for random initialisation).
        output: the ``.onnx`` file (default ``<bundle>/models/model.onnx``).
        configs: a config overlay of the bundle, or a list of them (``demo.json`` for the demo network).
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    print(json.dumps(export_onnx(bundle, weights, output, value_list(configs)), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(command(main))
