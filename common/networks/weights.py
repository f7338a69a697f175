"""Which parameters form a network's *encoder*, for exporting pretrained weights.

Downstream bundles build the same architecture with a different output head (e.g. 14 organ
channels instead of 1 reconstruction channel). The encoder export keeps exactly the tensors whose
names the downstream network shares and that carry pretrained features: for SwinUNETR the Swin
transformer (``swinViT.*``) and the residual encoder blocks on the skip paths (``encoder1..4``,
``encoder10``); for UNETR the ViT (``vit.*``) and ``encoder1..4``. Decoders and the output head are
task-specific and left out. Keys are unchanged, so ``model.load_state_dict(sd, strict=False)`` on the
downstream network matches them directly.
"""

from __future__ import annotations

import torch
from torch import nn

ENCODER_PREFIXES: dict[str, tuple[str, ...]] = {
    "SwinUNETR": ("swinViT.", "encoder1.", "encoder2.", "encoder3.", "encoder4.", "encoder10."),
    "UNETR": ("vit.", "encoder1.", "encoder2.", "encoder3.", "encoder4."),
    "DynUNet": ("input_block.", "downsamples.", "bottleneck."),
    # CT-FM: the SegResEncoder sits under ``encoder`` in all three (common.methods.ctfm.model)
    "ContrastiveModel": ("encoder.",),
    "EncoderClassifier": ("encoder.",),
    "PooledEncoder": ("encoder.",),
    "SegResNetDS": ("encoder.",),
}


def unwrap(network: nn.Module) -> nn.Module:
    """The bare module inside DataParallel / DistributedDataParallel."""
    while isinstance(network, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        network = network.module
    return network


def encoder_prefixes(network: nn.Module) -> tuple[str, ...]:
    """Encoder key prefixes for ``network``'s class (see :data:`ENCODER_PREFIXES`)."""
    name = type(unwrap(network)).__name__
    if name not in ENCODER_PREFIXES:
        raise KeyError(f"no encoder definition for network class {name}; known: {sorted(ENCODER_PREFIXES)}")
    return ENCODER_PREFIXES[name]


def encoder_state_dict(network: nn.Module) -> dict[str, torch.Tensor]:
    """The encoder tensors of ``network`` under their own key names (detached, on CPU)."""
    prefixes = encoder_prefixes(network)
    return {k: v.detach().cpu() for k, v in unwrap(network).state_dict().items() if k.startswith(prefixes)}


def input_channels(network: nn.Module) -> int:
    """Input channels of ``network``: those of its first convolution."""
    for m in network.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            return int(m.in_channels)
    raise ValueError(f"cannot tell the input channels of {type(network).__name__} (no convolution)")


def freeze(network: nn.Module, prefixes: list[str] | tuple[str, ...] = ()) -> nn.Module:
    """``network`` with the parameters whose names start with one of ``prefixes`` frozen
    (``requires_grad=False``); returns it, so a config can wrap the network expression.

    Call it before ``DistributedDataParallel`` wraps the network (DDP registers only the parameters
    that require gradients when it is built), and give the optimiser only the trainable ones. Batch
    normalisation statistics still update in training mode, as with the reference's
    ``LighterFreezer``.

    Raises:
        ValueError: when a prefix matches no parameter (a misspelt prefix would train everything).
    """
    prefixes = tuple(prefixes)
    if not prefixes:
        return network
    named = dict(unwrap(network).named_parameters())
    missing = [p for p in prefixes if not any(n.startswith(p) for n in named)]
    if missing:
        raise ValueError(f"freeze: no parameter of {type(unwrap(network)).__name__} starts with {missing}")
    for name, parameter in named.items():
        if name.startswith(prefixes):
            parameter.requires_grad_(False)
    return network
