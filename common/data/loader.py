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
    """Drop-in ``monai.data.ThreadDataLoader`` whose data errors propagate (same arguments)."""

    def __iter__(self):
        for batch in buffered(super(ThreadDataLoader, self).__iter__(), self.buffer_size, self.buffer_timeout):
            for _ in range(self.repeats):  # MONAI's meaning: each batch yielded ``repeats`` times
                yield batch
