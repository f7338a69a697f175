"""Frozen-encoder probes: what a pretrained encoder has learned, before fine-tuning can hide it.

Two probes on a frozen encoder's multi-scale features (the same taps for every encoder of a family):

- **linear voxel probe**: one 1x1x1 convolution per scale, upsampled to the label grid and summed
  (a linear classifier on the concatenated, upsampled features: a 1x1x1 convolution commutes with
  trilinear upsampling, so the sum is that classifier without materialising the upsampled stack),
  trained with Dice + CE on voxels sampled from a few labelled cases (features gathered once) and
  scored by Dice on every voxel of held-out cases;
- **k-nearest-neighbour patch probe**: each scale average-pooled over ``patch`` voxel cubes,
  standardised and concatenated into one embedding per patch, labelled by the organ at the patch
  centre; held-out patches take the majority label of their ``k`` cosine neighbours among the
  training patches; scored by balanced accuracy (mean recall over the classes present, so the
  background's majority does not carry the score).

``raw_intensity`` is the floor: the same probes on the voxel intensities alone.

MONAI has the losses and metrics (``DiceCELoss``, ``DiceMetric``) but no feature taps or probes;
this module adds those.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss
from monai.metrics import DiceMetric
from torch import nn

#: network class -> the modules whose outputs are the encoder's scales (a module may return a list)
FEATURE_TAPS: dict[str, Callable[[nn.Module], list[nn.Module]]] = {
    "SwinUNETR": lambda net: [net.swinViT],
    "DynUNet": lambda net: [net.input_block, *net.downsamples, net.bottleneck],
    "SegResNetDS": lambda net: [net.encoder],
    "SegResEncoder": lambda net: [net],
}


def _tensors(output: object) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output] if output.ndim == 5 else []
    if isinstance(output, (list, tuple)):
        return [t for o in output for t in _tensors(o)]
    return []


class RawIntensity(nn.Module):
    """The floor "encoder": the image itself, one scale."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return image


class _TapsDone(Exception):
    """Raised by the last feature tap to fire: the rest of the network (the decoder) is not needed."""


@torch.no_grad()
def encoder_features(network: nn.Module, image: torch.Tensor) -> list[torch.Tensor]:
    """The frozen encoder's scales for ``image`` ``(B, C, D, H, W)``: ``[(B, C_i, D_i, H_i, W_i)]``.

    Runs ``network`` in eval mode with forward hooks on :data:`FEATURE_TAPS` of its class; the
    forward stops once every tap has fired (the decoder would only be thrown away: it is most of a
    U-Net's compute at full resolution).
    """
    if isinstance(network, RawIntensity):
        return [image.float()]
    name = type(network).__name__
    if name not in FEATURE_TAPS:
        raise ValueError(f"no feature taps for {name}; add it to common.experiments.probes.FEATURE_TAPS ({sorted(FEATURE_TAPS)})")
    taps = FEATURE_TAPS[name](network)
    found: list[torch.Tensor] = []
    fired: set[int] = set()

    def hook(module: nn.Module, _inputs: object, out: object) -> None:
        found.extend(_tensors(out))
        fired.add(id(module))
        if len(fired) == len(taps):
            raise _TapsDone

    hooks = [m.register_forward_hook(hook) for m in taps]
    was_training = network.training
    network.eval()
    try:
        network(image)
    except _TapsDone:
        pass
    finally:
        for h in hooks:
            h.remove()
        network.train(was_training)
    if not found:
        raise RuntimeError(f"{name}: the feature taps saw no 5-D tensors")
    return [f.detach().float() for f in found]


