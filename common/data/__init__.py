"""Data: embedded synthetic CT, CT triage and brain-tumour MRI phantoms, datalist resolution/validation, the pre-flight case check, the
datalist CLI, the dataset cache (memory/disk/none), seeded training subsets and an error-propagating thread loader."""

from common.data.brats_phantoms import ensure_brats_phantom_dataset, generate_brats_case
from common.data.cache import CACHE_MODES, make_dataset
from common.data.datalist import (
    CaseSource,
    DatalistError,
    load_datalist,
    resolve_cases,
    select_fold,
)
from common.data.loader import CheckedThreadDataLoader
from common.data.phantoms import (
    BTCV_LABELS,
    default_cache_dir,
    ensure_phantom_dataset,
    generate_case,
)
from common.data.preflight import (
    CaseChecks,
    DataPreflightError,
    PreflightReport,
    checked_cases,
    preflight,
)
from common.data.subset import take_fraction
from common.data.triage_phantoms import (
    TRIAGE_CLASSES,
    ensure_triage_phantom_dataset,
    generate_triage_case,
)

__all__ = [
    "BTCV_LABELS",
    "CACHE_MODES",
    "TRIAGE_CLASSES",
    "CaseChecks",
    "CaseSource",
    "CheckedThreadDataLoader",
    "DataPreflightError",
    "DatalistError",
    "PreflightReport",
    "checked_cases",
    "default_cache_dir",
    "ensure_brats_phantom_dataset",
    "ensure_phantom_dataset",
    "ensure_triage_phantom_dataset",
    "generate_brats_case",
    "generate_case",
    "generate_triage_case",
    "load_datalist",
    "make_dataset",
    "preflight",
    "resolve_cases",
    "select_fold",
    "take_fraction",
]
