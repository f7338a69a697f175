"""Load pretrained weights into a (downstream) network, with an honest report.

Accepts what this collection writes and what users usually have:

- ``models/encoder.pt`` / ``models/model.pt`` from a pretraining bundle (plain ``state_dict``);
- a training checkpoint (``{"model": state_dict, "optimizer": ..., ...}``);
- a raw SwinUNETR/UNETR ``state_dict``, also wrapped as ``{"state_dict": ...}``, ``{"network": ...}`` or
  ``{"net": ...}`` and with DDP's ``module.`` prefix;
- the published layouts of :mod:`common.networks.layouts` (research-contributions' SwinUNETR SSL
  weights, MONAI's DAE SwinUNETR weights, SuPreM's SwinUNETR and SegResNet), renamed to MONAI's keys.

Tensors are matched by name and shape (MONAI's ``copy_model_state``). A single-channel first-layer
weight is spread over a network with more input channels (:func:`adapt_input_channels`: 1-channel CT
weights into a 4-sequence MRI or 4-window CT network). Other tensors whose shape differs (e.g.
another output head) are skipped and reported. Loading nothing is an error: that is always a wrong file or a wrong architecture, never
something to train through silently.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from monai.networks.utils import copy_model_state
from torch import nn

from common.networks.layouts import recognise
from common.networks.weights import unwrap
from common.runs.contract import check_contract, override_hints

logger = logging.getLogger(__name__)

_WRAPPER_KEYS = ("state_dict", "model", "network", "model_state_dict", "net")


class PretrainedLoadError(ValueError):
    """The weights file cannot initialise the network; the message names the file."""


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did. Each list holds parameter/buffer names of the target."""

    path: str
    loaded: list[str] = field(default_factory=list)
    skipped_shape: list[str] = field(default_factory=list)  # name in both, shapes differ
    adapted: list[str] = field(default_factory=list)  # single-channel input weights spread over the network's input channels
    unused: list[str] = field(default_factory=list)  # in the file, not in the network
    missing: list[str] = field(default_factory=list)  # in the network, not loaded
    prefix_map: tuple[str, str] | None = None  # (file prefix removed, network prefix added), when keys were re-prefixed
    layout: str | None = None  # the published layout recognised (common.networks.layouts), None: keys as they are
    dropped: int = 0  # that layout's head tensors left out (SSL heads, SuPreM's controller and 32-class output layers)

    def summary(self) -> str:
        mapped = f" (keys mapped '{self.prefix_map[0]}*' -> '{self.prefix_map[1]}*')" if self.prefix_map else ""
        mapped = (f" (published layout {self.layout}, {self.dropped} of its head tensors left out)" if self.layout else "") + mapped
        adapted = f" ({len(self.adapted)} adapted from 1 to more input channels)" if self.adapted else ""
        return (
            f"{self.path}{mapped}: loaded {len(self.loaded)} tensors{adapted}, skipped {len(self.skipped_shape)} with another shape, "
            f"{len(self.unused)} unused from the file, {len(self.missing)} network tensors left at initialisation"
        )


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a weights file and unwrap it to a flat ``name -> tensor`` dict without ``module.`` prefixes."""
    return read_checkpoint(path)[0]


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], tuple[str, ...]]:
    """:func:`read_state_dict` and the wrapper keys it unwrapped on the way (e.g. ``("net",)``)."""
    if not os.path.isfile(path):
        raise PretrainedLoadError(f"pretrained weights file {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt, truncated, not a torch file
        raise PretrainedLoadError(f"cannot read pretrained weights {path}: {type(e).__name__}: {e}") from e
    wrapper: list[str] = []
    while isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        key = next((k for k in _WRAPPER_KEYS if k in obj), None)
        if key is None:
            raise PretrainedLoadError(f"{path} holds no tensors at the top level nor under {list(_WRAPPER_KEYS)} (keys: {sorted(obj)[:10]})")
        obj = obj[key]
        wrapper.append(key)
    if not isinstance(obj, Mapping):
        raise PretrainedLoadError(f"{path} does not hold a state_dict (got {type(obj).__name__})")
    return {(k.removeprefix("module.")): v for k, v in obj.items() if isinstance(v, torch.Tensor)}, tuple(wrapper)


def _prefixes(keys, depth: int = 2) -> set[str]:
    """``""`` and every leading ``a.`` / ``a.b.`` of ``keys`` (candidate key prefixes)."""
    found = {""}
    for k in keys:
        parts = k.split(".")
        found |= {".".join(parts[:i]) + "." for i in range(1, min(depth, len(parts) - 1) + 1)}
    return found


def align_prefixes(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], tuple[str, str] | None]:
    """Re-prefix ``source`` keys to match ``target`` best, by name and shape.

    Checkpoints name the same tensors under different owners: CT-FM's ``backbone.conv_init.weight``
    is ``encoder.conv_init.weight`` in ``SegResNetDS`` and ``conv_init.weight`` in a bare
    ``SegResEncoder``. Every (remove, add) pair of leading prefixes is tried; the one with the most
    name-and-shape matches wins (shapes that :func:`adapt_input_channels` can adapt count); on a tie
    the keys as they are, then the shortest prefixes. Returns the mapped dict and the pair,
    or None when the keys are used as they are.
    """

    def score(strip: str, add: str) -> int:
        n = 0
        for k, v in source.items():
            if k.startswith(strip):
                t = target.get(add + k[len(strip):])
                n += t is not None and (t.shape == v.shape or adapt_input_channels(v, t.shape) is not None)
        return n

    # shortest prefixes first, so that on a tie the most general mapping wins (deterministically: sets are hash-ordered)
    pairs = sorted(((s, a) for s in _prefixes(source) for a in _prefixes(target)), key=lambda p: (len(p[0]) + len(p[1]), p))
    best, best_pair = score("", ""), None
    for strip, add in pairs:
        if (strip, add) != ("", "") and (s := score(strip, add)) > best:
            best, best_pair = s, (strip, add)
    if best_pair is None:
        return dict(source), None
    strip, add = best_pair
    return {add + k[len(strip):]: v for k, v in source.items() if k.startswith(strip)}, best_pair


def adapt_input_channels(source: torch.Tensor, target_shape: torch.Size) -> torch.Tensor | None:
    """A first-layer weight ``(out, 1, *k)`` spread over ``c`` input channels as ``(out, c, *k) / c``, or None.

    Dividing by ``c`` keeps the layer's response when all channels carry the same image, the usual
    way to start e.g. a 4-window CT classifier from single-channel CT weights.
    """
    if source.dim() < 3 or len(target_shape) != source.dim() or source.shape[1] != 1 or target_shape[1] == 1:
        return None
    if source.shape[0] != target_shape[0] or source.shape[2:] != target_shape[2:]:
        return None
    return source.repeat(1, target_shape[1], *([1] * (source.dim() - 2))) / target_shape[1]


def load_pretrained(network: nn.Module, path: str | os.PathLike) -> LoadReport:
    """Copy every tensor of ``path`` whose name and shape match ``network`` into it (in place).

    Returns:
        a :class:`LoadReport`, also logged.
    Raises:
        PretrainedLoadError: unreadable file, or not a single tensor matched.
    """
    net = unwrap(network)
    target = net.state_dict()
    source, wrapper = read_checkpoint(path)
    layout = recognise(source, wrapper)
    dropped = 0
    if layout is not None:
        translated = layout.translate(source)
        source, dropped = translated, len(source) - len(translated)
    source, prefix_map = align_prefixes(source, target)
    report = LoadReport(path=str(path), prefix_map=prefix_map, layout=layout.name if layout else None, dropped=dropped)
    for k, v in list(source.items()):
        if k in target and target[k].shape != v.shape and (adapted := adapt_input_channels(v, target[k].shape)) is not None:
            source[k] = adapted
            report.adapted.append(k)
    report.skipped_shape = sorted(k for k, v in source.items() if k in target and target[k].shape != v.shape)
    report.unused = sorted(k for k in source if k not in target)
    matching = {k: v for k, v in source.items() if k in target and target[k].shape == v.shape}
    if not matching:
        raise PretrainedLoadError(
            f"no tensor of {path} matches {type(net).__name__} by name and shape "
            f"({len(source)} in the file, {len(report.skipped_shape)} with another shape; file keys start with "
            f"{sorted({k.split('.')[0] for k in source})[:8]}, network keys with {sorted({k.split('.')[0] for k in target})[:8]})"
        )
    _, report.loaded, _ = copy_model_state(net, matching, inplace=True)
    report.loaded = sorted(report.loaded)
    report.missing = sorted(set(target) - set(report.loaded))
    logger.info(report.summary())
    return report


def with_pretrained(
    network: nn.Module,
    pretrained: str | os.PathLike | None = None,
    preprocessing: Mapping[str, Any] | None = None,
    allow_preprocessing_mismatch: bool = False,
    contract_ignore: Sequence[str] = (),
    bundle_run: Any = None,
) -> nn.Module:
    """``network`` initialised from ``pretrained`` when a path is given (else unchanged); for configs::

        "network": "$common.networks.with_pretrained(@network_def, @pretrained, @preprocessing_settings,
                    @allow_preprocessing_mismatch, bundle_run=@bundle_run).to(@device)"

    ``bundle_run`` (:class:`common.runs.BundleRun`, given by :class:`common.runs.BundleWorkflow`) lets a
    mismatch message name the overrides that set each preprocessing field; without it the message names the fields only.

    When the weights carry a provenance record, their preprocessing and network family are checked
    against ``preprocessing`` first (:func:`common.runs.check_contract`; ``contract_ignore`` names
    fields this bundle adapts on purpose); a mismatch stops with both values named unless
    ``allow_preprocessing_mismatch``. Raises :class:`PretrainedLoadError` as :func:`load_pretrained`
    does (no tensor matched, unreadable file).
    """
    if not pretrained:
        logger.info(f"No pretrained weights given: {type(unwrap(network)).__name__} starts from random initialisation.")
        return network
    if not os.path.isfile(pretrained):
        raise PretrainedLoadError(f"pretrained weights file {pretrained} does not exist")
    hints = override_hints(bundle_run.parser.get("preprocessing_settings")) if bundle_run is not None else {}
    check_contract(pretrained, preprocessing, type(unwrap(network)).__name__, allow_preprocessing_mismatch, contract_ignore, hints)
    load_pretrained(network, pretrained)
    return network
