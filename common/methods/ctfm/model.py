"""CT-FM's networks around MONAI's ``SegResEncoder``: the pooled embedder, and the SimCLR projection
model and the classifier as heads on it.

All keep the encoder under the attribute ``encoder``, as ``SegResNetDS`` does, so the exported
``encoder.*`` tensors load into the segmentation network, the classifier and the retrieval tool
without renaming; CT-FM's own ``backbone.*`` checkpoints are re-prefixed by
:func:`common.networks.load_pretrained`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from common.engines.method_output import MethodOutput


class PooledEncoder(nn.Module):
    """``encoder`` followed by global average pooling: ``(N, C, D, H, W) -> (N, F)``; the retrieval embedder."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def pool(self, images: torch.Tensor) -> torch.Tensor:
        """Global-average-pooled deepest feature map: ``(N, C, D, H, W)`` -> ``(N, F)``
        (``F = init_filters * 2**(levels-1)``, 512 for CT-FM). A method, not a function taking the
        encoder, so that TorchScript can compile every model built on it."""
        return self.encoder(images)[-1].mean(dim=(2, 3, 4))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.pool(images)


class ProjectionHead(nn.Sequential):
    """CT-FM's SimCLR head on pooled features: ``Linear(in, hidden), ReLU, Linear(hidden, out)``; ``(N, in) -> (N, out)``."""

    def __init__(self, in_features: int = 512, hidden_features: int = 256, out_features: int = 128) -> None:
        super().__init__(nn.Linear(in_features, hidden_features), nn.ReLU(inplace=True), nn.Linear(hidden_features, out_features))


class ContrastiveModel(PooledEncoder):
    """Encoder + projection head for intra-sample SimCLR.

    ``forward(views)`` takes ``(B, 2, K, C, D, H, W)`` (two views of ``K`` crops of each of ``B`` scans,
    :class:`common.methods.ctfm.IntraSampleViewsd`) and returns a :class:`common.engines.MethodOutput` with the
    projections ``view1`` and ``view2``, each ``(B, K, out)``, the input of :class:`common.methods.ctfm.NTXentLoss`. A plain batch ``(N, C, D, H, W)`` gives its
    projections ``(N, out)`` (what the bundle verifier and TorchScript export see).

    ``bn_batches`` says what one batch-normalisation batch holds: ``"all_views"`` runs the ``2BK``
    views as one batch; ``"per_view"`` runs each (view, crop) as its own batch of the ``B`` scans, as
    the reference forwards each crop's view separately (``models/frameworks/utils.py``,
    ``sequence_forward``), so the statistics never mix crops or views.
    """

    def __init__(self, encoder: nn.Module, head: nn.Module | None = None, bn_batches: str = "all_views") -> None:
        super().__init__(encoder)
        if bn_batches not in ("all_views", "per_view"):
            raise ValueError(f"bn_batches must be 'all_views' or 'per_view', got {bn_batches!r}")
        self.head = head if head is not None else ProjectionHead()
        self.per_view = bn_batches == "per_view"

    def forward(self, views: torch.Tensor) -> Any:
        if views.dim() == 5:
            return self.head(self.pool(views))
        return self.view_pairs(views)

    @torch.jit.unused  # training only: TorchScript (the Zoo's export) compiles the plain-batch path above
    def view_pairs(self, views):  # noqa: ANN001, ANN201 (TorchScript cannot resolve postponed annotations on an unused method)
        """``(B, 2, K, C, D, H, W)`` views -> ``MethodOutput(view1, view2)``, each ``(B, K, out)``."""
        if views.dim() != 7 or views.shape[1] != 2:
            raise ValueError(f"expected views of shape (B, 2, K, C, D, H, W), got {tuple(views.shape)}")
        b, _, k = views.shape[:3]
        if self.per_view:  # 2K forwards of B scans each (the reference's grouping), not one of 2BK
            z = torch.stack([self.head(self.pool(views[:, v, c])) for v in range(2) for c in range(k)], dim=1)  # (B, 2K, out)
        else:
            z = self.head(self.pool(views.flatten(0, 2)))  # (B*2*K, out)
        z = z.view(b, 2, k, -1)
        return MethodOutput(view1=z[:, 0], view2=z[:, 1])


class EncoderClassifier(PooledEncoder):
    """Encoder + MLP head for (multi-label) classification: ``(B, C, D, H, W) -> (B, num_classes)`` logits.

    The head is ``Linear(F, hidden), ReLU, Dropout, Linear(hidden, num_classes)`` on pooled features;
    train it with ``BCEWithLogitsLoss``.
    """

    def __init__(self, encoder: nn.Module, num_classes: int, in_features: int = 512, hidden_features: int = 256, dropout: float = 0.2) -> None:
        super().__init__(encoder)
        self.head = nn.Sequential(
            nn.Linear(in_features, hidden_features), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden_features, num_classes)
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(images))
