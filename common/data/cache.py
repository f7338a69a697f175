"""Where the deterministic part of a bundle's preprocessing is kept between epochs: in memory, on disk, in a chunked store, or nowhere.

Every training config builds its datasets with :func:`make_dataset` and exposes two settings:

- ``cache``: ``"memory"`` (``monai.data.CacheDataset``, the default: fastest, needs the preprocessed
  cases to fit in RAM -- or in GPU memory with ``cache_on_device``), ``"disk"``
  (``monai.data.PersistentDataset``: each case preprocessed once, ever, and kept as a ``.pt`` file --
  for datasets larger than RAM and for repeated runs on the same cases), ``"store"`` (a chunked
  blosc2 store, :mod:`common.data.store`: random crops read only their own bytes through a memory
  map -- for 10^4-10^5 volumes; fill it with ``python -m common.data.preprocess``), or ``"none"``
  (every transform on every access);
- ``cache_dir``: where ``"disk"`` and ``"store"`` keep their files, ``<bundle_root>/cache`` by default.

On disk a case's file name hashes the case's entry in the datalist *and* the deterministic transforms
with their settings (``hash_transform``), so changing ``pixdim`` or the intensity window starts a new
cache instead of silently reusing a stale one; several runs and bundles can share one folder. Files
hold plain tensors and load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from monai.data import CacheDataset, Dataset, ImageReader, PersistentDataset
from monai.transforms import Compose, RandomizableTrait, ToDevice, ToDeviced, Transform

from common.data.sampler import SeededItems

CACHE_MODES = ("memory", "disk", "store", "none")
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _runtime_state(obj: Any, name: str, value: Any) -> bool:
    """An attribute a transform sets while it runs, not a setting: a pipeline that has run hashes as before.

    MONAI's image readers record the last file read (``ImageReader.filenames``) and a traceable transform
    gets thread-local state on its first call in a thread (``TraceableTransform._tracing``).
    """
    return isinstance(value, threading.local) or (name == "filenames" and isinstance(obj, ImageReader))


def _describe(obj: Any, seen: set[int]) -> str:
    """A text that changes when any setting of ``obj`` changes and stays the same across processes.

    Transforms are described by class and attributes (recursively), arrays by content hash, functions -- config
    lambdas included -- by bytecode and constants; memory addresses are dropped. Random generators are left out.
    """
    if obj is None or isinstance(obj, (bool, int, float, str, bytes)):
        return repr(obj)
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        a = obj.detach().cpu().numpy() if isinstance(obj, torch.Tensor) else obj
        return f"array({a.dtype},{a.shape},{hashlib.sha1(np.ascontiguousarray(a).tobytes()).hexdigest()})"
    if isinstance(obj, (np.random.RandomState, torch.Generator)):
        return type(obj).__name__
    if isinstance(obj, types.FunctionType):
        code = obj.__code__
        return f"fn({obj.__module__}.{obj.__qualname__},{code.co_code.hex()},{_describe(code.co_consts, seen)})"
    if id(obj) in seen:  # an object inside itself (``seen`` holds the ancestors only: ids of freed temporaries are reused)
        return "<cycle>"
    seen.add(id(obj))
    try:
        if isinstance(obj, dict):
            return "{" + ",".join(f"{k!r}:{_describe(v, seen)}" for k, v in sorted(obj.items(), key=lambda kv: repr(kv[0]))) + "}"
        if isinstance(obj, (list, tuple, set, frozenset)):
            items = sorted(obj, key=repr) if isinstance(obj, (set, frozenset)) else obj
            return f"{type(obj).__name__}(" + ",".join(_describe(v, seen) for v in items) + ")"
        if hasattr(obj, "__dict__"):
            fields = {k: v for k, v in vars(obj).items() if not _runtime_state(obj, k, v)}
            return f"{type(obj).__module__}.{type(obj).__qualname__}{_describe(fields, seen)}"
    finally:
        seen.discard(id(obj))
    return _ADDRESS.sub("", repr(obj))


def transform_hash(transforms: Sequence[Any]) -> bytes:
    """``PersistentDataset``'s ``hash_transform``: a digest of the cached transforms and all their settings."""
    return hashlib.sha256(_describe(list(transforms), set()).encode()).hexdigest().encode()