class LinearVoxelProbe(nn.Module):
    """``logits = sum_i upsample(W_i f_i + b_i)``: a linear classifier on the upsampled concatenated scales."""

    def __init__(self, channels: Sequence[int], num_classes: int) -> None:
        super().__init__()
        self.heads = nn.ModuleList(nn.Conv3d(c, num_classes, 1) for c in channels)

    def forward(self, features: Sequence[torch.Tensor], size: Sequence[int]) -> torch.Tensor:
        """``features``: the scales of one batch; returns ``(B, num_classes, *size)`` logits."""
        return sum(F.interpolate(h(f), size=tuple(size), mode="trilinear", align_corners=False) for h, f in zip(self.heads, features))


@dataclass
class ProbeCase:
    """One labelled case's frozen features and its label ``(1, 1, D, H, W)`` (class indices)."""

    features: list[torch.Tensor]
    label: torch.Tensor


def featurize(network: nn.Module, cases: Sequence[tuple[torch.Tensor, torch.Tensor]], device: str | torch.device = "cpu") -> list[ProbeCase]:
    """Frozen features of ``(image (1, C, D, H, W), label (1, 1, D, H, W))`` pairs (kept on the CPU)."""
    network = network.to(device)
    return [ProbeCase([f.cpu() for f in encoder_features(network, image.to(device))], label.long()) for image, label in cases]


def dice_per_case(logits: torch.Tensor, label: torch.Tensor, num_classes: int) -> float:
    """Mean Dice over the foreground classes present in ``label`` (MONAI ``DiceMetric``, background excluded)."""
    pred = F.one_hot(logits.argmax(1), num_classes).permute(0, 4, 1, 2, 3).float()
    truth = F.one_hot(label[:, 0], num_classes).permute(0, 4, 1, 2, 3).float()
    metric = DiceMetric(include_background=False, reduction="none", ignore_empty=True)
    per_class = metric(pred, truth)[0]
    present = ~torch.isnan(per_class)
    return float(per_class[present].mean()) if present.any() else float("nan")


def point_features(features: Sequence[torch.Tensor], size: Sequence[int], points: torch.Tensor) -> torch.Tensor:
    """``(n, sum C_i)``: each scale trilinearly sampled at voxel ``points`` ``(n, 3)`` of the ``size`` grid,
    exactly what ``F.interpolate(f, size, mode="trilinear", align_corners=False)`` gives at those voxels."""
    size_t = torch.tensor(list(size), dtype=torch.float32)
    # voxel centre i of a grid of s voxels sits at (2 i + 1) / s - 1 in grid_sample's [-1, 1] coordinates;
    # "border" clamps at the edges as F.interpolate does (zeros padding would blend in zeros there)
    coords = (2 * points.float() + 1) / size_t - 1
    grid = coords.flip(-1).view(1, -1, 1, 1, 3)  # grid_sample wants (x, y, z) = (W, H, D)
    return torch.cat([F.grid_sample(f, grid, mode="bilinear", padding_mode="border", align_corners=False)[0, :, :, 0, 0].T for f in features], 1)


