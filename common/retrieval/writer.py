"""Ignite handler that appends each embedded case to an :class:`EmbeddingIndex` file."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events

from common.handlers.checkpoint import is_main_process
from common.retrieval.index import EmbeddingIndex, RetrievalError

logger = logging.getLogger(__name__)


class EmbeddingIndexWriter:
    """Add each ``output[i][pred_key]`` under its ``batch[i][id_key]`` to the index at ``index_path``
    (a ``SupervisedEvaluator`` with ``decollate=True``: ``state.batch`` and ``state.output`` are per-case lists).

    The index on disk (if any) is loaded at start and must have the same ``settings``; it is saved
    atomically every ``save_every`` cases and at the end, so an interrupted run keeps what it embedded.
    """

    def __init__(self, index_path: str | os.PathLike, settings: Mapping[str, Any], save_every: int = 20, pred_key: str = "pred", id_key: str = "case_id", source_key: str = "source") -> None:
        self.index_path = Path(index_path)
        self.settings = dict(settings)
        self.save_every = save_every
        self.pred_key, self.id_key, self.source_key = pred_key, id_key, source_key
        self.index = EmbeddingIndex(settings=self.settings)
        self._added = 0
        self._start = 0.0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self.load)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.add)
        engine.add_event_handler(Events.COMPLETED, self.save)

    def load(self, engine: Engine | None = None) -> None:
        self.index = existing_index(self.index_path, self.settings) or EmbeddingIndex(settings=self.settings)
        self._added, self._start = 0, time.perf_counter()

    def add(self, engine: Engine) -> None:
        for item, output in zip(engine.state.batch, engine.state.output):
            if self.id_key not in item:
                raise RetrievalError(f"batch has no '{self.id_key}' (build the file list with common.retrieval.pending_cases)")
            self.index.add(item[self.id_key], output[self.pred_key], item.get(self.source_key, ""))
            self._added += 1
            if self._added % self.save_every == 0:
                self.save()

    def save(self, engine: Engine | None = None) -> None:
        if not is_main_process():
            return
        self.index.save(self.index_path)
        if engine is not None:
            rate = self._added / max(time.perf_counter() - self._start, 1e-9)
            logger.info(f"Embedding index {self.index_path}: {len(self.index)} cases ({self._added} added, {rate:.3f} scans/s).")


def existing_index(index_path: str | os.PathLike, settings: Mapping[str, Any]) -> EmbeddingIndex | None:
    """The index at ``index_path`` if there is one, checked to have been built with ``settings``."""
    if not os.path.isfile(index_path):
        return None
    index = EmbeddingIndex.load(index_path)
    if index.settings != dict(settings):
        raise RetrievalError(f"{index_path} was built with {index.settings}, this run uses {dict(settings)}; choose another index_path or delete it")
    return index
