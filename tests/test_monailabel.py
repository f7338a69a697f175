"""Exported segmentation bundles run in the real MONAI Label package's bundle infer and train tasks.

MONAI Label lives in its own environment (``bash ci/install_monailabel.sh``; CI creates it): its
pins (pydicom 2, jsonschema 3, numpy 1) would otherwise replace the project's. The test exports a
CPU-sized copy of each bundle into a temporary app's ``model/`` folder and runs
``tests/monailabel_app/run_app.py`` there with the repository hidden, as the ``monaibundle`` sample
app would: one inference on a real CT, one training epoch from a ``LocalDatastore`` holding that CT
with its manual spleen label and two phantoms, and one more inference with the weights it trained.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import BUNDLES, REPO, assert_ok, real_data
from monai.bundle import ConfigParser

from common.zoo.export import export_bundle

pytestmark = pytest.mark.slow

APP = Path(__file__).resolve().parent / "monailabel_app"
MONAILABEL_PYTHON = Path(os.environ.get("MONAILABEL_PYTHON", REPO / ".venv-monailabel" / "bin" / "python"))
#: CPU-sized network and run, written into the exported configs (MONAI Label passes no overrides to inference).
TINY = {
    "feature_size": 12, "network_def#depths": [1, 1, 1, 1], "network_def#window_size": 4, "pixdim": [3.0, 3.0, 3.0],
    "roi_size": [64, 64, 64], "num_workers": 0, "cache_rate": 0.0, "epoch_length": 2, "num_steps": 2, "warmup_steps": 1,
}


@pytest.fixture(scope="module")
def monailabel_python() -> Path:
    if not MONAILABEL_PYTHON.is_file():
        pytest.skip(f"no MONAI Label environment at {MONAILABEL_PYTHON}: run `bash ci/install_monailabel.sh`")
    return MONAILABEL_PYTHON


def export_tiny(name: str, app: Path, tmp: Path) -> Path:
    """Export ``bundles/<name>`` with :data:`TINY` baked into its configs and random weights in models/model.pt."""
    src = tmp / "src" / name
    shutil.copytree(BUNDLES / name, src, ignore=shutil.ignore_patterns("models", "eval", "runs"))
    for cfg in ("train.json", "inference.json"):
        parser = ConfigParser()
        parser.read_config(str(src / "configs" / cfg))
        for key, value in TINY.items():
            if key.split("#")[0] in parser:
                parser[key] = value
        ConfigParser.export_config_file(parser.config, str(src / "configs" / cfg), indent=2)
    parser = ConfigParser()
    parser.read_config(str(src / "configs" / "inference.json"))
    parser["bundle_root"] = str(src)
    (src / "models").mkdir()
    torch.save(parser.get_parsed_content("network_def").state_dict(), src / "models" / "model.pt")
    dest, _ = export_bundle(src, app / "model")
    return dest


def link_case(studies: Path, name: str, image: Path, label: Path) -> None:
    """A ``LocalDatastore`` case: the image in the studies folder, its final label under labels/final."""
    (studies / "labels" / "final").mkdir(parents=True, exist_ok=True)
    os.symlink(image, studies / name)
    os.symlink(label, studies / "labels" / "final" / name)


def run_app(python: Path, app: Path, name: str, image: Path, studies: Path, cwd: Path) -> dict:
    # the repository stays off sys.path: -P, no PYTHONPATH but the torchvision stand-in, and
    # run_app.py drops this checkout's editable-install finder
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(APP / "shim"), "OMP_NUM_THREADS": "2"}
    cmd = [str(python), "-P", str(APP / "run_app.py"), str(app), name, str(image), str(studies)]
    out = assert_ok(subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600))
    return json.loads([line for line in out.splitlines() if line.startswith('{"bundle_path"')][-1])


def check_report(report: dict, bundle: Path, labels: dict) -> None:
    assert report["infer_valid"] and report["train_valid"]
    assert report["labels"] == labels  # from metadata channel_def, background left out
    assert report["common_file"] == str(bundle / f"{bundle.name}_common" / "__init__.py") and not report["plain_common_imported"]  # its own copy
    infer = report["infer"]
    assert infer["shape"] == infer["input_shape"][:3] and infer["affine_max_abs_diff"] < 1e-4  # back on the input grid
    assert set(infer["values"]) <= {0, *labels.values()}
    assert not report["bundle_wrote_predictions"]  # the bundle's file writer was dropped; MONAI Label wrote the result
    train = report["train"]
    assert train["datastore_cases"] == 3 and train["checkpoints"] and train["model_pt_rewritten"]
    assert report["reinfer_values_ok"]  # the trained model.pt loads back into the infer task


def test_btcv_finetune_in_monailabel(monailabel_python, tmp_path):
    from common.data import ensure_phantom_dataset

    ct = real_data("msd_spleen_crop", "sub-spleen2_ct.nii.gz")
    app = tmp_path / "app"
    bundle = export_tiny("btcv_finetune", app, tmp_path)
    studies = tmp_path / "studies"
    link_case(studies, "spleen2.nii.gz", ct, ct.parent / "sub-spleen2_ct_seg-manual.nii.gz")  # manual label: 1 = spleen, as in BTCV
    phantoms = ensure_phantom_dataset(tmp_path / "phantoms", num_cases=2, num_validation=0)
    for case in sorted((phantoms / "imagesTr").glob("*.nii.gz")):
        link_case(studies, case.name, case, case.parent.parent / "labelsTr" / case.name)
    report = run_app(monailabel_python, app, "btcv_finetune", ct, studies, tmp_path)
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    channels = meta["network_data_format"]["outputs"]["pred"]["channel_def"]
    check_report(report, bundle, {v: int(k) for k, v in channels.items() if v != "background"})

