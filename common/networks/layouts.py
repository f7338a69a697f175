"""Published checkpoint layouts of MONAI-network weights, translated to MONAI's own key names.

Widely shared pretrained weights for MONAI networks name their tensors after the training code that
made them, not after the MONAI network that uses them. Each :class:`Layout` here recognises one
published layout by its keys (after the file is unwrapped and DDP's ``module.`` removed, see
:func:`common.networks.pretrained.read_state_dict`) and renames its keys to the MONAI network's:

==============================  =============================================  ==========================
layout                          file (keys as published)                       MONAI network
==============================  =============================================  ==========================
``monai_swinvit_ssl``           research-contributions ``model_swinvit.pt``    ``SwinUNETR.swinViT``
                                (``{"state_dict": {"module.patch_embed.*",
                                ``"module.layers1.0.blocks.*", ...}}``, MLPs
                                as ``mlp.fc1``/``fc2``; what
                                ``SwinUNETR.load_from`` reads)
``monai_swinvit_ssl_head``      a ``SwinUNETR/Pretrain`` checkpoint            ``SwinUNETR.swinViT``
                                (``SSLHead``: ``swin_vit.*`` + rotation,
                                contrastive and reconstruction heads)
``monai_swinunetr_dae``         MONAI's ``ssl_pretrained_weights.pth``         ``SwinUNETR.swinViT``
                                (``{"model": {"encoder.layers1.0.0.*"}}``;
                                renamed by MONAI's ``filter_swinunetr``)
``suprem_swinunetr``            SuPreM's SwinUNETR (``{"net":                  ``SwinUNETR`` (all but
                                {"module.backbone.*", "module.controller.*",   ``out``)
                                ...}}``, ``Universal_model``)
``suprem_segresnet``            SuPreM's SegResNet (``{"net":                  ``SegResNet`` (all but the
                                {"module.convInit.*", ...}}``)                 ``conv_final.2`` head)
==============================  =============================================  ==========================

Heads that belong to the pretraining task, not to the encoder (the SSL rotation, contrastive and
reconstruction heads; SuPreM's organ-conditioned controller and its output layers for AbdomenAtlas'
classes, whose labels are not the downstream task's even where the class count agrees) are left out
and counted in the load report, so they show up neither as loaded nor as "unused". Upstream gap: MONAI has ``SwinUNETR.load_from`` (the first layout
only, SwinUNETR only, raising on any other key) and ``filter_swinunetr`` (the third); nothing
recognises a file's layout or covers the others.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

State = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class Layout:
    """One published key layout: ``matches(keys, wrapper)`` recognises it (``wrapper``: the keys the
    file's dict was unwrapped through, e.g. ``("net",)``), ``translate(state)`` renames it."""

    name: str
    source: str
    matches: Callable[[set[str], tuple[str, ...]], bool]
    translate: Callable[[State], dict[str, torch.Tensor]]


def _has(keys: set[str], *prefixes: str) -> bool:
    return all(any(k.startswith(p) for k in keys) for p in prefixes)


def _mlp(key: str) -> str:
    """The published SwinUNETR SSL weights name the MLP layers ``fc1``/``fc2`` (what
    ``SwinTransformerBlock.load_from`` reads); MONAI's ``MLPBlock`` calls them ``linear1``/``linear2``."""
    return key.replace(".mlp.fc1.", ".mlp.linear1.").replace(".mlp.fc2.", ".mlp.linear2.")


def _swinvit_ssl(state: State) -> dict[str, torch.Tensor]:
    return {_mlp(f"swinViT.{k}"): v for k, v in state.items() if k.startswith(("patch_embed.", "layers"))}


def _swinvit_ssl_head(state: State) -> dict[str, torch.Tensor]:
    return {_mlp("swinViT." + k.removeprefix("swin_vit.")): v for k, v in state.items() if k.startswith("swin_vit.")}


def _swinunetr_dae(state: State) -> dict[str, torch.Tensor]:
    from monai.networks.nets.swin_unetr import filter_swinunetr  # MONAI's own renaming for this file

    return dict(kv for k, v in state.items() if (kv := filter_swinunetr(k, v)) is not None)


def _suprem_swinunetr(state: State) -> dict[str, torch.Tensor]:
    return {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.") and not k.startswith("backbone.out.")}


def _suprem_segresnet(state: State) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if not k.startswith("conv_final.2.conv.")}


_SWIN_STAGE = re.compile(r"^layers[1-4]\.0\.")

LAYOUTS: tuple[Layout, ...] = (
    Layout("monai_swinvit_ssl", "Project-MONAI/research-contributions SwinUNETR/Pretrain: model_swinvit.pt",
           lambda keys, _w: "patch_embed.proj.weight" in keys and any(_SWIN_STAGE.match(k) for k in keys), _swinvit_ssl),
    Layout("monai_swinvit_ssl_head", "Project-MONAI/research-contributions SwinUNETR/Pretrain: SSLHead checkpoint",
           lambda keys, _w: "swin_vit.patch_embed.proj.weight" in keys, _swinvit_ssl_head),
    Layout("monai_swinunetr_dae", "Project-MONAI MONAI-extra-test-data: ssl_pretrained_weights.pth (filter_swinunetr)",
           lambda keys, _w: "encoder.patch_embed.proj.weight" in keys and _has(keys, "encoder.layers1.0.0."), _swinunetr_dae),
    Layout("suprem_swinunetr", "MrGiovanni/SuPreM: supervised_suprem_swinunetr_*.pth",
           lambda keys, _w: "backbone.swinViT.patch_embed.proj.weight" in keys, _suprem_swinunetr),
    Layout("suprem_segresnet", "MrGiovanni/SuPreM: supervised_suprem_segresnet_*.pth",
           # a plain SegResNet state dict: only SuPreM's "net" wrapper tells it apart from this collection's own files
           lambda keys, w: w == ("net",) and "convInit.conv.weight" in keys and _has(keys, "down_layers.", "up_layers.", "conv_final.2.conv."),
           _suprem_segresnet),
)


def recognise(state: State, wrapper: tuple[str, ...] = ()) -> Layout | None:
    """The published layout ``state``'s keys follow, or ``None`` (keys used as they are)."""
    keys = set(state)
    found = [layout for layout in LAYOUTS if layout.matches(keys, tuple(wrapper))]
    return found[0] if found else None
