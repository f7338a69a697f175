"""The bad-input matrix: every training, evaluation and inference config of every bundle meets a dataset
with one case per input fault.

Training and evaluation stop before anything runs, with one message naming every bad file and its
fault; inference skips the bad cases (they are listed at the end of the run, see test_failsoft) and
keeps the good ones. Nothing written earlier in the bundle's folders is touched. A datalist without
the configured list and a mistyped command-line key are named too.
"""

from __future__ import annotations

import json

import pytest
import re

from bad_cases import DICOM_FAULTS, FAULTS, IMAGE_FAULTS, LABEL_FAULTS, write_bad_dataset
from conftest import BUNDLES
from monai.bundle import ConfigParser

from common.cli import CommandLineError, check_overrides
from common.data import DatalistError, DataPreflightError

SEG = {"class_names": ["a", "b"]}  # 3 classes: the "labels" case (value 7) is out of range
#: bundle -> (kind, overrides): kind "ct" 3D CT with label maps, "brats" 4-channel MRI, "class" class-number labels
BUNDLE_DATA = {
    "subfore_pretrain": ("ct", {}),
    "anatomask_pretrain": ("ct", {}),
    "ctfm_pretrain": ("ct", {}),
    "btcv_finetune": ("ct", SEG),
    "medcontext_unetr": ("ct", SEG),
    "ctfm_segmentation": ("ct", SEG),
    "brats_finetune": ("brats", {}),
    "ctfm_classification": ("class", {}),
    "ctfm_retrieval": ("ct", {}),
}
PRETRAINING = ("subfore_pretrain", "anatomask_pretrain", "ctfm_pretrain")
#: (bundle, config files merged in order, ids holding file lists)
CONFIGS = [
    *[(b, ["train"], ["train#files"]) for b in PRETRAINING],
    *[(b, ["train"], ["train#files", "validate#files"]) for b in ("btcv_finetune", "medcontext_unetr", "ctfm_segmentation", "brats_finetune", "ctfm_classification")],
    *[(b, ["train", "evaluate"], ["validate#files"]) for b in ("btcv_finetune", "medcontext_unetr", "ctfm_segmentation", "brats_finetune", "ctfm_classification")],
    *[(b, ["inference"], ["files"]) for b in ("btcv_finetune", "medcontext_unetr", "ctfm_segmentation", "brats_finetune", "ctfm_classification", "ctfm_retrieval")],
]


@pytest.fixture(scope="module")
def bad_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_matrix")
    return {
        "ct": write_bad_dataset(root / "ct", validation="all", dicom=True),
        "brats": write_bad_dataset(root / "brats", channels=4, validation="all"),
        "class": write_bad_dataset(root / "class", validation="all", class_labels=True),
    }


#: bundles that accept any modality (the rest are CT bundles: an MR series is a fault there)
ANY_MODALITY = ("anatomask_pretrain", "brats_finetune", "ctfm_classification")


def expected_faults(bundle: str, configs: list[str]) -> set[str]:
    labels_checked = bundle not in (*PRETRAINING, "ctfm_classification", "ctfm_retrieval") and "inference" not in configs
    dicom = set() if BUNDLE_DATA[bundle][0] != "ct" else set(DICOM_FAULTS) - ({"dicom_modality"} if bundle in ANY_MODALITY else set())
    return set(IMAGE_FAULTS) | (set(LABEL_FAULTS) if labels_checked else set()) | dicom


def case_of(path: str) -> str:
    """``.../imagesTr/good_0.nii.gz`` -> ``good_0``; a DICOM series folder ``.../imagesTr/dicom_gap`` -> ``dicom_gap``."""
    return str(path).rstrip("/").rsplit("/", 1)[-1].removesuffix(".nii.gz")


def preflight_error(error: BaseException) -> DataPreflightError | None:
    """The DataPreflightError behind MONAI's "Failed to evaluate" wrappers."""
    while error is not None and not isinstance(error, DataPreflightError):
        error = error.__cause__ or error.__context__
    return error


