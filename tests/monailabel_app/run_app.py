"""Drive an exported bundle through MONAI Label's bundle tasks, as its ``monaibundle`` sample app does.

Runs inside the MONAI Label environment (``ci/install_monailabel.sh``), not the repository's: the
bundle must work from its own folder with its vendored ``common`` copy. The app's ``main.py`` does
``get_bundle_models(app_dir, conf)`` then ``BundleInferTask(path, conf)`` / ``BundleTrainTask(path,
conf)`` per bundle; this script does the same, runs one inference and one training request, and
prints a JSON report on its last line for the test to check.

    python -P run_app.py <app_dir> <bundle_name> <image> <studies_dir>
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

# the repository's own package must not be importable: an exported bundle brings its own copy
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f)]

import nibabel as nib
import numpy as np
from monailabel.datastore.local import LocalDatastore
from monailabel.tasks.infer.bundle import BundleInferTask
from monailabel.tasks.train.bundle import BundleTrainTask
from monailabel.utils.others.generic import get_bundle_models


def main(app_dir: str, name: str, image: str, studies: str) -> dict:
    logging.basicConfig(level=logging.INFO)
    conf = {"models": name, "zoo_source": "github", "preload": "false"}  # "github": local bundles, no download
    path = get_bundle_models(app_dir, conf)[name]
    report: dict = {"bundle_path": path}

    infer = BundleInferTask(path, conf)
    report["infer_valid"] = infer.is_valid()
    report["labels"] = infer.labels
    result_file, result_json = infer({"image": image, "device": "cpu"})
    pred, src = nib.load(result_file), nib.load(image)
    values = np.unique(np.asarray(pred.dataobj))
    report["infer"] = {
        "shape": list(pred.shape),
        "input_shape": list(src.shape),
        "affine_max_abs_diff": float(np.abs(pred.affine - src.affine).max()),
        "values": [int(v) for v in values],
        "label_names": result_json.get("label_names"),
    }
    vendored = sys.modules[f"{name}_common"]  # the bundle's own copy, which its configs imported while running

    report["common_file"] = vendored.__file__
    report["plain_common_imported"] = "common" in sys.modules  # no unprefixed package: nothing for another bundle to shadow
    report["bundle_wrote_predictions"] = os.path.isdir(os.path.join(path, "eval", "predictions"))

    model_pt = Path(path) / "models" / "model.pt"
    before = model_pt.stat().st_mtime_ns
    datastore = LocalDatastore(studies, extensions=("*.nii.gz",))
    train = BundleTrainTask(path, conf)
    report["train_valid"] = train.is_valid()
    report["train_config_keys"] = sorted(train.config())
    request = {"model": name, "max_epochs": 1, "device": "cpu", "val_split": 0.34, "multi_gpu": False, "pretrained": True}
    train(request, datastore)
    report["train"] = {
        "datastore_cases": len(datastore.datalist()),
        "model_pt_rewritten": model_pt.stat().st_mtime_ns != before,
        "checkpoints": sorted(p.name for p in (Path(path) / "models" / "checkpoints").glob("*.pt")),
    }
    # the annotate -> train -> infer loop: a fresh infer task loads the model.pt training wrote
    result_file, _ = BundleInferTask(path, conf)({"image": image, "device": "cpu"})
    again = nib.load(result_file)
    report["reinfer_values_ok"] = again.shape == pred.shape and set(np.unique(np.asarray(again.dataobj)).astype(int)) <= {0, *infer.labels.values()}
    return report


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:5])))
