"""Data: embedded synthetic CT, CT triage and brain-tumour MRI phantoms, datalist resolution/validation, the pre-flight case check, the
datalist CLI, the dataset cache (memory/disk/none), seeded training subsets and an error-propagating thread loader."""

from common.lazy import exports

#: name -> defining module, imported on first use (see :mod:`common.lazy`)
EXPORTS = {
    "BTCV_LABELS": "common.data.phantoms",
    "CACHE_MODES": "common.data.cache",
    "CaseChecks": "common.data.case_checks",
    "CaseSource": "common.data.datalist",
    "checked_cases": "common.data.case_checks",
    "CheckedThreadDataLoader": "common.data.loader",
    "DatalistError": "common.data.datalist",
    "DataPreflightError": "common.data.case_checks",
    "default_cache_dir": "common.data.phantoms",
    "ensure_brats_phantom_dataset": "common.data.brats_phantoms",
    "ensure_phantom_dataset": "common.data.phantoms",
    "ensure_triage_phantom_dataset": "common.data.triage_phantoms",
    "generate_brats_case": "common.data.brats_phantoms",
    "generate_case": "common.data.phantoms",
    "generate_triage_case": "common.data.triage_phantoms",
    "load_datalist": "common.data.datalist",
    "make_dataset": "common.data.cache",
    "preflight": "common.data.case_checks",
    "PreflightReport": "common.data.case_checks",
    "resolve_cases": "common.data.datalist",
    "SeededIndex": "common.data.sampler",
    "select_fold": "common.data.datalist",
    "StoreDataset": "common.data.store_dataset",
    "StreamSampler": "common.data.sampler",
    "take_fraction": "common.data.subset",
    "TRIAGE_CLASSES": "common.data.triage_phantoms",
}

__all__ = sorted(EXPORTS)
__getattr__, __dir__ = exports(__name__, EXPORTS)
