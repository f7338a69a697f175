"""Retrieval from the command line: a thin front to the ``ctfm_retrieval`` bundle's configs.

    # embed every scan of a folder (or --datalist d.json) into one index file (resumes if interrupted)
    python -m common.retrieval index --dataset_dir /data/ct --pretrained /weights/ctfm_encoder.pt --index_path idx.pt

    # top-5 neighbours of new scans, of cases already indexed, or of saved embeddings; .json or .csv
    python -m common.retrieval query /data/new/scan1.nii.gz --cases "['case_012']" --index_path idx.pt --output hits.csv

Any other bundle setting can be given the same way (``--patch_size "[24,128,128]" --reduce mean``); the runs go
through :class:`common.runs.BundleWorkflow`, so a misspelt setting stops with its name, as ``monai.bundle run`` does.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from monai.bundle import run

from common.cli import command, value_list
from common.paths import locate_bundle
from common.runs.workflow import WORKFLOW_NAME


def _configs(*names: str) -> list[str]:
    root = Path(locate_bundle("ctfm_retrieval")) / "configs"
    return [str(root / n) for n in names]


def _set(overrides: dict[str, Any], **given: Any) -> dict[str, Any]:
    return {**overrides, **{k: v for k, v in given.items() if v is not None}}


def index(dataset_dir: str = "", datalist: str = "", pretrained: str | None = None, index_path: str | None = None, **overrides: Any) -> None:
    """Embed the scans of ``dataset_dir`` / ``datalist`` into ``index_path`` (default: the bundle's eval/embeddings.pt)."""
    run(config_file=_configs("inference.json"), workflow_name=WORKFLOW_NAME,
        **_set(overrides, dataset_dir=dataset_dir, datalist=datalist, pretrained=pretrained, index_path=index_path))


def query(
    *images: str,
    cases: str | list[str] | tuple[str, ...] = (),
    embeddings: str | list[str] | tuple[str, ...] = (),
    index_path: str | None = None,
    top_k: int = 5,
    output: str | None = None,
    pretrained: str | None = None,
    **overrides: Any,
) -> None:
    """Top-``top_k`` cosine neighbours in ``index_path`` of scan files, indexed cases and ``.pt`` embeddings; written to ``output``.
    ``cases``, ``embeddings``: one, or a list."""
    run(
        config_file=_configs("inference.json", "query.json"),
        workflow_name=WORKFLOW_NAME,
        **_set(overrides, query_images=list(images), query_cases=value_list(cases), query_embeddings=value_list(embeddings), index_path=index_path,
               top_k=top_k, results_path=output, pretrained=pretrained),
    )


COMMANDS = {"index": index, "query": query}

if __name__ == "__main__":
    sys.exit(command(COMMANDS))
