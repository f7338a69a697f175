"""An embedding index: case ids and their embeddings in one file, top-k cosine queries, JSON/CSV results.

The file is a ``torch.save`` of ``{"case_ids": [str], "embeddings": (N, F) float tensor, "sources":
[str], "settings": {...}}``, written atomically, so an interrupted indexing run leaves the last
complete index and resumes from it (cases already in the index are not embedded again).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from common.io import atomic_torch_save, atomic_write_text


class RetrievalError(ValueError):
    """An index file or query that cannot be used; the message names the file or case."""


class EmbeddingIndex:
    """Embeddings ``(N, F)`` with their ``case_ids`` (unique) and source paths.

    Adding a case is O(1): rows are kept in a list and stacked once when ``embeddings`` is read
    (concatenating on every add would copy the whole index per case while a large folder is embedded).
    """

    def __init__(self, case_ids: Sequence[str] = (), embeddings: torch.Tensor | None = None, sources: Sequence[str] = (), settings: dict[str, Any] | None = None) -> None:
        self.case_ids: list[str] = list(case_ids)
        self.sources: list[str] = list(sources) or [""] * len(self.case_ids)
        self.settings: dict[str, Any] = dict(settings or {})
        self._rows: list[torch.Tensor] = list(embeddings.float()) if embeddings is not None else []
        self._stacked: torch.Tensor | None = None
        self._position = {c: i for i, c in enumerate(self.case_ids)}
        if len(self._rows) != len(self.case_ids):
            raise RetrievalError(f"{len(self.case_ids)} case ids but {len(self._rows)} embeddings")

    @property
    def embeddings(self) -> torch.Tensor:
        """``(N, F)`` float tensor of every case, in ``case_ids`` order."""
        if self._stacked is None or len(self._stacked) != len(self._rows):
            self._stacked = torch.stack(self._rows) if self._rows else torch.zeros(0, 0)
        return self._stacked

    def __len__(self) -> int:
        return len(self.case_ids)

    def add(self, case_id: str, embedding: torch.Tensor, source: str = "") -> None:
        """Append one ``(F,)`` embedding; a case id already present is an error (ids name cases uniquely)."""
        if case_id in self._position:
            raise RetrievalError(f"case id {case_id!r} is already in the index (from {self.sources[self._position[case_id]]!r})")
        vec = embedding.detach().float().cpu().reshape(-1)
        if self._rows and vec.shape[0] != self._rows[0].shape[0]:
            raise RetrievalError(f"embedding of {case_id!r} has {vec.shape[0]} features, the index {self._rows[0].shape[0]}")
        self._position[case_id] = len(self.case_ids)
        self._rows.append(vec)
        self.case_ids.append(case_id)
        self.sources.append(str(source))

    def save(self, path: str | os.PathLike) -> Path:
        state = {"case_ids": self.case_ids, "embeddings": self.embeddings, "sources": self.sources, "settings": self.settings}
        return atomic_torch_save(state, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> EmbeddingIndex:
        if not os.path.isfile(path):
            raise RetrievalError(f"embedding index {path} does not exist (build it with the ctfm_retrieval bundle's inference.json)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise RetrievalError(f"cannot read embedding index {path}: {type(e).__name__}: {e}") from e
        missing = {"case_ids", "embeddings"} - set(state) if isinstance(state, dict) else {"case_ids", "embeddings"}
        if missing:
            raise RetrievalError(f"{path} is not an embedding index (missing {sorted(missing)})")
        try:
            return cls(state["case_ids"], state["embeddings"], state.get("sources", ()), state.get("settings"))
        except RetrievalError as e:
            raise RetrievalError(f"{path}: {e}") from e

    def embedding_of(self, case_id: str) -> torch.Tensor:
        if case_id not in self._position:
            raise RetrievalError(f"case {case_id!r} is not in the index (it has {len(self)} cases, e.g. {self.case_ids[:5]})")
        return self._rows[self._position[case_id]]

    def search(self, queries: torch.Tensor, k: int = 5, exclude: Sequence[str | None] | None = None) -> list[list[tuple[str, float]]]:
        """Top-``k`` cases by cosine similarity for each row of ``queries`` ``(Q, F)`` (or one ``(F,)``).

        ``exclude[q]`` names a case left out of query ``q``'s results (e.g. the query case itself).
        Returns, per query, ``[(case_id, cosine), ...]`` best first.
        """
        if not len(self):
            raise RetrievalError("the index is empty")
        q = queries.float().reshape(-1, self.embeddings.shape[1]) if queries.dim() == 1 else queries.float()
        if q.shape[1] != self.embeddings.shape[1]:
            raise RetrievalError(f"query has {q.shape[1]} features, the index {self.embeddings.shape[1]}")
        sims = F.normalize(q, dim=1) @ F.normalize(self.embeddings, dim=1).T  # (Q, N)
        for i, name in enumerate(exclude or []):
            if name in self._position:
                sims[i, self._position[name]] = float("-inf")
        k = max(1, min(k, len(self) - (1 if exclude else 0)))
        scores, idx = sims.topk(k, dim=1)
        return [[(self.case_ids[j], float(s)) for s, j in zip(srow.tolist(), irow.tolist())] for srow, irow in zip(scores, idx)]


def results_table(query_names: Sequence[str], results: Sequence[Sequence[tuple[str, float]]]) -> list[dict[str, Any]]:
    """Flat rows ``{"query", "rank", "case_id", "cosine"}`` (rank from 1)."""
    return [
        {"query": name, "rank": r + 1, "case_id": case, "cosine": round(score, 6)}
        for name, hits in zip(query_names, results)
        for r, (case, score) in enumerate(hits)
    ]


def write_results(rows: Sequence[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Write result rows as ``.json`` (a list) or ``.csv`` (by the file's suffix), atomically."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["query", "rank", "case_id", "cosine"])
        writer.writeheader()
        writer.writerows(rows)
        return atomic_write_text(path, buf.getvalue())
    if path.suffix.lower() == ".json":
        return atomic_write_text(path, json.dumps(list(rows), indent=2))
    raise RetrievalError(f"results file {path} must end in .json or .csv")
