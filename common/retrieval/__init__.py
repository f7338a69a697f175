"""CT-FM-style retrieval: scan embeddings from sliding patches, an index file, top-k cosine queries.

Command line (a thin front to the ``ctfm_retrieval`` bundle): ``python -m common.retrieval --help``.
"""

from common.lazy import exports

#: name -> defining module, imported on first use (see :mod:`common.lazy`)
EXPORTS = {
    "embed_scan": "common.retrieval.embed",
    "EmbeddingIndex": "common.retrieval.index",
    "EmbeddingIndexWriter": "common.retrieval.writer",
    "existing_index": "common.retrieval.writer",
    "patch_embeddings": "common.retrieval.embed",
    "PatchEmbeddingInferer": "common.retrieval.embed",
    "pending_cases": "common.retrieval.workflow",
    "query": "common.retrieval.workflow",
    "reduce_patches": "common.retrieval.embed",
    "REDUCTIONS": "common.retrieval.embed",
    "results_table": "common.retrieval.index",
    "RetrievalError": "common.retrieval.index",
    "write_results": "common.retrieval.index",
}

__all__ = sorted(EXPORTS)
__getattr__, __dir__ = exports(__name__, EXPORTS)
