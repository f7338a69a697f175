"""Data: embedded synthetic phantoms, datalist resolution/validation, and the datalist CLI."""

from common.data.datalist import (
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
from common.data.subset import take_fraction

__all__ = [
    "BTCV_LABELS",
    "CheckedThreadDataLoader",
    "DatalistError",
    "default_cache_dir",
    "ensure_phantom_dataset",
    "generate_case",
    "load_datalist",
    "resolve_cases",
    "select_fold",
    "take_fraction",
]
