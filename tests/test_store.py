"""``cache: store``: the chunked store of preprocessed cases, its preprocessing command and what training reads from it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import BUNDLES, REPO
from monai.bundle import ConfigParser
from monai.data import DataLoader

from common.cli import command
from common.data import preprocess as preprocess_module
from common.data.case_checks import DataPreflightError
from common.data.store import BLOCK_BYTES, CHUNK_BYTES, case_key, chunking
from common.data.store_dataset import StoreDataset, StoredCase


def bundle_parser(bundle: str, root: Path, phantom_root: Path | str, **overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(BUNDLES / bundle / "configs" / "train.json"))
    parser.update({"bundle_root": str(root), "phantom_dir": str(phantom_root), "num_workers": 0, "preflight": False,
                   "roi_size": [32, 32, 32], "num_phantoms": 5, "num_phantom_validation": 1, **overrides})
    return parser


#: case -> (bundle, overrides, the reader that must serve its first random transform); the fast tier keeps two
READERS = {
    "subfore_pretrain": ("subfore_pretrain", {"pixdim": [3.0, 3.0, 3.0]}, "_spatial_crop"),  # RandSpatialCropd
    "btcv_pos_neg": ("btcv_finetune", {"pixdim": [3.0, 3.0, 3.0], "num_samples": 2}, "_label_crop"),  # RandCropByPosNegLabeld + stored fg/bg indices
    "btcv_label_classes": ("btcv_finetune", {"pixdim": [3.0, 3.0, 3.0], "num_samples": 3, "crop_sampling": "label_classes"},
                           "_label_crop"),  # RandCropByLabelClassesd + stored per-class indices
    "brats_finetune": ("brats_finetune", {"num_samples": 2, "phantom_kind": "brats"}, "_spatial_crop_samples"),  # RandSpatialCropSamplesd
    "ctfm_pretrain": ("ctfm_pretrain", {"crop_size": [16, 32, 32], "num_crops": 3, "init_filters": 8, "pixdim": [3.0, 3.0, 3.0]},
                      "crop_from_store"),  # IntraSampleViewsd
}
SLOW_READERS = ("btcv_label_classes", "brats_finetune", "ctfm_pretrain")


def loader_batches(dataset, epochs: int = 2) -> list[dict[str, torch.Tensor]]:
    torch.manual_seed(7)  # MONAI's DataLoader draws its transforms' seed from torch's generator
    return [{k: v for k, v in b.items() if isinstance(v, torch.Tensor)} for _ in range(epochs)
            for b in DataLoader(dataset, batch_size=1, num_workers=0)]


@pytest.fixture(scope="module")
def brats_root(tmp_path_factory) -> Path:
    from common.data import ensure_brats_phantom_dataset

    root = tmp_path_factory.mktemp("brats_phantoms")
    ensure_brats_phantom_dataset(root, num_cases=5, num_validation=1)
    return root


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c in SLOW_READERS else c for c in READERS])
def test_store_gives_the_crops_of_the_memory_cache(case, tmp_path, phantom_root, brats_root):
    """A seeded run draws the same crops, bit for bit, whether its cases sit in RAM or in the store."""
    bundle, overrides, reader = READERS[case]
    data = brats_root if overrides.get("phantom_kind") == "brats" else phantom_root
    memory = loader_batches(bundle_parser(bundle, tmp_path, data, cache="memory", **overrides).get_parsed_content("train#dataset"))
    dataset = bundle_parser(bundle, tmp_path, data, cache="store", **overrides).get_parsed_content("train#dataset")
    assert isinstance(dataset, StoreDataset) and reader in getattr(dataset.reader, "__qualname__", "")
    stored = loader_batches(dataset)
    assert len(memory) == len(stored) == 8
    for a, b in zip(memory, stored):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    key = "views" if "views" in memory[0] else "image"
    assert not torch.equal(memory[0][key], memory[4][key])  # the crops are random: the same case, another epoch


def test_random_crops_read_only_their_slices_and_whole_volumes_serve_other_pipelines(tmp_path, phantom_root, monkeypatch):
    reads: list[object] = []
    original = StoredCase.read

    def spy(self, field, slices=None):
        reads.append(slices)
        return original(self, field, slices)

    monkeypatch.setattr(StoredCase, "read", spy)
    crop = bundle_parser("btcv_finetune", tmp_path, phantom_root, cache="store", pixdim=[3.0, 3.0, 3.0], num_samples=2)
    train = crop.get_parsed_content("train#dataset")
    reads.clear()
    samples = train[0]
    assert len(samples) == 2 and len(reads) == 4 and all(s is not None for s in reads)  # image + label of 2 crops, no whole read
    assert all(tuple(x.stop - x.start for x in s) == (32, 32, 32) for s in reads)
    validation = crop.get_parsed_content("validate#dataset")  # no random transform: the whole case
    reads.clear()
    case = validation[0]
    assert reads == [None, None] and case["image"].shape[1:] == case["label"].shape[1:]
    assert case["image"].meta["filename_or_obj"].endswith(".nii.gz")  # metadata that reports name cases by
    spatial = bundle_parser("subfore_pretrain", tmp_path, phantom_root, cache="store", pixdim=[3.0, 3.0, 3.0]).get_parsed_content("train#dataset")
    spatial[0]
    reads.clear()
    assert spatial[1]["image"].shape == (1, 32, 32, 32) and len(reads) == 1 and reads[0] is not None  # RandSpatialCropd: the crop only


def test_chunks_and_blocks_fit_their_budgets_and_the_roi():
    for shape, roi, itemsize in (((1, 267, 267, 250), (96, 96, 96), 4), ((4, 160, 180, 150), (128, 128, 128), 4),
                                 ((1, 300, 280, 64), (96, 96, 96), 1), ((1, 20, 30, 40), (96, 96, 96), 4)):
        chunks, blocks = chunking(shape, roi, itemsize)
        assert chunks[0] == blocks[0] == shape[0]
        assert np.prod(blocks) * itemsize <= BLOCK_BYTES or max(blocks[1:]) == 1
        assert np.prod(chunks) * itemsize <= max(CHUNK_BYTES, np.prod(blocks) * itemsize)
        assert all(b <= c <= min(r, s) for b, c, r, s in zip(blocks[1:], chunks[1:], roi, shape[1:]))
        assert all(c % b == 0 or c == s for b, c, s in zip(blocks[1:], chunks[1:], shape[1:]))


def stores(cache_dir: Path) -> list[Path]:
    return sorted(p.parent for p in cache_dir.glob("store-*/store.json"))


def test_preprocess_command_writes_a_manifest_and_skips_finished_cases(tmp_path, phantom_root, capsys):
    """The command as a user runs it (its own process: 2 forked workers), then again in this process."""
    args = ["--config_file", str(BUNDLES / "btcv_finetune" / "configs" / "train.json"), "--workers", "2",
            "--phantom_dir", str(phantom_root), "--num_phantoms", "5", "--num_phantom_validation", "1",
            "--bundle_root", str(tmp_path), "--pixdim", "[3.0, 3.0, 3.0]", "--roi_size", "[32, 32, 32]"]
    run = subprocess.run([sys.executable, "-m", "common.data.preprocess", *args], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                         capture_output=True, text=True, timeout=300)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-3000:]
    assert "with 2 processes" in out and "other thread(s)" not in out
    assert "train: store" in out and "0 case(s) already stored, 4 written" in out and "1 written" in out and "--cache store" in out
    train_store, val_store = stores(tmp_path / "cache")[0], stores(tmp_path / "cache")[1]  # two pipelines, two stores
    manifests = [json.loads((s / "manifest.json").read_text()) for s in (train_store, val_store)]
    assert sorted(len(m["cases"]) for m in manifests) == [1, 4]
    case = max(manifests, key=lambda m: len(m["cases"]))["cases"][0]
    assert {"key", "case", "sources", "shape", "spacing", "intensity", "checks", "bytes"} <= set(case)
    fields, names, sizes = zip(*case["sources"])
    assert set(fields) == {"image", "label"} and all(s == os.path.getsize(n) for n, s in zip(names, sizes))
    assert case["spacing"] == pytest.approx([3.0, 3.0, 3.0]) and case["checks"]["problems"] == [] and case["checks"]["digest"]
    assert all(m["settings_hash"] for m in manifests)

    assert command(preprocess_module.main, args) == 0  # the same command again: nothing to do
    assert "4 case(s) already stored, 0 written" in capsys.readouterr().out


def test_preprocessing_beside_other_threads_uses_threads_not_a_fork(tmp_path, phantom_root, caplog):
    """A process with other threads is not forked (a child can inherit a lock held by one of them and wait forever):
    the store is built with threads, and the log says why."""
    import threading

    parser = bundle_parser("subfore_pretrain", tmp_path, phantom_root, pixdim=[4.0, 4.0, 4.0])
    entries, transform = parser.get_parsed_content("train#files"), parser.get_parsed_content("train#preprocessing")
    plan = preprocess_module.plan_store(transform, tmp_path / "cache")
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        with caplog.at_level("INFO", logger=preprocess_module.logger.name):
            report = preprocess_module.build_store(entries, transform, plan, workers=2, processes=True)
    finally:
        stop.set()
        other.join()
    assert report.written == len(entries) == 4
    assert "other thread(s) run in this process" in caplog.text and "with 2 threads" in caplog.text


def test_an_interrupted_preprocessing_keeps_finished_cases_and_redoes_the_cut_one(tmp_path, phantom_root):
    parser = bundle_parser("subfore_pretrain", tmp_path, phantom_root, pixdim=[3.0, 3.0, 3.0])
    entries, transform = parser.get_parsed_content("train#files"), parser.get_parsed_content("train#preprocessing")
    plan = preprocess_module.plan_store(transform, tmp_path / "cache")
    preprocess_module.build_store(entries[:2], transform, plan)  # the killed run finished two cases...
    store = plan.store
    cut = case_key(entries[2])  # ...and was killed after writing the third one's array, before its record
    preprocess_module.preprocess_case(entries[2], transform, plan)
    store.record_path(cut).unlink()
    half = store.array_path(cut, "image").with_name(f".{cut}.image.b2nd.tmp123")
    half.write_bytes(b"half an array")

    report = preprocess_module.build_store(entries, transform, plan)
    assert (report.kept, report.written) == (2, 2) and not half.exists()
    assert {c["key"] for c in json.loads((store.root / "manifest.json").read_text())["cases"]} == {case_key(e) for e in entries}


@pytest.mark.slow  # the disk cache's test covers the same transform hash in the fast tier
def test_a_changed_setting_writes_a_new_store(tmp_path, phantom_root):
    coarse = {"cache": "store", "pixdim": [3.0, 3.0, 3.0]}
    bundle_parser("subfore_pretrain", tmp_path, phantom_root, **coarse).get_parsed_content("train#dataset")
    again = bundle_parser("subfore_pretrain", tmp_path, phantom_root, **coarse).get_parsed_content("train#dataset")
    assert len(stores(tmp_path / "cache")) == 1 and again.store.root == stores(tmp_path / "cache")[0]
    bundle_parser("subfore_pretrain", tmp_path, phantom_root, **{**coarse, "pixdim": [4.0, 4.0, 4.0]}).get_parsed_content("train#dataset")
    assert len(stores(tmp_path / "cache")) == 2, "a new pixdim must not read the 3 mm store"


def test_bad_cases_are_recorded_and_training_reuses_the_check_without_reading_them(tmp_path, phantom_root, capsys, monkeypatch):
    work = tmp_path / "phantoms"
    shutil.copytree(phantom_root, work)
    bad = sorted(work.glob("*/imagesTr/*.nii.gz"))[1]
    bad.write_bytes(bad.read_bytes()[:400])  # a truncated file
    args = ["--config_file", str(BUNDLES / "subfore_pretrain" / "configs" / "train.json"), "--workers", "1", "--phantom_dir", str(work),
            "--num_phantoms", "5", "--num_phantom_validation", "1", "--bundle_root", str(tmp_path), "--roi_size", "[32, 32, 32]",
            "--pixdim", "[3.0, 3.0, 3.0]"]
    assert command(preprocess_module.main, args) == 1
    out = capsys.readouterr().out
    assert bad.name in out and "1 case(s) could not be stored" in out

    import common.data.case_checks as checks_module

    def no_read(entry, checks):
        raise AssertionError(f"pre-flight read {entry['image']} although the store's manifest recorded its check")

    monkeypatch.setattr(checks_module, "check_case", no_read)
    for mode, expect in (("stop", DataPreflightError), ("skip", None)):
        parser = bundle_parser("subfore_pretrain", tmp_path, work, cache="store", preflight=True, on_bad_case=mode, pixdim=[3.0, 3.0, 3.0])
        if expect:
            with pytest.raises(RuntimeError) as failed:  # MONAI wraps what an expression raises
                parser.get_parsed_content("train#files")
            assert isinstance(failed.value.__cause__, expect) and bad.name in str(failed.value.__cause__)
        else:
            assert len(parser.get_parsed_content("train#files")) == 3
    from common.file_sizes import _SIZES

    assert _SIZES[str(bad)] == 400  # the size the store recorded, handed to the run identity without a stat


@pytest.mark.slow
def test_preprocess_killed_then_rerun_finishes_the_store(tmp_path):
    """SIGKILL of the real command mid-way; the same command again keeps what was finished."""
    from common.data import ensure_phantom_dataset

    data = tmp_path / "phantoms"
    ensure_phantom_dataset(data, num_cases=7, num_validation=1)
    cmd = [sys.executable, "-m", "common.data.preprocess", "--config_file", str(BUNDLES / "subfore_pretrain" / "configs" / "train.json"),
           "--workers", "1", "--phantom_dir", str(data), "--num_phantoms", "7", "--num_phantom_validation", "1",
           "--bundle_root", str(tmp_path), "--pixdim", "[1.25, 1.25, 1.25]"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    start = time.monotonic()
    while not list((tmp_path / "cache").glob("store-*/records/*/*.json")):
        assert proc.poll() is None and time.monotonic() - start < 300, "no case was finished in time"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = len(list((tmp_path / "cache").glob("store-*/records/*/*.json")))
    assert 1 <= finished < 6
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"{finished} case(s) already stored, {6 - finished} written" in out.stdout
    assert not list((tmp_path / "cache").glob("store-*/arrays/*/.*.tmp*"))


@pytest.mark.slow
def test_two_torchrun_nodes_read_disjoint_cases_from_the_store_and_rank_0_alone_writes(tmp_path, phantom_root):
    """Two torchrun "nodes" (one process each, c10d rendezvous on 127.0.0.1, gloo) train one run from one store with
    ``multi_gpu_train.json``: both ranks train to the end, rank 0 alone preprocesses, checkpoints, logs and exports."""
    from conftest import free_port

    from common.cli import format_override
    from common.handlers import list_checkpoints

    configs = BUNDLES / "subfore_pretrain" / "configs"
    reads = tmp_path / "reads"
    overrides = {"bundle_root": str(tmp_path), "run_dir": str(tmp_path), "phantom_dir": str(phantom_root), "num_phantoms": 5,
                 "num_phantom_validation": 1, "cache": "store", "pixdim": [3.0, 3.0, 3.0], "feature_size": 12, "network_def#depths": [1, 1, 1, 1],
                 "network_def#window_size": 4, "roi_size": [64, 64, 64], "batch_size": 1, "num_workers": 0, "num_steps": 4, "epoch_length": 2,
                 "log_interval": 1, "image_interval": 1000, "checkpoint_interval": 2,
                 "train#dataset": {"_target_": "store_probe.RecordingDataset", "log_dir": str(reads), "dataset": {
                     "_target_": "common.data.make_dataset", "data": "@train#files", "transform": "@train#preprocessing", "cache": "@cache",
                     "cache_dir": "@cache_dir", "num_workers": "@num_workers"}}}
    files = f"['{configs / 'train.json'}','{configs / 'multi_gpu_train.json'}']"
    port = free_port()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1", "--rdzv_backend", "c10d",
           "--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", "store_two_nodes", "-m", "monai.bundle", "run", "--workflow_name", "common.runs.BundleWorkflow", "--config_file", files,
           *[a for k, v in overrides.items() for a in (f"--{k}", format_override(v))]]
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}", "OMP_NUM_THREADS": "1"}
    nodes = [subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [n.communicate(timeout=900)[0] for n in nodes]
    for n, out in zip(nodes, outs):
        assert n.returncode == 0, out[-4000:]
    both = "".join(outs)
    assert both.count("Engine run finished") == 2  # both ranks trained to the end
    assert both.count("Preprocessing 4 case(s) into") == 1  # rank 0 alone built the store, the other rank waited
    assert both.count("Saved checkpoint") == 2 and [it for it, _ in list_checkpoints(tmp_path / "models" / "checkpoints")] == [2, 4]
    assert len(list((tmp_path / "eval" / "tensorboard").rglob("events.out.tfevents.*"))) == 1
    assert both.count("Exported") == 1  # rank 0 alone exports; the weights load into the bundle's network
    net = bundle_parser("subfore_pretrain", tmp_path, phantom_root, **{k: overrides[k] for k in ("feature_size", "network_def#depths",
                                                                                                "network_def#window_size")})
    net.get_parsed_content("network_def").load_state_dict(torch.load(tmp_path / "models" / "model.pt", weights_only=True))
    per_rank = [[int(line.split()[0]) for line in (reads / f"reads_rank{r}.txt").read_text().splitlines()] for r in (0, 1)]
    assert all(len(r) >= 4 for r in per_rank)  # batch 1, 4 steps each (and what the loader prefetched)
    for p in range(min(len(r) for r in per_rank) // 2):  # each pass of the 4 cases is split in two disjoint halves
        a, b = set(per_rank[0][2 * p:2 * p + 2]), set(per_rank[1][2 * p:2 * p + 2])
        assert not a & b and a | b == {0, 1, 2, 3}, (p, per_rank)
