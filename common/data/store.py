"""A chunked store of preprocessed cases (``cache: store``): one blosc2 NDArray file per volume, read through a memory map.

MONAI has a memory cache (``CacheDataset``) and a disk cache (``PersistentDataset``: one ``.pt`` file
per case, loaded whole for every random crop). Neither scales to 10^4-10^5 volumes: the first needs
RAM for all cases, the second reads a whole preprocessed CT (tens of MB) to take a 96^3 crop. Here,
as in nnU-Net v2, each preprocessed volume is a chunked, compressed ``.b2nd`` file; a crop is sliced
from a memory map and decompresses only the blocks it touches (:mod:`common.data.store_crops`).

Layout of one store (one per cached pipeline: its name hashes the deterministic transforms and all
their settings, so a changed setting writes a new store next to the old one)::

    <cache_dir>/store-<hash16>/
        store.json                   what the arrays are: the transforms' hash and description, codec, format
        manifest.json                every finished case (consolidated; training reads this one file)
        records/<k2>/<key>.json      one per finished case, written last: its presence means "finished"
        arrays/<k2>/<key>.<field>.b2nd

``key`` hashes the case's datalist entry (its file paths and other fields), ``k2`` is its first two
characters (256 sub-folders keep folders small at 10^5 cases). Arrays are written to temporary names
and renamed, then the record; a killed write therefore never counts as finished.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.file_sizes import remember_sizes
from common.io import atomic_write_text

FORMAT_VERSION = 1
STORE_PREFIX = "store-"
MANIFEST = "manifest.json"
SETTINGS = "store.json"

#: codecs a store may be written with (blosc2 names); LZ4HC reads fastest, ZSTD packs tighter
CODECS = ("lz4hc", "zstd")
#: the budget of one block (decompressed unit) and one chunk (file unit), in bytes: a block fits a
#: core's L1/L2 cache, a chunk its share of L3 (nnU-Net v2 sizes them the same way)
BLOCK_BYTES = 32 * 1024
CHUNK_BYTES = 1024 * 1024


def case_key(entry: Mapping[str, Any]) -> str:
    """The store key of a datalist entry: a hash of every field except the derived ``case`` name.

    The file paths are part of it (as in ``PersistentDataset``), so another dataset never reads this
    one's arrays; a changed class label or fold gives a new key too.
    """
    fields = {str(k): v for k, v in entry.items() if k != "case"}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:32]


def chunking(shape: Sequence[int], roi_size: Sequence[int] | None, itemsize: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(chunks, blocks)`` for a ``(C, *spatial)`` array read in crops of ``roi_size``.

    A block holds every channel of a small brick: the ROI halved along its longest axis until the
    brick fits :data:`BLOCK_BYTES`. A chunk grows from the block (doubling the shortest axis first)
    while it fits :data:`CHUNK_BYTES` and stays within the ROI, so a crop touches at most two chunks
    per axis and decompresses only the blocks it overlaps.
    """
    channels, spatial = int(shape[0]), [int(s) for s in shape[1:]]
    roi = [min(int(r), s) for r, s in zip(roi_size, spatial)] if roi_size else [min(64, s) for s in spatial]
    roi = [max(1, r) for r in roi]
    block = list(roi)
    while math.prod(block) * channels * itemsize > BLOCK_BYTES and max(block) > 1:
        i = int(np.argmax(block))
        block[i] = max(1, block[i] // 2)
    chunk = list(block)
    while True:
        order = sorted(range(len(chunk)), key=lambda i: chunk[i])
        grown = False
        for i in order:
            bigger = min(chunk[i] * 2, roi[i])
            if bigger > chunk[i] and math.prod(chunk) // chunk[i] * bigger * channels * itemsize <= CHUNK_BYTES:
                chunk[i] = bigger
                grown = True
                break
        if not grown:
            break
    return (channels, *chunk), (channels, *block)


def index_chunking(length: int) -> tuple[tuple[int], tuple[int]]:
    """1-D index arrays: blocks of 8k entries (one random pick decompresses 32-64 kB), chunks of 256k."""
    n = max(1, length)
    return (min(n, 1 << 18),), (min(n, 1 << 13),)


class Store:
    """One store folder (see the module docstring): where a case's files are, and writing them safely.

    Args:
        root: ``<cache_dir>/store-<hash16>``.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    @staticmethod
    def folder_name(settings_hash: str) -> str:
        return f"{STORE_PREFIX}{settings_hash[:16]}"

    # -- paths ---------------------------------------------------------------------------------
    def record_path(self, key: str) -> Path:
        return self.root / "records" / key[:2] / f"{key}.json"

    def array_path(self, key: str, field: str) -> Path:
        return self.root / "arrays" / key[:2] / f"{key}.{field}.b2nd"

    # -- settings and manifest -----------------------------------------------------------------
    def settings(self) -> dict[str, Any] | None:
        p = self.root / SETTINGS
        return json.loads(p.read_text()) if p.is_file() else None

    def write_settings(self, settings: Mapping[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.root / SETTINGS, json.dumps({"format_version": FORMAT_VERSION, **settings}, indent=1) + "\n")

    def manifest(self) -> dict[str, dict]:
        """``{key: record summary}`` from ``manifest.json`` (empty when there is none yet)."""
        p = self.root / MANIFEST
        if not p.is_file():
            return {}
        return {c["key"]: c for c in json.loads(p.read_text()).get("cases", [])}

    def write_manifest(self, cases: Iterable[Mapping[str, Any]]) -> Path:
        """Consolidate record summaries into ``manifest.json`` (sorted by key, atomically)."""
        settings = self.settings() or {}
        body = {
            "format_version": FORMAT_VERSION,
            "settings_hash": settings.get("settings_hash"),
            "cases": sorted((summary(c) for c in cases), key=lambda c: c["key"]),
        }
        return atomic_write_text(self.root / MANIFEST, json.dumps(body, separators=(",", ":")) + "\n")

    def record(self, key: str) -> dict[str, Any] | None:
        """The full record of a finished case (None if the case is not in the store)."""
        p = self.record_path(key)
        try:
            return json.loads(p.read_text())
        except FileNotFoundError:
            return None

    def remove_temporaries(self) -> int:
        """Delete array files that a killed write left under a temporary name; returns how many."""
        n = 0
        for p in (self.root / "arrays").glob("*/.*.tmp*"):
            p.unlink(missing_ok=True)
            n += 1
        return n

    # -- writing one case ----------------------------------------------------------------------
    def write_array(self, key: str, field: str, array: np.ndarray, chunks: Sequence[int], blocks: Sequence[int],
                    codec: str = "lz4hc", clevel: int = 8, meta: Mapping[str, Any] | None = None) -> Path:
        """Write ``array`` as a blosc2 NDArray file, under a temporary name renamed when complete."""
        import blosc2

        final = self.array_path(key, field)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.tmp{os.getpid()}")
        filters = [blosc2.Filter.BITSHUFFLE] if array.dtype.kind in "iu" and array.ndim == 1 else [blosc2.Filter.SHUFFLE]
        cparams = {"codec": blosc2.Codec.LZ4HC if codec == "lz4hc" else blosc2.Codec.ZSTD, "clevel": clevel, "filters": filters}
        try:
            out = blosc2.asarray(np.ascontiguousarray(array), urlpath=str(tmp), mode="w", chunks=tuple(chunks), blocks=tuple(blocks),
                                 cparams=cparams)
            if meta:
                out.schunk.vlmeta["meta"] = json.dumps(meta)
            del out
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return final

    def write_record(self, record: Mapping[str, Any]) -> None:
        """The case's record, written last and atomically: from now on the case counts as finished."""
        atomic_write_text(self.record_path(record["key"]), json.dumps(record, separators=(",", ":")) + "\n")


def checks_digest(checks: Any) -> str | None:
    """What a recorded pre-flight result was checked against (a ``CaseChecks``; None: not checked)."""
    if checks is None:
        return None
    return hashlib.sha256(json.dumps(dataclasses.asdict(checks), sort_keys=True, default=str).encode()).hexdigest()[:16]


def recorded_checks(cache_dir: str | os.PathLike, checks: Any) -> dict[str, list[str]]:
    """Pre-flight results the stores under ``cache_dir`` recorded with these ``checks`` (key -> problems).

    Also hands the source file sizes the manifests recorded to :mod:`common.file_sizes`, so the run
    identity needs no ``stat`` of a stored case's files. Reads one ``manifest.json`` per store.
    """
    digest = checks_digest(checks)
    out: dict[str, list[str]] = {}
    sizes: dict[str, int] = {}
    for manifest in sorted(Path(cache_dir).glob(f"{STORE_PREFIX}*/{MANIFEST}")):
        try:
            cases = json.loads(manifest.read_text()).get("cases", [])
        except (OSError, json.JSONDecodeError):
            continue  # a store being written; its cases are checked as usual
        for c in cases:
            sizes.update({path: size for _, path, size in c.get("sources", [])})
            if digest is not None and c.get("checks", {}).get("digest") == digest:
                out[c["key"]] = c["checks"]["problems"]
    remember_sizes(sizes)
    return out


def summary(record: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest's line of a record: what identity, pre-flight and reports need, not the array layout."""
    keep = ("key", "case", "sources", "checks", "shape", "spacing", "intensity", "bytes")
    return {k: record[k] for k in keep if k in record}


# -- values that are not volumes (a class vector, the case name, a fold number) -----------------------

def encode_value(value: Any) -> Any:
    """A JSON form of a non-volume field of a preprocessed case, decoded back by :func:`decode_value`."""
    if isinstance(value, torch.Tensor):
        a = value.detach().cpu()
        return {"__tensor__": {"dtype": str(a.dtype).removeprefix("torch."), "shape": list(a.shape), "data": a.flatten().tolist()}}
    if isinstance(value, np.ndarray):
        return {"__ndarray__": {"dtype": str(value.dtype), "shape": list(value.shape), "data": value.flatten().tolist()}}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [encode_value(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): encode_value(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"cache 'store' cannot keep a field of type {type(value).__name__}")


def decode_value(value: Any) -> Any:
    if isinstance(value, Mapping) and "__tensor__" in value:
        t = value["__tensor__"]
        return torch.tensor(t["data"], dtype=getattr(torch, t["dtype"])).reshape(t["shape"])
    if isinstance(value, Mapping) and "__ndarray__" in value:
        a = value["__ndarray__"]
        return np.asarray(a["data"], dtype=a["dtype"]).reshape(a["shape"])
    if isinstance(value, list):
        return [decode_value(v) for v in value]
    if isinstance(value, Mapping):
        return {k: decode_value(v) for k, v in value.items()}
    return value