def training_points(label: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """``(m, 3)`` voxel indices: ``n`` uniform over the case and up to ``n`` uniform over its foreground
    (organs are too small for uniform sampling alone to show them to the probe)."""
    grid = label.shape[2:]
    flat = label.flatten()
    uniform = torch.randint(0, flat.numel(), (n,), generator=generator)
    fg = torch.nonzero(flat > 0).flatten()
    chosen = fg[torch.randint(0, len(fg), (min(n, len(fg)),), generator=generator)] if len(fg) else fg
    idx = torch.cat([uniform, chosen])
    return torch.stack(torch.unravel_index(idx, grid), 1)


def fit_linear_probe(
    train: Sequence[ProbeCase], num_classes: int, steps: int = 200, lr: float = 0.05, seed: int = 0, points_per_case: int = 5000,
) -> tuple[LinearVoxelProbe, list[float]]:
    """Train a :class:`LinearVoxelProbe` with full-batch Adam (Dice + CE) on sampled voxels of ``train``
    (:func:`training_points`; features standardised with their statistics); return it and the loss per step."""
    gen = torch.Generator().manual_seed(seed)
    xs, ys = [], []
    for c in train:
        pts = training_points(c.label, points_per_case, gen)
        xs.append(point_features(c.features, c.label.shape[2:], pts))
        ys.append(c.label[0, 0][pts[:, 0], pts[:, 1], pts[:, 2]])
    x, y = torch.cat(xs), torch.cat(ys)
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    torch.manual_seed(seed)
    linear = nn.Linear(x.shape[1], num_classes)
    opt = torch.optim.Adam(linear.parameters(), lr=lr)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, batch=True)
    xn, target = (x - mean) / std, y.view(1, 1, -1)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(linear(xn).T.unsqueeze(0), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    probe = LinearVoxelProbe([f.shape[1] for f in train[0].features], num_classes)
    with torch.no_grad():  # the standardised linear map as per-scale 1x1x1 heads (one bias)
        w = linear.weight / std
        offset = 0
        for head, f in zip(probe.heads, train[0].features):
            c = f.shape[1]
            head.weight.copy_(w[:, offset:offset + c, None, None, None])
            head.bias.zero_()
            offset += c
        probe.heads[0].bias.copy_(linear.bias - w @ mean)
    return probe, losses


@torch.no_grad()
def score_linear_probe(probe: LinearVoxelProbe, test: Sequence[ProbeCase], num_classes: int) -> list[float]:
    """Dice (:func:`dice_per_case`) of ``probe`` on every voxel of each ``test`` case."""
    return [dice_per_case(probe(c.features, c.label.shape[2:]), c.label, num_classes) for c in test]


def patch_embeddings(case: ProbeCase, patch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(n_patches, C)`` embeddings (each scale average-pooled to the patch grid) and the ``(n_patches,)``
    labels at the patch centres. The label grid is cut to whole patches."""
    size = case.label.shape[2:]
    grid = [s // patch for s in size]
    if min(grid) < 1:
        raise ValueError(f"patch {patch} is larger than the case ({list(size)})")
    pooled = [F.adaptive_avg_pool3d(f, grid) for f in case.features]
    emb = torch.cat(pooled, 1)[0].flatten(1).T  # (n, C)
    centres = [torch.arange(g) * patch + patch // 2 for g in grid]
    labels = case.label[0, 0][centres[0][:, None, None], centres[1][None, :, None], centres[2][None, None, :]].flatten()
    return emb, labels


def knn_probe(train: Sequence[ProbeCase], test: Sequence[ProbeCase], patch: int = 8, k: int = 5) -> dict[str, object]:
    """Cosine k-NN on patch embeddings (standardised with the training patches' statistics);
    return ``{"balanced_accuracy", "accuracy", "per_case": balanced accuracy per test case}``."""
    train_emb, train_lab = map(torch.cat, zip(*(patch_embeddings(c, patch) for c in train)))
    mean, std = train_emb.mean(0), train_emb.std(0).clamp_min(1e-6)
    bank = F.normalize((train_emb - mean) / std, dim=1)
    k = min(k, len(bank))
    per_case, all_pred, all_true = [], [], []
    for c in test:
        emb, lab = patch_embeddings(c, patch)
        sim = F.normalize((emb - mean) / std, dim=1) @ bank.T
        votes = train_lab[sim.topk(k, dim=1).indices]  # (n, k)
        pred = torch.mode(votes, dim=1).values
        per_case.append(balanced_accuracy(pred, lab))
        all_pred.append(pred)
        all_true.append(lab)
    pred, true = torch.cat(all_pred), torch.cat(all_true)
    return {"balanced_accuracy": balanced_accuracy(pred, true), "accuracy": float((pred == true).float().mean()), "per_case": per_case}


def balanced_accuracy(pred: torch.Tensor, true: torch.Tensor) -> float:
    """Mean over the classes present in ``true`` of the fraction predicted correctly."""
    recalls = [float((pred[true == c] == c).float().mean()) for c in torch.unique(true)]
    return sum(recalls) / len(recalls)
