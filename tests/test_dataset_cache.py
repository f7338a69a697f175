"""The ``cache`` setting of the training configs: memory, disk (PersistentDataset) and none, built by ``common.data.make_dataset``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from conftest import BUNDLES
from monai.bundle import ConfigParser
from monai.data import CacheDataset, PersistentDataset
from monai.transforms import Compose, EnsureTyped, RandSpatialCropd, ToDeviced

from common.data import make_dataset
from common.data.cache import first_uncachable


def bundle_parser(bundle: str, root: Path, phantom_root: Path, **overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(BUNDLES / bundle / "configs" / "train.json"))
    parser.update({"bundle_root": str(root), "phantom_dir": str(phantom_root), "num_workers": 0, "preflight": False,
                   "roi_size": [32, 32, 32], "num_phantoms": 5, "num_phantom_validation": 1, "cache": "disk", **overrides})
    return parser


def cache_files(root: Path) -> set[str]:
    return {p.name for p in (root / "cache").glob("*.pt")}


def test_disk_cache_reads_preprocessed_cases_back_and_keeps_crops_random(tmp_path, phantom_root):
    work = tmp_path / "phantoms"
    shutil.copytree(phantom_root, work)
    dataset = bundle_parser("subfore_pretrain", tmp_path, work).get_parsed_content("train#dataset")
    first = [dataset[i]["image"] for i in range(len(dataset))]
    files = cache_files(tmp_path)
    assert len(files) == len(dataset) == 4  # one file per training case, under <bundle_root>/cache
    assert all(x.shape == (1, 32, 32, 32) for x in first)

    for nii in work.rglob("*.nii.gz"):  # the sources unreadable: a cached dataset no longer reads them
        nii.write_bytes(b"not a NIfTI file")
    again = bundle_parser("subfore_pretrain", tmp_path, work).get_parsed_content("train#dataset")
    crops = [again[0]["image"] for _ in range(4)]
    assert cache_files(tmp_path) == files
    # the random crop is not cached: the same case gives different 32^3 crops of the 1.5 mm volume
    assert any(not torch.equal(crops[0], c) for c in crops[1:])


def test_changed_preprocessing_setting_starts_a_new_cache(tmp_path, phantom_root):
    bundle_parser("subfore_pretrain", tmp_path, phantom_root).get_parsed_content("train#dataset")[0]
    before = cache_files(tmp_path)
    bundle_parser("subfore_pretrain", tmp_path, phantom_root, pixdim=[2.0, 2.0, 2.0]).get_parsed_content("train#dataset")[0]
    after = cache_files(tmp_path)
    assert len(before) == 1 and len(after) == 2, "a new pixdim must not reuse the 1.5 mm file"


def test_segmentation_bundle_caches_image_and_label_on_disk(tmp_path, phantom_root):
    parser = bundle_parser("btcv_finetune", tmp_path, phantom_root, pixdim=[3.0, 3.0, 3.0], num_samples=1)
    train, val = parser.get_parsed_content("train#dataset"), parser.get_parsed_content("validate#dataset")
    crop, case = train[0][0], val[0]  # RandCropByPosNegLabeld gives a list of crops
    assert crop["image"].shape == crop["label"].shape == (1, 32, 32, 32)
    assert case["label"].shape[1:] == case["image"].shape[1:]
    for dataset in (train, val):
        for i in range(1, len(dataset)):
            dataset[i]
    assert len(cache_files(tmp_path)) == len(train) + len(val) == 5  # training and validation cases side by side
    assert set(torch.unique(case["label"]).tolist()) <= set(range(14))


def test_disk_and_memory_caches_draw_the_same_random_crops(tmp_path, phantom_root):
    """A seeded run's numbers do not depend on the cache mode: MONAI's DataLoader seeds the random
    transforms of a disk-cached dataset with the seed a CacheDataset's get."""
    from monai.data import DataLoader

    def crops(cache: str) -> list[torch.Tensor]:
        dataset = bundle_parser("subfore_pretrain", tmp_path, phantom_root, cache=cache).get_parsed_content("train#dataset")
        torch.manual_seed(7)  # the DataLoader draws its transforms' seed from torch's generator
        return [batch["image"] for _ in range(2) for batch in DataLoader(dataset, batch_size=1, num_workers=0)]

    memory, disk = crops("memory"), crops("disk")
    assert len(memory) == 8 and all(torch.equal(a, b) for a, b in zip(memory, disk))
    assert not torch.equal(memory[0], memory[4])  # the crops are random: the same case, another epoch


