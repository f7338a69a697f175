"""CT-FM-style retrieval: scan embeddings from sliding patches, an index file, top-k cosine queries.

Command line (a thin front to the ``ctfm_retrieval`` bundle): ``python -m common.retrieval --help``.
"""

from common.retrieval.embed import (
    REDUCTIONS,
    PatchEmbeddingInferer,
    embed_scan,
    patch_embeddings,
    reduce_patches,
)
from common.retrieval.index import (
    EmbeddingIndex,
    RetrievalError,
    results_table,
    write_results,
)
from common.retrieval.workflow import pending_cases, query
from common.retrieval.writer import EmbeddingIndexWriter, existing_index

__all__ = [
    "REDUCTIONS",
    "EmbeddingIndex",
    "EmbeddingIndexWriter",
    "PatchEmbeddingInferer",
    "RetrievalError",
    "embed_scan",
    "existing_index",
    "patch_embeddings",
    "pending_cases",
    "query",
    "reduce_patches",
    "results_table",
    "write_results",
]
