"""Runs: what identifies a training run (settings, cases, starting weights), the check that resumes
only the run that was asked for, provenance records next to exported weights, and the
pretraining-to-fine-tuning contract checked when weights are loaded. Shared infrastructure: imports
no method and no handler."""

from common.lazy import exports

#: name -> defining module, imported on first use (see :mod:`common.lazy`)
EXPORTS = {
    "build_record": "common.runs.provenance",
    "BundleRun": "common.runs.workflow",
    "BundleWorkflow": "common.runs.workflow",
    "check_contract": "common.runs.contract",
    "CHECKPOINT_NAME": "common.runs.checkpoints",
    "compare": "common.runs.contract",
    "flatten_settings": "common.runs.identity",
    "latest_checkpoint": "common.runs.checkpoints",
    "LENGTH_KEYS": "common.runs.identity",
    "list_checkpoints": "common.runs.checkpoints",
    "network_family": "common.runs.provenance",
    "OPERATIONAL_KEYS": "common.runs.identity",
    "override_hints": "common.runs.contract",
    "PreprocessingMismatchError": "common.runs.contract",
    "read_record": "common.runs.provenance",
    "require_file": "common.runs.required",
    "record_path": "common.runs.provenance",
    "RUN_RECORD": "common.runs.guard",
    "RunIdentity": "common.runs.guard",
    "RunMismatchError": "common.runs.guard",
    "supersede": "common.runs.guard",
    "training_command": "common.runs.required",
    "write_record": "common.runs.provenance",
}

__all__ = sorted(EXPORTS)
__getattr__, __dir__ = exports(__name__, EXPORTS)
