"""Runs: what identifies a training run (settings, cases, starting weights), the check that resumes
only the run that was asked for, provenance records next to exported weights, and the
pretraining-to-fine-tuning contract checked when weights are loaded. Shared infrastructure: imports
no method and no handler."""

from common.runs.checkpoints import CHECKPOINT_NAME, latest_checkpoint, list_checkpoints
from common.runs.contract import PreprocessingMismatchError, check_contract, compare, override_hints
from common.runs.guard import RUN_RECORD, RunIdentity, RunMismatchError, supersede
from common.runs.identity import LENGTH_KEYS, OPERATIONAL_KEYS, active_parser, flatten_settings
from common.runs.provenance import build_record, network_family, read_record, record_path, write_record

__all__ = [
    "CHECKPOINT_NAME",
    "LENGTH_KEYS",
    "OPERATIONAL_KEYS",
    "PreprocessingMismatchError",
    "RUN_RECORD",
    "RunIdentity",
    "RunMismatchError",
    "active_parser",
    "build_record",
    "check_contract",
    "compare",
    "flatten_settings",
    "latest_checkpoint",
    "list_checkpoints",
    "network_family",
    "override_hints",
    "read_record",
    "record_path",
    "supersede",
    "write_record",
]
