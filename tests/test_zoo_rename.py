"""Export renaming by parsing: only the package's own names and exact module paths change, and a config that
names something the vendored copy lacks fails the export, naming it (fast tier; the exported bundles run in
tests/test_zoo_export.py)."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import BUNDLES

from common.zoo.export import ExportError, export_bundle, lazy_common_imports


def test_config_expressions_rename_common_names_only():
    named: set[str] = set()
    config = {
        "imports": ["$import os", "$import common.data"],
        "weight": "$@net.common.weight",  # an attribute named common of a referenced object
        "url": "$f('https://x.org/common.html')",  # a string that mentions common
        "root": "$common.paths.locate_bundle('btcv_finetune')",
        "files": "$common.data.select_fold(@case_source.cases(@val_datalist_keys), @fold, 'val')",
        "epochs": "$@train#dataset.n + common.engines.epochs_for_steps(@num_steps, @epoch_length)",
        "loader": {"_target_": "common.data.CheckedThreadDataLoader", "dataset": "@train#dataset", "note": "common.data in prose"},
    }
    out = lazy_common_imports(config, "b_common", named)
    assert out["imports"] == ["$import os", "$import pydoc"]
    assert out["weight"] == "$@net.common.weight" and out["url"] == "$f('https://x.org/common.html')"
    assert out["root"] == "$pydoc.locate('b_common.paths.locate_bundle')('btcv_finetune')"
    assert out["files"] == "$pydoc.locate('b_common.data.select_fold')(@case_source.cases(@val_datalist_keys), @fold, 'val')"
    assert out["epochs"] == "$@train#dataset.n + pydoc.locate('b_common.engines.epochs_for_steps')(@num_steps, @epoch_length)"
    assert out["loader"] == {"_target_": "b_common.data.CheckedThreadDataLoader", "dataset": "@train#dataset", "note": "common.data in prose"}
    assert named == {"b_common.paths.locate_bundle", "b_common.data.select_fold", "b_common.engines.epochs_for_steps",
                     "b_common.data.CheckedThreadDataLoader", "b_common.data"}  # the last from the imports entry


def test_a_config_naming_what_was_not_vendored_fails_the_export_naming_it(tmp_path):
    bundle = tmp_path / "btcv_finetune"
    shutil.copytree(BUNDLES / "btcv_finetune" / "configs", bundle / "configs")
    inference = json.loads((bundle / "configs" / "inference.json").read_text())
    inference["typo"] = "$common.data.select_folds(@files, 0, 'val')"  # select_fold exists, select_folds does not
    inference["gone"] = {"_target_": "common.nowhere.Thing"}
    (bundle / "configs" / "inference.json").write_text(json.dumps(inference))
    with pytest.raises(ExportError) as failed:
        export_bundle(bundle, tmp_path / "dist")
    assert "common.data.select_folds" in str(failed.value) and "common.nowhere.Thing" in str(failed.value)
    assert not (tmp_path / "dist" / "btcv_finetune").exists()  # nothing half-exported is left


def test_rename_package_rewrites_the_package_and_nothing_else():
    from common.zoo.export import rename_package, vendored_package

    src = '''"""See common.transforms.save; the common case."""
URL = "https://x.org/common.html"
import common
from common.lazy import exports
import common.data as cd
EXPORTS = {"a": "common.transforms.brats"}
ROOT = Path(common.__file__), getattr(common, "__version__", "")
def f(common_x):
    common = 1
    return common, foo.common.bar
'''
    out = rename_package(src, "ab_common")
    assert out.splitlines() == [
        '"""See common.transforms.save; the common case."""', 'URL = "https://x.org/common.html"', "import ab_common as common", "from ab_common.lazy import exports",
        "import ab_common.data as cd", 'EXPORTS = {"a": "ab_common.transforms.brats"}', 'ROOT = Path(common.__file__), getattr(common, "__version__", "")',
        "def f(common_x):", "    common = 1", "    return common, foo.common.bar"]
    with pytest.raises(ValueError, match="cannot be vendored under another name"):
        rename_package("import common.data\n", "ab_common")
    assert vendored_package("btcv_finetune") == "btcv_finetune_common" and vendored_package("3d-seg") == "b_3d_seg_common"


