"""``crop_sampling``: where the segmentation bundles centre their training patches (shared block)."""

from __future__ import annotations

import pytest
import torch

from common.experiments.downstream import bundle_parser

BUNDLES = ["btcv_finetune", "ctfm_segmentation", "medcontext_unetr"]


def draw(bundle: str, sampling: str, n: int = 300) -> list[set[int]]:
    """The classes present in each of ``n`` 8^3 training patches drawn from a 64^3 volume whose liver-like
    class 1 fills a 24^3 block and whose classes 2-5 are 2^3 blocks far from it and from each other."""
    parser = bundle_parser(bundle, ["large_organs.json"], {"crop_sampling": sampling, "roi_size": [8, 8, 8], "num_samples": n})
    crop = parser.get_parsed_content("train#random_transforms")[2]
    crop.set_random_state(0)
    label = torch.zeros(1, 64, 64, 64, dtype=torch.uint8)
    label[:, :24, :24, :24] = 1
    for c, (x, y, z) in zip(range(2, 6), [(56, 4, 4), (4, 56, 4), (4, 4, 56), (56, 56, 56)]):
        label[:, x:x + 2, y:y + 2, z:z + 2] = c
    image = torch.ones(1, 64, 64, 64)  # above every bundle's body threshold: background patches anywhere
    return [set(torch.unique(p["label"]).tolist()) for p in crop({"image": image, "label": label})]


@pytest.mark.parametrize("bundle", BUNDLES)
def test_label_classes_centres_patches_on_each_class_equally_often(bundle):
    """pos_neg centres half its patches on a labelled voxel, so a 2^3 organ next to a 24^3 one is almost never
    seen; label_classes centres a sixth on each of the six classes (ratios 1:1:1:1:1:1)."""
    by_classes, by_pos_neg = draw(bundle, "label_classes"), draw(bundle, "pos_neg")
    for c in range(2, 6):
        seen = sum(c in p for p in by_classes) / len(by_classes)
        assert 0.10 < seen < 0.25, (c, seen)
        assert sum(c in p for p in by_pos_neg) / len(by_pos_neg) < 0.03, c
    assert sum(1 in p for p in by_pos_neg) / len(by_pos_neg) > 0.4  # the large class, where pos_neg's positives land


def test_an_unknown_crop_sampling_names_the_setting_and_the_choices():
    with pytest.raises(RuntimeError) as failed:  # MONAI's "Failed to evaluate", caused by the named error
        draw("btcv_finetune", "classes", n=1)
    cause = failed.value.__cause__
    assert isinstance(cause, ValueError) and "crop_sampling must be one of ['label_classes', 'pos_neg'], got 'classes'" in str(cause)
