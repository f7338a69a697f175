"""The retrieval jobs' Python side (the ``ctfm_retrieval`` bundle wires them):

- :func:`pending_cases`: the datalist entries not yet in the index, tagged with their case id, so an
  interrupted or grown index run embeds only what is missing;
- :func:`query`: top-k cosine neighbours of scans (embedded on the fly), stored embeddings or cases
  already in the index; results as JSON or CSV.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from common.networks.weights import unwrap
from common.retrieval.embed import embed_scan
from common.retrieval.index import (
    EmbeddingIndex,
    RetrievalError,
    results_table,
    write_results,
)
from common.retrieval.writer import existing_index
from common.transforms.save import case_name

logger = logging.getLogger(__name__)


def pending_cases(files: Sequence[Mapping[str, Any]], index_path: str | os.PathLike, settings: Mapping[str, Any], image_key: str = "image") -> list[dict]:
    """Entries of ``files`` whose case id (image file name without suffix) is not in the index yet,
    each with ``case_id`` and ``source`` added. Repeated case ids, or an index built with other
    ``settings``, are errors."""
    ids = [case_name(f[image_key]) for f in files]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise RetrievalError(f"case ids (image file names) must be unique, but these repeat: {dupes[:5]}")
    index = existing_index(index_path, settings)
    done = set(index.case_ids) if index else set()
    todo = [{**f, "case_id": i, "source": str(f[image_key])} for f, i in zip(files, ids) if i not in done]
    if done:
        logger.info(f"{index_path} already holds {len(done)} cases; {len(todo)} left to embed.")
    return todo


def query(
    index_path: str | os.PathLike,
    output: str | os.PathLike,
    top_k: int = 5,
    images: Sequence[str] = (),
    cases: Sequence[str] = (),
    embeddings: Sequence[str] = (),
    preprocessing: Callable | None = None,
    embedder: nn.Module | None = None,
    exclude_self: bool = True,
    image_key: str = "image",
) -> list[dict[str, Any]]:
    """Answer top-``k`` cosine queries against ``index_path`` and write them to ``output`` (.json/.csv).

    Queries come from ``images`` (scan files, preprocessed and embedded with the index's patch size
    and reduction; needs ``preprocessing`` and ``embedder``), ``cases`` (ids already in the index;
    with ``exclude_self`` the case itself is left out of its results) and ``embeddings`` (``.pt``
    files holding one ``(F,)`` tensor). Returns the rows written.
    """
    index = EmbeddingIndex.load(index_path)
    names, vectors, exclude = [], [], []
    for case in cases:
        names.append(case)
        vectors.append(index.embedding_of(case))
        exclude.append(case if exclude_self else None)
    for path in embeddings:
        if not os.path.isfile(path):
            raise RetrievalError(f"query embedding file {path} does not exist")
        vec = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(vec, torch.Tensor):
            raise RetrievalError(f"{path} must hold one embedding tensor, got {type(vec).__name__}")
        names.append(case_name(path))
        vectors.append(vec.reshape(-1).float())
        exclude.append(None)
    if images:
        if preprocessing is None or embedder is None:
            raise RetrievalError("image queries need the preprocessing and the embedder (run them through the ctfm_retrieval bundle)")
        patch_size, reduce = index.settings.get("patch_size", (24, 128, 128)), index.settings.get("reduce", "min")
        overlap = index.settings.get("patch_overlap", 0.0)  # indexes written before the setting existed used 0
        for path in images:
            if not os.path.isfile(path):
                raise RetrievalError(f"query image {path} does not exist")
            image = preprocessing({image_key: str(path)})[image_key]
            image = image.as_tensor() if hasattr(image, "as_tensor") else image
            names.append(case_name(path))
            vectors.append(embed_scan(unwrap(embedder), image, patch_size, reduce, overlap=overlap).cpu())
            exclude.append(None)
    if not vectors:
        raise RetrievalError("no query given: pass query images, cases in the index or embedding files")
    hits = index.search(torch.stack(vectors), top_k, exclude if any(e is not None for e in exclude) else None)
    rows = results_table(names, hits)
    write_results(rows, output)
    logger.info(f"Wrote {len(rows)} results for {len(names)} queries to {output}")
    return rows

