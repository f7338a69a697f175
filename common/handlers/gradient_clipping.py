"""Gradient-norm clipping inside MONAI's ``SupervisedTrainer`` step (which has no clipping option).

The trainer fires ``IterationEvents.BACKWARD_COMPLETED`` after ``loss.backward()`` and before
``optimizer.step()``; this handler clips there. With AMP the gradients are unscaled first, so the
threshold applies to the true gradients (``GradScaler.step`` then skips its own unscale).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from ignite.engine import Engine
from monai.engines.utils import IterationEvents


class GradientClipping:
    """Clip the global gradient norm of ``parameters`` to ``max_norm`` every iteration.

    Args:
        parameters: what to clip (the optimiser's parameters).
        max_norm: threshold of the total norm (AnatoMask: 12).
        norm_type: p of the p-norm.
    """

    def __init__(self, parameters: Iterable[torch.nn.Parameter], max_norm: float, norm_type: float = 2.0) -> None:
        self.parameters = [p for p in parameters if p.requires_grad]
        self.max_norm = max_norm
        self.norm_type = norm_type
        self.last_norm: torch.Tensor | None = None  # before clipping (for logging)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(IterationEvents.BACKWARD_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        scaler = getattr(engine, "scaler", None)
        if getattr(engine, "amp", False) and scaler is not None:
            scaler.unscale_(engine.optimizer)
        self.last_norm = torch.nn.utils.clip_grad_norm_(self.parameters, self.max_norm, norm_type=self.norm_type)
