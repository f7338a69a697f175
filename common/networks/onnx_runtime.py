"""An ``nn.Module`` that runs an ONNX model in ONNX Runtime, for the bundles' ``inference_onnx.json``.

``inference_onnx.json`` swaps :class:`OnnxRuntimeNetwork` in for ``network``; every other part of a
bundle's inference (preprocessing, sliding window, inversion, writing) stays the same. The ``.onnx``
file comes from ``python -m common.zoo.onnx <bundle>`` (export checked against PyTorch).
Upstream gap: MONAI runs ONNX only through TensorRT (``trt_compile``); there is no ONNX Runtime
network to hand to its inferers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

logger = logging.getLogger(__name__)


def _providers(providers: Sequence[str] | None) -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if providers:
        missing = [p for p in providers if p not in available]
        if missing:
            raise ValueError(f"ONNX Runtime providers {missing} are not available here (available: {available})")
        return list(providers)
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


class OnnxRuntimeNetwork(nn.Module):
    """``forward(x)`` runs ``path`` in ONNX Runtime: ``(B, C, *roi)`` float tensor -> the model's first
    output as a tensor on ``x``'s device. Inference only (no gradients, no parameters).

    Args:
        path: the ``.onnx`` file (from :func:`common.zoo.onnx.export_onnx`).
        providers: ONNX Runtime execution providers; default CUDA when available, then CPU.
    """

    def __init__(self, path: str | os.PathLike, providers: Sequence[str] | None = None) -> None:
        super().__init__()
        import onnxruntime as ort

        if not Path(path).is_file():
            raise FileNotFoundError(f"ONNX model {path} does not exist: export it first with "
                                    f"'python -m common.zoo.onnx <bundle> --output {path}'")
        self.path = str(path)
        self.session = ort.InferenceSession(self.path, providers=_providers(providers))
        self.input_name = self.session.get_inputs()[0].name
        logger.info(f"{self.path}: running in ONNX Runtime ({', '.join(self.session.get_providers())})")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {self.input_name: x.detach().float().cpu().numpy()})[0]
        return torch.from_numpy(out).to(x.device)
