"""``ThreadDataLoader`` that re-raises data errors instead of ending the epoch early.

MONAI's ``ThreadBuffer`` iterates the source in a background thread; an exception there (a corrupt
file, a failing random transform) only prints "Exception in thread" and the iterator simply stops.
Training then runs a short epoch and inference reports success with cases missing. Here the
buffering thread hands its exception to the consuming thread, which raises it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from queue import Empty, Full, Queue
from threading import Event, Thread
from typing import Any

from monai.data import ThreadDataLoader

_DONE = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def buffered(source: Iterable, buffer_size: int = 1, timeout: float = 0.01) -> Iterator[Any]:
    """Iterate ``source`` in a background thread, ``buffer_size`` items ahead; its exceptions re-raise here."""
    queue: Queue = Queue(buffer_size)
    stop = Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                queue.put(item, timeout=timeout)
                return True
            except Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in source:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which re-raises it
            put(_Failure(e))

    thread = Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            try:
                item = queue.get(timeout=timeout)
            except Empty:
                if not thread.is_alive() and queue.empty():
                    return
                continue
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()


class CheckedThreadDataLoader(ThreadDataLoader):
    """Drop-in ``monai.data.ThreadDataLoader`` whose data errors propagate (same arguments).

    Also refuses a loader that would yield nothing (fewer samples than ``batch_size`` with
    ``drop_last``): Ignite would otherwise "train" zero iterations with only a warning.
    """

    def __init__(self, dataset, *args: Any, **kwargs: Any) -> None:
        super().__init__(dataset, *args, **kwargs)
        sampler_len = len(self.sampler) if hasattr(self.sampler, "__len__") else None
        if self.drop_last and self.batch_size and sampler_len is not None and sampler_len < self.batch_size:
            raise ValueError(
                f"the data loader has {sampler_len} samples but batch_size {self.batch_size} with drop_last: it would yield no batch; "
                f"lower batch_size or add cases"
            )

    def __iter__(self):
        for batch in buffered(super(ThreadDataLoader, self).__iter__(), self.buffer_size, self.buffer_timeout):
            for _ in range(self.repeats):  # MONAI's meaning: each batch yielded ``repeats`` times
                yield batch