def assert_names_each_fault(message: str, faults: set[str]) -> None:
    for name in faults:
        line = next((ln for ln in message.splitlines() if re.search(rf"/{name}(\.nii\.gz)?(\b|$)", ln)), None)
        assert line is not None, f"{name} not reported:\n{message}"
        phrases = {"air": ("no foreground", "blank"), "labels": ("outside the",), "channels": ("channel(s) but the bundle expects",)}
        assert any(p in line for p in phrases.get(name, ({**FAULTS, **DICOM_FAULTS}[name],))), line
    assert not any(f"good_{i}.nii.gz" in message for i in range(2)) and "/dicom_good" not in message


@pytest.mark.parametrize(("bundle", "configs", "ids"), CONFIGS, ids=[f"{b}-{'+'.join(c)}" for b, c, _ in CONFIGS])
def test_bad_cases_are_all_named_before_anything_runs(tmp_path, bad_data, bundle, configs, ids):
    kind, overrides = BUNDLE_DATA[bundle]
    earlier = {tmp_path / "models" / "checkpoints" / "checkpoint_3.pt": b"an earlier run", tmp_path / "eval" / "validation_metrics.csv": b"case,dice\n"}
    for path, content in earlier.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    parser = ConfigParser()
    parser.read_config([str(BUNDLES / bundle / "configs" / f"{c}.json") for c in configs])
    parser.update({"bundle_root": str(tmp_path), "datalist": str(bad_data[kind]), "dataset_dir": "", **overrides})
    faults = expected_faults(bundle, configs)
    for config_id in ids:
        if "inference" in configs:  # skip, keep the good cases, remember the rest for the run's summary
            files = parser.get_parsed_content(config_id)
            kept = {case_of(f["image"]) for f in files}
            good = {"good_0", "good_1"} | (set(LABEL_FAULTS) if kind != "class" else set())  # inference reads no labels
            if kind == "ct":
                good |= {"dicom_good"} | ({"dicom_modality"} if bundle in ANY_MODALITY else set())
            assert kept == good
            skipped = parser.get_parsed_content("case_source").skipped
            assert {case_of(c) for c in skipped} == faults
            assert_names_each_fault("\n".join(f"{c}: {p}" for c, ps in skipped.items() for p in ps), faults)
            continue
        with pytest.raises(Exception) as err:
            parser.get_parsed_content(config_id)
        error = preflight_error(err.value)
        assert error is not None, repr(err.value)
        message = str(error)
        assert f"{len(faults)} of " in message and "nothing was trained" in message
        assert_names_each_fault(message, faults)
    for path, content in earlier.items():
        assert path.read_bytes() == content  # nothing earlier was lost or overwritten


ENTRY_CONFIGS = sorted({(b, tuple(c)) for b, c, _ in CONFIGS})


@pytest.mark.parametrize(("bundle", "configs"), ENTRY_CONFIGS, ids=[f"{b}-{'+'.join(c)}" for b, c in ENTRY_CONFIGS])
def test_wrong_datalist_key_and_unknown_command_line_key_are_named(tmp_path, bundle, configs):
    files = [str(BUNDLES / bundle / "configs" / f"{c}.json") for c in configs]
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"train": [{"image": "a.nii.gz"}], "val": []}))
    parser = ConfigParser()
    parser.read_config(files)
    parser.update({"bundle_root": str(tmp_path), "datalist": str(datalist)})
    list_id = next(i for b, c, ids in CONFIGS if b == bundle and tuple(c) == configs for i in ids)
    with pytest.raises(Exception) as err:
        parser.get_parsed_content(list_id)
    error = err.value
    while error is not None and not isinstance(error, DatalistError):
        error = error.__cause__ or error.__context__
    assert error is not None and "(it has: ['train', 'val'])" in str(error) and str(datalist) in str(error)

    with pytest.raises(CommandLineError, match=r"--learning_rat: no such key"):
        check_overrides(files, {"learning_rat": "0.1"})
