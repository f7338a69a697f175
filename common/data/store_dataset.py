"""Training and validation datasets read from a chunked store (``cache: store``).

:class:`StoreDataset` is a ``monai.data.Dataset`` over the datalist entries: for item ``i`` it opens
the case's record and memory-maps its arrays, lets the pipeline's first random transform (a crop)
draw and read only its crop (:mod:`common.data.store_crops`), then runs the rest of the pipeline
(``Compose.__call__(data, start=...)``). Nothing but the datalist stays in memory, so the dataset's
size is bounded by the disk, not by RAM, and each DDP rank reads only the cases its sampler names.
"""

from __future__ import annotations

import itertools
import logging
import mmap
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import Dataset, MetaTensor
from monai.transforms import Compose, ToDevice, ToDeviced

from common.data.sampler import SeededItems
from common.data.store import Store, case_key, decode_value
from common.data.store_crops import crop_reader

logger = logging.getLogger(__name__)


class LazyIndices:
    """A 1-D index array on disk that MONAI's crop-centre sampler can index one entry at a time."""

    def __init__(self, path: Path, length: int) -> None:
        self.path, self.length = path, length
        self._array: Any = None

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> int:
        if self._array is None:
            import blosc2

            self._array = blosc2.open(str(self.path), mmap_mode="r")
        return int(self._array[int(i)])


