"""NT-Xent (SimCLR's normalised temperature-scaled cross entropy) with CT-FM's intra-sample negatives.

CT-FM takes ``K`` crops per scan and two augmented views of each crop. For an anchor view, the
positive is the other view of the same crop; the negatives are the views of the *other crops of the
same scan* (``negatives="intra_sample"``, the reference), or of every other crop in the batch
(``negatives="batch"``). With cosine similarities ``s`` and temperature ``tau``:

    l(i) = -log( exp(s(i, pos(i)) / tau) / sum_{j != i} exp(s(i, j) / tau) )

where ``j`` runs over the anchor's group (its scan's ``2K`` views, or the batch's ``2BK``). The anchors
are the first view of every crop (``anchors="view0"``, the reference: ``loss/intrasample_ntxent_loss.py``
anchors on ``input[i][0]`` with the other view as positive and both views of the other crops as
negatives) or every view (``anchors="both"``, SimCLR's symmetric form: twice the terms per step); the
loss is the mean of ``l`` over the anchors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from common.engines.method_output import MethodOutput, require

NEGATIVES = ("intra_sample", "batch")
ANCHORS = ("view0", "both")


def nt_xent(
    view1: torch.Tensor, view2: torch.Tensor, temperature: float = 0.1, negatives: str = "intra_sample", anchors: str = "view0"
) -> torch.Tensor:
    """NT-Xent for embeddings ``view1``, ``view2`` ``(B, K, D)``: ``K`` crops of each of ``B`` scans, two views each."""
    if negatives not in NEGATIVES:
        raise ValueError(f"negatives must be one of {NEGATIVES}, got {negatives!r}")
    if anchors not in ANCHORS:
        raise ValueError(f"anchors must be one of {ANCHORS}, got {anchors!r}")
    if view1.shape != view2.shape or view1.dim() != 3:
        raise ValueError(f"views must both be (B, K, D), got {tuple(view1.shape)} and {tuple(view2.shape)}")
    if negatives == "batch":
        view1, view2 = view1.reshape(1, -1, view1.shape[-1]), view2.reshape(1, -1, view2.shape[-1])
    groups, k, _ = view1.shape
    z = F.normalize(torch.cat([view1, view2], dim=1).float(), dim=-1)  # (G, 2K, D): views 1 then views 2
    rows = k if anchors == "view0" else 2 * k  # the anchors: view-0 anchors are the first k rows
    logits = z[:, :rows] @ z.transpose(1, 2) / temperature  # (G, rows, 2K): only the anchors' rows are computed
    eye = torch.eye(rows, 2 * k, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(eye, float("-inf"))  # j != i
    positive = torch.cat([torch.arange(k, 2 * k), torch.arange(0, k)])[:rows].to(z.device)  # the other view of the same crop
    return F.cross_entropy(logits.reshape(groups * rows, 2 * k), positive.repeat(groups))


class NTXentLoss(nn.Module):
    """:func:`nt_xent` as a module: ``forward(output, _)`` with ``output`` the training output of
    :class:`common.methods.ctfm.ContrastiveModel` (``view1``, ``view2``: each ``(B, K, D)``)."""

    def __init__(self, temperature: float = 0.1, negatives: str = "intra_sample", anchors: str = "view0") -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if anchors not in ANCHORS:
            raise ValueError(f"anchors must be one of {ANCHORS}, got {anchors!r}")
        self.temperature = temperature
        self.negatives = negatives
        self.anchors = anchors

    def forward(self, output: MethodOutput, target: torch.Tensor | None = None) -> torch.Tensor:
        output = require(output, ("view1", "view2"), "NTXentLoss")
        return nt_xent(output.view1, output.view2, self.temperature, self.negatives, self.anchors)