def first_uncachable(transform: Compose) -> int:
    """Index of the first transform a disk cache must not run: a random one, a non-``Transform`` callable, or a
    device move (tensors on a GPU must not be pickled into the cache)."""
    index = transform.get_index_of_first(
        lambda t: isinstance(t, (RandomizableTrait, ToDevice, ToDeviced)) or not isinstance(t, Transform)
    )
    return len(transform.transforms) if index is None else index


class _SeededCacheDataset(SeededItems, CacheDataset):
    """``CacheDataset`` whose samples from a :class:`common.data.StreamSampler` carry their transforms' seed."""


class _SeededPersistentDataset(SeededItems, PersistentDataset):
    """``PersistentDataset`` (no random transform) that accepts the stream sampler's seeded indices."""


class _SeededDataset(SeededItems, Dataset):
    """``Dataset`` whose samples from a :class:`common.data.StreamSampler` carry their transforms' seed."""


class _RandomTail(SeededItems, Dataset):
    """``Dataset(cached_head, tail)`` whose random transforms get the seed ``CacheDataset``'s would.

    MONAI's ``DataLoader`` seeds a dataset's random transforms with ``set_rnd``, which walks the
    dataset's attributes in order and gives each ``set_random_state`` it meets the next seed: here it
    would seed the cached head's ``Compose`` first and the random tail with ``seed + 1``, so a run with
    ``cache: disk`` would draw other crops than the same run with ``cache: memory``. Answering
    ``set_random_state`` here hands the tail the seed itself (the head has no random transform), so
    the cache mode does not change a seeded run's numbers (tested).
    """

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> _RandomTail:
        self.transform.set_random_state(seed=seed, state=state)
        return self


def make_dataset(
    data: Sequence[dict],
    transform: Compose,
    cache: str = "memory",
    cache_rate: float = 1.0,
    num_workers: int | None = 1,
    cache_dir: str | os.PathLike | None = None,
) -> Dataset:
    """A dataset of ``data`` through ``transform`` with its deterministic head cached as ``cache`` says.

    ``"memory"``: ``CacheDataset`` (``cache_rate``, ``num_workers`` threads to build it). ``"disk"``:
    ``PersistentDataset`` in ``cache_dir`` for the transforms up to the first random one (or device move),
    the rest applied on each access. Every dataset accepts :class:`common.data.StreamSampler`'s seeded
    indices, which seed its random transforms per sample. ``"store"``: :class:`common.data.store_dataset.StoreDataset` over the
    store of this pipeline in ``cache_dir`` (cases it lacks are preprocessed first, in ``num_workers``
    threads). ``"none"``: ``Dataset``.
    """
    if cache not in CACHE_MODES:
        raise ValueError(f"cache: {cache!r} is not one of {', '.join(map(repr, CACHE_MODES))}")
    if cache == "memory":
        return _SeededCacheDataset(data, transform, cache_rate=cache_rate, num_workers=num_workers)
    if cache == "none":
        return _SeededDataset(data, transform)
    if not cache_dir:
        raise ValueError(f"cache: '{cache}' needs cache_dir (a folder for the preprocessed cases)")
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    if cache == "store":
        from common.data.store_dataset import open_store_dataset

        return open_store_dataset(data, transform, cache_dir, num_workers=num_workers or 1)
    split = first_uncachable(transform)
    head = Compose(transform.transforms[:split])
    tail = transform.transforms[split:]
    persistent = _SeededPersistentDataset(data, head, cache_dir=cache_dir, hash_transform=transform_hash)
    # the random tail keeps its transform objects, so the per-sample seeds (common.data.sampler) reach them
    return _RandomTail(persistent, Compose(tail)) if tail else persistent
