"""An exported bundle runs from another directory with its own copy of the common code."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest
import torch
import yaml
from conftest import BUNDLES, assert_ok, tiny
from monai.bundle import ConfigParser

from common.cli import format_override
from common.zoo.export import PACKAGE_ROOT, export_bundle, used_modules

pytestmark = pytest.mark.slow

TINY = tiny("btcv_finetune")


def test_used_modules_follow_imports_from_the_configs():
    # a package import alone brings its __init__ (names are imported on first use, common.lazy) ...
    package_only = {p.relative_to(PACKAGE_ROOT.parent).as_posix() for p in used_modules([{"imports": ["$import common.transforms"]}])}
    assert "common/__init__.py" in package_only and "common/transforms/__init__.py" in package_only and "common/lazy.py" in package_only
    assert "common/transforms/save.py" not in package_only
    # ... a name brings its defining module and what that imports
    files = {p.relative_to(PACKAGE_ROOT.parent).as_posix() for p in used_modules([{"imports": ["$import common.transforms"], "save": {"_target_": "common.transforms.SaveLabelMapd"}}])}
    assert "common/__init__.py" in files and "common/transforms/save.py" in files
    assert "common/io.py" in files  # imported by common.transforms.save
    assert not any(f.startswith(("common/experiments", "common/zoo", "common/masking")) for f in files)


def test_exported_bundle_runs_from_elsewhere_without_the_repo(tmp_path, phantom_root):
    src = tmp_path / "src" / "btcv_finetune"
    shutil.copytree(BUNDLES / "btcv_finetune", src, ignore=shutil.ignore_patterns("models", "eval", "runs"))
    parser = ConfigParser()
    parser.read_config(str(src / "configs" / "inference.json"))
    parser.update({**TINY, "bundle_root": str(src)})
    (src / "models").mkdir()
    torch.save(parser.get_parsed_content("network_def").state_dict(), src / "models" / "model.pt")
    (src / "models" / "big_ensemble.pt").write_bytes(bytes(30 * 1024 * 1024))
    (src / "models" / "checkpoints").mkdir()
    (src / "models" / "checkpoints" / "checkpoint_4.pt").write_bytes(b"training state")

    dest, zip_path = export_bundle(src, tmp_path / "dist", url_prefix="https://example.org/w")
    assert (dest / "models" / "model.pt").is_file() and not (dest / "models" / "big_ensemble.pt").exists()
    assert not (dest / "models" / "checkpoints").exists()
    large = yaml.safe_load((dest / "large_files.yml").read_text())["large_files"]  # the Model Zoo's layout
    digest = hashlib.sha256((src / "models" / "big_ensemble.pt").read_bytes()).hexdigest()
    assert large == [{"path": "models/big_ensemble.pt", "url": "https://example.org/w/big_ensemble.pt", "hash_val": digest, "hash_type": "sha256"}]
    assert (dest / "btcv_finetune_common" / "transforms" / "save.py").is_file() and not (dest / "btcv_finetune_common" / "experiments").exists()
    assert not (dest / "btcv_finetune_common" / "methods").exists() and not (dest / "btcv_finetune_common" / "config_sources").exists()  # no method code in a fine-tuning bundle
    vendored = json.loads((dest / "btcv_finetune_common" / "VENDORED.json").read_text())
    assert "transforms/save.py" in vendored["files"] and vendored["python_modules"] < vendored["of_python_modules"]
    assert sorted(p.relative_to(dest / "btcv_finetune_common").as_posix() for p in (dest / "btcv_finetune_common").rglob("*.py")) == [f for f in vendored["files"] if f.endswith(".py")]
    assert "_generated_" not in json.loads((dest / "configs" / "train.json").read_text())
    with zipfile.ZipFile(zip_path) as z:
        names = set(z.namelist())
    assert "btcv_finetune/configs/inference.json" in names and "btcv_finetune/btcv_finetune_common/paths.py" in names
    with pytest.raises(FileExistsError):
        export_bundle(src, tmp_path / "dist")

    # run it from an unrelated folder as on a machine with only the requirements: -P keeps the working
    # directory off sys.path, PYTHONPATH is cleared, and this checkout's editable-install finder is removed
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    files = json.dumps([str(dest / "configs" / "inference.json"), str(dest / "configs" / "demo.json")])
    overrides = {"phantom_dir": str(phantom_root), "num_phantoms": 5, "num_phantom_validation": 1, "num_workers": 0,
                 "run_dir": "@bundle_root",  # the exported weights, not a demo run's
                 "run": ["$print('COMMON_FROM', pydoc.locate('btcv_finetune_common').__file__, 'ROOT', @bundle_root)", "$@evaluator.run()"]}
    args = ["run", "--config_file", files]
    for k, v in overrides.items():
        args += [f"--{k}", format_override(v)]
    launcher = (
        "import runpy, sys; sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f)]; "
        f"sys.argv = ['monai.bundle'] + {args!r}; runpy.run_module('monai.bundle', run_name='__main__')"
    )
    cmd = [sys.executable, "-P", "-c", launcher]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = assert_ok(subprocess.run(cmd, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600))
    assert f"COMMON_FROM {dest / 'btcv_finetune_common' / '__init__.py'} ROOT {dest}" in out
    assert (dest / "eval" / "predictions" / "phantom_004_seg.nii.gz").is_file()

    # with this checkout installed as well (editable finder present, as on a developer's machine), the
    # bundle still imports its own copy: run() puts the bundle folder first on sys.path, and the
    # editable finder comes after the path-based one
    probe = ["$print('COMMON_FROM', pydoc.locate('btcv_finetune_common').__file__)"]
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(dest / "configs" / "inference.json"), "--run", json.dumps(probe)]
    out = assert_ok(subprocess.run(cmd, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600))
    assert f"COMMON_FROM {dest / 'btcv_finetune_common' / '__init__.py'}" in out

    # the docs' commands name the vendored workflow, which ships with the bundle and runs from its folder
    docs = (dest / "docs" / "README.md").read_text()
    assert "--workflow_name btcv_finetune_common.runs.BundleWorkflow" in docs and "--workflow_name common.runs" not in docs
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--workflow_name", "btcv_finetune_common.runs.BundleWorkflow",
           "--config_file", str(dest / "configs" / "inference.json"), "--run", json.dumps(probe)]
    out = assert_ok(subprocess.run(cmd, cwd=dest, env=env, capture_output=True, text=True, timeout=600))
    assert f"COMMON_FROM {dest / 'btcv_finetune_common' / '__init__.py'}" in out


@pytest.mark.slow
def test_two_exported_bundles_import_their_own_code_in_one_process(tmp_path):
    """A MONAI Label app serves several bundles from one process: each bundle's vendored package has its
    own name, so neither shadows the other (the second would otherwise get the first's partial copy)."""
    dests = {name: export_bundle(BUNDLES / name, tmp_path / "dist")[0] for name in ("btcv_finetune", "ctfm_segmentation")}
    code = (
        "import sys, json, pydoc; sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f)]; "
        f"sys.path[:0] = {[str(d) for d in dests.values()]!r}; "
        "a = pydoc.locate('btcv_finetune_common.transforms.SaveLabelMapd'); b = pydoc.locate('ctfm_segmentation_common.transforms.SaveLabelMapd'); "
        "print(json.dumps({'a': sys.modules[a.__module__].__file__, 'b': sys.modules[b.__module__].__file__, 'common': 'common' in sys.modules}))"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-P", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["a"].startswith(str(dests["btcv_finetune"] / "btcv_finetune_common"))
    assert got["b"].startswith(str(dests["ctfm_segmentation"] / "ctfm_segmentation_common")) and not got["common"]
