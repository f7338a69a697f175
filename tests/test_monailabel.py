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
from conftest import BUNDLES, REPO, assert_ok, real_data, tiny
from monai.bundle import ConfigParser

from common.zoo.export import export_bundle

pytestmark = pytest.mark.slow

APP = Path(__file__).resolve().parent / "monailabel_app"
MONAILABEL_PYTHON = Path(os.environ.get("MONAILABEL_PYTHON", REPO / ".venv-monailabel" / "bin" / "python"))
#: CPU-sized network and run, written into the exported configs (MONAI Label passes no overrides to inference).
TINY = {
    **tiny("btcv_finetune"), "pixdim": [3.0, 3.0, 3.0],
    "roi_size": [64, 64, 64], "num_workers": 0, "cache_rate": 0.0, "epoch_length": 2, "num_steps": 2, "warmup_steps": 1,
}


@pytest.fixture(scope="module")
def monailabel_python() -> Path:
    if not MONAILABEL_PYTHON.is_file():
        pytest.skip(f"no MONAI Label environment at {MONAILABEL_PYTHON}: run `bash ci/install_monailabel.sh`")
    return MONAILABEL_PYTHON


#: CPU-sized CT-FM SegResNetDS (ctfm_segmentation), as TINY is for SwinUNETR.
TINY_SEGRESNETDS = {**tiny("ctfm_segmentation"), "pixdim": [3.0, 3.0, 3.0], "roi_size": [64, 64, 64], "num_workers": 0,
                    "cache_rate": 0.0, "epoch_length": 2, "num_steps": 2, "warmup_steps": 1}


def export_tiny(name: str, app: Path, tmp: Path, tiny: dict | None = None, monailabel: bool = False) -> Path:
    """Export ``bundles/<name>`` with ``tiny`` (default :data:`TINY`) baked into its configs and random weights in models/model.pt
    (``monailabel``: metadata naming the written label map, ``python -m common.zoo.export --monailabel``)."""
    tiny = TINY if tiny is None else tiny
    src = tmp / "src" / name
    shutil.copytree(BUNDLES / name, src, ignore=shutil.ignore_patterns("models", "eval", "runs"))
    for cfg in ("train.json", "inference.json"):
        parser = ConfigParser()
        parser.read_config(str(src / "configs" / cfg))
        for key, value in tiny.items():
            if key.split("#")[0] in parser:
                parser[key] = value
        ConfigParser.export_config_file(parser.config, str(src / "configs" / cfg), indent=2)
    parser = ConfigParser()
    parser.read_config(str(src / "configs" / "inference.json"))
    parser["bundle_root"] = str(src)
    (src / "models").mkdir()
    torch.save(parser.get_parsed_content("network_def").state_dict(), src / "models" / "model.pt")
    dest, _ = export_bundle(src, app / "model", monailabel=monailabel)
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



def _multipart(field: str, path: Path) -> tuple[bytes, str]:
    boundary = "ssl3d-test-boundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{path.name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    return head + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _four_sequence_mr(tmp: Path) -> Path:
    """The real MR as a 4-sequence brats_finetune input (one 4D file, the sequences differently scaled)."""
    import nibabel as nib
    import numpy as np

    mr = nib.load(real_data("ts_mr_small", "example_mr_sm.nii.gz"))
    data = np.asarray(mr.dataobj, dtype=np.float32)
    path = tmp / "mr_4seq.nii.gz"
    nib.save(nib.Nifti1Image(np.stack([data * s for s in (1.0, 0.8, 1.2, 0.6)], axis=-1), mr.affine), path)
    return path


def test_monailabel_server_serves_exported_bundles_over_http(monailabel_python, tmp_path):
    """``monailabel start_server`` with an app holding btcv_finetune, ctfm_segmentation and brats_finetune,
    each exported for MONAI Label (own vendored package, metadata naming the written label map), then
    the REST calls 3D Slicer makes: ``GET /info/`` (label names) and ``POST /infer/<model>`` with a real
    CT (a real MR as 4 sequences for brats_finetune) uploaded; the returned label maps are checked and
    the server is stopped."""
    import signal
    import time
    import urllib.request

    import nibabel as nib
    import numpy as np
    from conftest import free_port

    ct = real_data("ts_ct_full", "example_ct.nii.gz")
    inputs = {"btcv_finetune": ct, "ctfm_segmentation": ct, "brats_finetune": _four_sequence_mr(tmp_path)}
    app = tmp_path / "app"
    shutil.copytree(APP / "server_app", app)
    names = list(inputs)
    for name in names:
        export_tiny(name, app, tmp_path, TINY_SEGRESNETDS if name == "ctfm_segmentation" else TINY, monailabel=True)
    port = free_port()
    launcher = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f)]; "
                f"sys.argv = ['monailabel', 'start_server', '--app', {str(app)!r}, '--studies', {str(tmp_path / 'studies')!r}, "
                f"'--conf', 'models', {','.join(names)!r}, '--conf', 'zoo_source', 'github', '--conf', 'preload', 'false', "
                f"'--host', '127.0.0.1', '--port', '{port}']; from monailabel.main import Main; Main().run()")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(APP / "shim"), "OMP_NUM_THREADS": "2"}
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen([str(monailabel_python), "-P", "-c", launcher], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        info, deadline = None, time.monotonic() + 180
        while info is None and time.monotonic() < deadline:
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{base}/info/", timeout=5) as r:
                    info = json.loads(r.read())
            except OSError:
                time.sleep(1)
        assert info is not None, "the server did not answer /info/ within 180 s: " + (tmp_path / "server.log").read_text()[-3000:]
        assert set(names) <= set(info["models"]), info["models"].keys()
        # the written label maps' names and values: BTCV's organs as written (1 = spleen ...), and brats_finetune's
        # MSD numbering (WT's own part 1, TC's 2, ET 3), not its network's region channels 0, 1, 2
        btcv = {name.lower(): i + 1 for i, name in enumerate(ConfigParser.load_config_file(str(BUNDLES / "btcv_finetune" / "configs" / "inference.json"))["class_names"])}
        assert info["models"]["btcv_finetune"]["labels"] == btcv == info["models"]["ctfm_segmentation"]["labels"]
        assert info["models"]["brats_finetune"]["labels"] == {"wt": 1, "tc": 2, "et": 3}
        for name in names:
            labels, image = info["models"][name]["labels"], inputs[name]
            src = nib.load(image)
            body, content_type = _multipart("file", image)
            request = urllib.request.Request(f"{base}/infer/{name}?output=image", data=body, method="POST", headers={"Content-Type": content_type})
            with urllib.request.urlopen(request, timeout=600) as r:
                (tmp_path / f"{name}_pred.nii.gz").write_bytes(r.read())
            pred = nib.load(tmp_path / f"{name}_pred.nii.gz")
            assert pred.shape == src.shape[:3] and np.allclose(pred.affine, src.affine, atol=1e-4), (name, pred.shape, pred.affine)
            values = set(np.unique(np.asarray(pred.dataobj)).astype(int).tolist())
            assert values <= {0, *labels.values()} and len(values) > 1, (name, values)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
        log.close()
    assert server.returncode is not None