def _touched_chunks(shape: Sequence[int], chunks: Sequence[int], spatial: Sequence[slice]) -> list[int]:
    """Indices (C order) of the chunks of a ``(C, *spatial)`` array that a crop ``spatial`` overlaps."""
    grid = [-(-s // c) for s, c in zip(shape, chunks)]
    axes = [range(grid[0])]
    for sl, size, c in zip(spatial, shape[1:], chunks[1:]):
        lo, hi = max(0, sl.start or 0), min(size, size if sl.stop is None else sl.stop)
        axes.append(range(lo // c, max(lo, hi - 1) // c + 1))
    return [int(np.ravel_multi_index(idx, grid)) for idx in itertools.product(*axes)]


def read_crop(path: str, spatial: Sequence[slice]) -> np.ndarray:
    """``array[:, *spatial]`` of a ``.b2nd`` file, reading from storage only the chunks the crop touches.

    Fills a gap of the read paths blosc2 offers: through its own memory map (``mmap_mode="r"``) or its
    file reads, the kernel's read-ahead (8 MB on this project's machines, often more on cluster file
    systems) pulls in most of a 20-70 MB case for one 96^3 crop. Here the file is mapped with
    ``MADV_RANDOM`` (no read-ahead), the touched chunks' byte ranges (blosc2's
    ``get_chunk_range``) are asked for with ``MADV_WILLNEED`` (one read each, in parallel), and blosc2
    decompresses only the blocks the crop overlaps from that map. Where ``madvise`` is missing (not
    Linux), blosc2's own memory map is used.
    """
    import blosc2

    if not hasattr(mmap, "MADV_RANDOM") or not hasattr(mmap.mmap, "madvise"):
        return blosc2.open(path, mmap_mode="r")[(slice(None), *spatial)]
    frame = blosc2.open(path)  # reads the frame header and the chunk index only
    with open(path, "rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        mapped.madvise(mmap.MADV_RANDOM)
        for n in _touched_chunks(frame.shape, frame.chunks, spatial):
            offset, size = frame.schunk.get_chunk_range(n)
            if size:
                start = offset - offset % mmap.PAGESIZE
                mapped.madvise(mmap.MADV_WILLNEED, start, min(offset + size, len(mapped)) - start)
        array = blosc2.ndarray_from_cframe(mapped, copy=False)
        crop = array[(slice(None), *spatial)]
        del array
        return crop
    finally:
        mapped.close()


class StoredCase:
    """One preprocessed case in the store: its fields in order, volumes read lazily (whole or cropped)."""

    def __init__(self, store: Store, record: Mapping[str, Any]) -> None:
        self.store, self.record = store, record
        self.volume_fields = dict(record["volumes"])

    def _path(self, field: str) -> Path:
        return self.store.array_path(self.record["key"], field)

    def spatial_shape(self, field: str) -> tuple[int, ...]:
        return tuple(self.volume_fields[field]["shape"][1:])

    def _read_array(self, field: str, spatial: Sequence[slice] | None) -> np.ndarray:
        import blosc2

        path = str(self._path(field))
        if spatial is None:  # the whole volume: one sequential read, the kernel's read-ahead helps
            return blosc2.open(path, mmap_mode="r")[...]
        return read_crop(path, spatial)

    def read(self, field: str, slices: Sequence[slice] | None = None) -> torch.Tensor:
        """The volume ``field`` ``(C, *spatial)``, or its crop ``slices`` (only the chunks it touches are read)."""
        info = self.volume_fields[field]
        data = torch.from_numpy(np.ascontiguousarray(self._read_array(field, None if slices is None else list(slices))))
        meta = info.get("meta")
        if meta is None:
            return data
        affine = torch.as_tensor(meta["affine"], dtype=torch.float64)
        starts = torch.tensor([0 if slices is None else (s.start or 0) for s in (slices or [])], dtype=torch.float64)
        if slices is not None and bool(starts.any()):  # as MONAI's crop does: the crop's first voxel is the new origin
            affine = affine.clone()
            affine[:3, 3] += affine[:3, :3] @ starts
        return MetaTensor(data, affine=affine, meta={"filename_or_obj": meta.get("filename_or_obj", "")})

    def indices(self, name: str) -> LazyIndices:
        info = self.record.get("indices", {}).get(name)
        if info is None:
            raise KeyError(f"store {self.store.root} holds no '{name}' for case {self.record['case']}: preprocess it again (its store predates the crop)")
        return LazyIndices(self.store.array_path(self.record["key"], name), int(info["length"]))

    def fields(self, exclude: Iterable[str] = ()) -> dict[str, Any]:
        """Every field in the entry's order: values decoded, volumes read whole (minus ``exclude``)."""
        skip = set([exclude] if isinstance(exclude, str) else exclude)
        out = {}
        for field in self.record["order"]:
            if field in skip:
                continue
            out[field] = self.read(field) if field in self.volume_fields else decode_value(self.record["values"][field])
        return out

    def ordered(self, d: Mapping[str, Any]) -> dict[str, Any]:
        """``d`` with the case's field order (fields it added go last)."""
        order = [k for k in self.record["order"] if k in d]
        return {**{k: d[k] for k in order}, **{k: v for k, v in d.items() if k not in order}}


class StoreDataset(SeededItems, Dataset):
    """``data`` through ``transform``, its deterministic head read from ``store`` (see the module docstring).

    Args:
        data: the datalist entries (the same list the other cache modes take).
        transform: the whole pipeline; its transforms up to ``split`` made the stored arrays.
        store: the store of this pipeline (every case of ``data`` must be in it).
        split: index of the pipeline's first transform the store did not run.
    """

    def __init__(self, data: Sequence[dict], transform: Compose, store: Store, split: int) -> None:
        super().__init__(data, transform)
        self.store, self.split = store, split
        first = transform.transforms[split] if split < len(transform.transforms) else None
        self.reader = crop_reader(first) if first is not None else None

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> StoreDataset:
        """Seed the pipeline as MONAI seeds a ``CacheDataset``'s (the seed ``set_rnd`` hands this dataset)."""
        self.transform.set_random_state(seed=seed, state=state)
        return self

    def case(self, index: int) -> StoredCase:
        entry = self.data[index]
        record = self.store.record(case_key(entry))
        if record is None or "volumes" not in record:
            raise FileNotFoundError(f"case {entry.get('case', entry.get('image'))} is not in the store {self.store.root}; "
                                    "run python -m common.data.preprocess with this run's config and overrides")
        return StoredCase(self.store, record)

    def _transform(self, index: int) -> Any:
        case = self.case(index)
        if self.reader is not None:
            data, start = self.reader(case), self.split + 1
        else:
            data, start = case.fields(), self.split
        if start >= len(self.transform.transforms):
            return data
        return self.transform(data, start=start)


def open_store_dataset(data: Sequence[dict], transform: Compose, cache_dir: str, num_workers: int = 1) -> StoreDataset:
    """The :class:`StoreDataset` of ``data`` through ``transform`` in ``cache_dir``.

    Cases the store lacks are preprocessed first (``num_workers`` threads; under DDP by rank 0 while the
    others wait). For thousands of cases run ``python -m common.data.preprocess`` beforehand: it uses
    processes and checks each case as it reads it. A case whose preprocessing fails stops the run here,
    with its problem (the pre-flight check has already dropped or refused the known-bad ones).
    """
    from common.data.case_checks import DataPreflightError
    from common.data.preprocess import build_store, missing_cases, plan_store
    from common.distributed import barrier, is_main_process

    plan = plan_store(transform, cache_dir)
    if plan.split < len(transform.transforms) and isinstance(transform.transforms[plan.split], (ToDevice, ToDeviced)):
        raise ValueError("cache: 'store' reads crops on the CPU; a device move before the random transforms (cache_on_device) "
                         "needs cache: 'memory' (set cache_on_device False, or cache memory)")
    if is_main_process():  # rank 0 alone writes; the others look only after it is done (no race on what is missing)
        todo, _ = missing_cases(data, plan)
        if todo:
            report = build_store(todo, transform, plan, workers=num_workers, processes=False, desc="preprocessing into the store")
            logger.info(report.line())
    barrier()
    todo, _ = missing_cases(data, plan)
    if todo:
        failed = {}
        for entry in todo:
            record = plan.store.record(case_key(entry))
            failed[str(entry.get("case", entry.get("image")))] = record["checks"]["problems"] if record else ["not written"]
        lines = [f"  - case {c}: {p}" for c, ps in list(failed.items())[:20] for p in ps]
        raise DataPreflightError(f"{len(failed)} case(s) could not be preprocessed into the store {plan.store.root}:\n" + "\n".join(lines))
    return StoreDataset(data, transform, plan.store, plan.split)
