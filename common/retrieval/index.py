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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from common.io import atomic_torch_save, atomic_write_text


class RetrievalError(ValueError):
    """An index file or query that cannot be used; the message names the file or case."""


@dataclass
class EmbeddingIndex:
    """Embeddings ``(N, F)`` with their ``case_ids`` (unique) and source paths."""

    case_ids: list[str] = field(default_factory=list)
    embeddings: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 0))
    sources: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.case_ids)

    def add(self, case_id: str, embedding: torch.Tensor, source: str = "") -> None:
        """Append one ``(F,)`` embedding; a case id already present is an error (ids name cases uniquely)."""
        if case_id in self.case_ids:
            raise RetrievalError(f"case id {case_id!r} is already in the index (from {self.sources[self.case_ids.index(case_id)]!r})")
        vec = embedding.detach().float().cpu().reshape(1, -1)
        if len(self) and vec.shape[1] != self.embeddings.shape[1]:
            raise RetrievalError(f"embedding of {case_id!r} has {vec.shape[1]} features, the index {self.embeddings.shape[1]}")
        self.embeddings = vec if not len(self) else torch.cat([self.embeddings, vec])
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
        index = cls(list(state["case_ids"]), state["embeddings"].float(), list(state.get("sources", [""] * len(state["case_ids"]))), dict(state.get("settings", {})))
        if index.embeddings.shape[0] != len(index.case_ids):
            raise RetrievalError(f"{path}: {len(index.case_ids)} case ids but {index.embeddings.shape[0]} embeddings")
        return index

    def embedding_of(self, case_id: str) -> torch.Tensor:
        if case_id not in self.case_ids:
            raise RetrievalError(f"case {case_id!r} is not in the index (it has {len(self)} cases, e.g. {self.case_ids[:5]})")
        return self.embeddings[self.case_ids.index(case_id)]

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
            if name is not None and name in self.case_ids:
                sims[i, self.case_ids.index(name)] = float("-inf")
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