def test_memory_and_none_modes(tmp_path, phantom_root):
    memory = bundle_parser("subfore_pretrain", tmp_path, phantom_root, cache="memory").get_parsed_content("train#dataset")
    none = bundle_parser("subfore_pretrain", tmp_path, phantom_root, cache="none").get_parsed_content("train#dataset")
    assert isinstance(memory, CacheDataset) and not isinstance(none, (CacheDataset, PersistentDataset))
    assert memory[0]["image"].shape == none[0]["image"].shape == (1, 32, 32, 32)
    assert not (tmp_path / "cache").exists()


def test_device_move_and_random_transforms_stay_out_of_the_disk_cache():
    head = [EnsureTyped(keys="image")]
    transform = Compose([*head, ToDeviced(keys="image", device="cpu"), RandSpatialCropd(keys="image", roi_size=[4, 4, 4])])
    assert first_uncachable(transform) == 1
    assert first_uncachable(Compose(head)) == 1


def test_bad_cache_settings_are_named(tmp_path):
    with pytest.raises(ValueError, match="cache: 'ram' is not one of 'memory', 'disk', 'store', 'none'"):
        make_dataset([{"image": "x"}], Compose([]), cache="ram")
    with pytest.raises(ValueError, match="needs cache_dir"):
        make_dataset([{"image": "x"}], Compose([]), cache="disk", cache_dir="")


HASH_SCRIPT = """
import sys
from monai.bundle import ConfigParser
from common.data.cache import transform_hash
p = ConfigParser()
p.read_config(sys.argv[1])
print(transform_hash(p.get_parsed_content('preprocessing_transforms')).decode())
"""


def test_transform_hash_is_the_same_in_another_process():
    """A later run (another process) must find the files an earlier one wrote: no addresses or ids in the hash."""
    import subprocess
    import sys

    from common.data.cache import transform_hash

    config = str(BUNDLES / "btcv_finetune" / "configs" / "train.json")  # its transforms hold config lambdas
    parser = ConfigParser()
    parser.read_config(config)
    here = transform_hash(parser.get_parsed_content("preprocessing_transforms")).decode()
    other = subprocess.run([sys.executable, "-c", HASH_SCRIPT, config], capture_output=True, text=True, check=True).stdout.split()[-1]
    assert here == other
    parser["hu_window"] = [-100.0, 240.0]
    assert transform_hash(parser.get_parsed_content("preprocessing_transforms")).decode() != here


def test_a_pipeline_hashes_the_same_after_it_has_run_in_a_thread(phantom_root):
    """MONAI adds thread-local state to a transform the first time it runs in a thread; the cache key must not
    change with it (a training run that builds its store, then opens it, must find the same store)."""
    import threading

    from common.data.cache import transform_hash

    parser = ConfigParser()
    parser.read_config(str(BUNDLES / "subfore_pretrain" / "configs" / "train.json"))
    parser.update({"phantom_dir": str(phantom_root), "num_phantoms": 5, "num_phantom_validation": 1, "preflight": False, "pixdim": [4.0, 4.0, 4.0]})
    head = parser.get_parsed_content("train#deterministic_transforms")
    before = transform_hash(head)
    case = parser.get_parsed_content("train#files")[0]
    worker = threading.Thread(target=lambda: Compose(head)(dict(case)))
    worker.start()
    worker.join()
    assert transform_hash(head) == before
