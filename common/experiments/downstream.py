"""A downstream bundle's network, weights and labelled cases, read through its own configs.

The probes see exactly what fine-tuning would: the bundle's ``network_def`` with the weights loaded
(and their preprocessing contract checked) by its ``model`` entry, its ``train#files`` split
(``train_fraction``/``fraction_seed``) and ``validate#files`` as held-out cases, each through the
bundle's own ``validate#preprocessing``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.bundle import ConfigParser
from monai.transforms import DivisiblePadd
from torch import nn

from common.experiments.bundle_runs import bundle_config_files


def bundle_parser(bundle: str | os.PathLike, configs: Sequence[str] = (), overrides: Mapping[str, Any] | None = None) -> ConfigParser:
    """``train.json`` + ``configs`` (relative to the bundle's ``configs/`` unless absolute) + ``overrides``."""
    bundle_dir, files = bundle_config_files(bundle, configs)
    parser = ConfigParser()
    parser.read_config(files)
    parser["bundle_root"] = str(bundle_dir)
    for key, value in {"device": "$torch.device('cpu')", **(overrides or {})}.items():
        parser[key] = value
    return parser


def network_with_weights(parser: ConfigParser, pretrained: str | None) -> nn.Module:
    """The bundle's ``model`` with ``pretrained`` loaded (``None`` or ``""``: random initialisation)."""
    parser["pretrained"] = pretrained or ""
    return parser.get_parsed_content("model", lazy=False)


def labelled_cases(parser: ConfigParser, files_key: str, divisor: int = 32) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """``[(case, image (1, C, D, H, W), label (1, 1, D, H, W))]`` of ``files_key`` (``train#files`` or
    ``validate#files``) after ``validate#preprocessing``, padded to a multiple of ``divisor`` (the
    networks' total stride) so every scale of the encoder has whole voxels."""
    return labelled_items(parser, parser.get_parsed_content(files_key, lazy=False), divisor)


def labelled_items(parser: ConfigParser, items: Sequence[Mapping[str, str]], divisor: int = 32) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """:func:`labelled_cases` for explicit ``{"image", "label"}`` items (e.g. real scans outside the
    bundle's datalist), through the same ``validate#preprocessing`` (its label map included)."""
    preprocessing = parser.get_parsed_content("validate#preprocessing", lazy=False)
    pad = DivisiblePadd(["image", "label"], divisor)
    out = []
    for f in items:
        d = pad(preprocessing(dict(f)))
        image, label = (torch.as_tensor(d[k]).unsqueeze(0) for k in ("image", "label"))
        out.append((Path(str(f["image"])).name, image.float(), label.long()))
    return out
