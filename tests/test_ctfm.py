"""CT-FM's core rules: NT-Xent with intra-sample negatives (by hand), loading CT-FM-layout checkpoints, the view
layout, CT windows, patch embeddings and the retrieval index."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from monai.networks.nets import SegResNetDS
from monai.networks.nets.segresnet_ds import SegResEncoder
from monai.transforms import Compose, RandAxisFlip, RandGaussianNoise

from common.engines import MethodOutput
from common.methods.ctfm import NTXentLoss, nt_xent
from common.networks import load_pretrained
from common.methods.ctfm import ContrastiveModel, EncoderClassifier, PooledEncoder, ProjectionHead
from common.retrieval import (
    EmbeddingIndex,
    RetrievalError,
    embed_scan,
    patch_embeddings,
    reduce_patches,
    results_table,
    write_results,
)
from common.transforms import CTWindowsd
from common.methods.ctfm import IntraSampleViewsd


def by_hand(views: list[torch.Tensor], pairs: dict[int, int], temperature: float) -> float:
    """Mean over anchors of -log(exp(s_pos / t) / sum_{j != i} exp(s_ij / t)), cosine similarities, plain loops."""
    total = 0.0
    for i, zi in enumerate(views):
        sims = {j: float(torch.dot(zi, zj) / (zi.norm() * zj.norm())) / temperature for j, zj in enumerate(views) if j != i}
        total += -(sims[pairs[i]] - math.log(sum(math.exp(v) for v in sims.values())))
    return total / len(views)


def test_nt_xent_intra_sample_matches_a_hand_computation():
    g = torch.Generator().manual_seed(0)
    v1, v2 = torch.randn(2, 3, 4, generator=g), torch.randn(2, 3, 4, generator=g)  # 2 scans, 3 crops, 4-d embeddings
    t = 0.1
    expected = 0.0
    for b in range(2):  # negatives: only the other crops of the same scan
        views = [v1[b, k] for k in range(3)] + [v2[b, k] for k in range(3)]
        pairs = {k: k + 3 for k in range(3)} | {k + 3: k for k in range(3)}  # positive: the other view of the same crop
        expected += by_hand(views, pairs, t) / 2
    assert float(nt_xent(v1, v2, temperature=t, anchors="both")) == pytest.approx(expected, rel=1e-5)


def test_view0_anchored_nt_xent_matches_the_reference_definition_by_hand():
    """Reference (loss/intrasample_ntxent_loss.py): per scan and crop i, anchor view 0 of crop i, positive
    view 1 of crop i, negatives both views of every other crop; cross entropy with the positive first;
    mean over crops, then over scans."""
    g = torch.Generator().manual_seed(3)
    v0, v1 = torch.randn(2, 3, 4, generator=g), torch.randn(2, 3, 4, generator=g)
    t = 0.1
    cos = lambda a, b: float(torch.dot(a, b) / (a.norm() * b.norm()))  # noqa: E731
    per_scan = []
    for b in range(2):
        crops = []
        for i in range(3):
            logits = [cos(v0[b, i], v1[b, i]) / t]
            logits += [cos(v0[b, i], v[b, j]) / t for j in range(3) if j != i for v in (v0, v1)]
            crops.append(-(logits[0] - math.log(sum(math.exp(x) for x in logits))))
        per_scan.append(sum(crops) / 3)
    expected = sum(per_scan) / 2
    assert float(nt_xent(v0, v1, temperature=t)) == pytest.approx(expected, rel=1e-5)  # the default
    assert float(nt_xent(v0, v1, temperature=t, anchors="view0")) == pytest.approx(expected, rel=1e-5)
    assert float(nt_xent(v0, v1, temperature=t, anchors="both")) != pytest.approx(expected, rel=1e-3)
    with pytest.raises(ValueError, match="anchors"):
        nt_xent(v0, v1, anchors="view1")


def test_nt_xent_batch_negatives_and_temperature():
    g = torch.Generator().manual_seed(1)
    v1, v2 = torch.randn(2, 3, 4, generator=g), torch.randn(2, 3, 4, generator=g)
    views = [v1[b, k] for b in range(2) for k in range(3)] + [v2[b, k] for b in range(2) for k in range(3)]
    pairs = {i: i + 6 for i in range(6)} | {i + 6: i for i in range(6)}
    for t in (0.1, 0.5):
        assert float(nt_xent(v1, v2, temperature=t, negatives="batch", anchors="both")) == pytest.approx(by_hand(views, pairs, t), rel=1e-5)
    assert float(nt_xent(v1, v2, 0.1)) != pytest.approx(float(nt_xent(v1, v2, 0.5)))  # the temperature is applied


def test_positives_are_the_two_views_of_one_crop():
    g = torch.Generator().manual_seed(2)
    crops = torch.randn(1, 4, 8, generator=g)
    aligned = float(nt_xent(crops, crops + 0.01 * torch.randn(1, 4, 8, generator=g)))  # each view next to its twin
    shuffled = float(nt_xent(crops, crops[:, [1, 2, 3, 0]]))  # twins swapped to other crops
    assert aligned < 0.1 < shuffled
    loss = NTXentLoss(0.1)
    with pytest.raises(ValueError, match="negatives"):
        nt_xent(crops, crops, negatives="nope")
    assert float(loss(MethodOutput(view1=crops, view2=crops), None)) == pytest.approx(float(nt_xent(crops, crops, 0.1)))
    assert float(NTXentLoss(0.1, anchors="both")(MethodOutput(view1=crops, view2=crops * 2), None)) == pytest.approx(
        float(nt_xent(crops, crops * 2, 0.1, anchors="both")))
    with pytest.raises(TypeError, match="view2"):
        loss(MethodOutput(view1=crops), None)


@pytest.mark.parametrize("prefix", ["backbone.", "model.backbone.", ""], ids=["ctfm_backbone", "lighter_model", "feature_extractor"])
def test_ctfm_checkpoint_layouts_load_into_segresnetds(tmp_path, prefix):
    encoder = SegResEncoder(spatial_dims=3, in_channels=1, init_filters=8, blocks_down=(1, 2, 2, 4, 4))
    state = {prefix + k: v for k, v in encoder.state_dict().items()}
    state[prefix.split(".")[0] + ".head.weight" if prefix else "head.weight"] = torch.zeros(3, 3)  # a projection head, unused downstream
    path = tmp_path / "ctfm.pt"
    torch.save({"state_dict": state}, path)
    net = SegResNetDS(init_filters=8, blocks_down=(1, 2, 2, 4, 4), in_channels=1, out_channels=14, dsdepth=4)
    report = load_pretrained(net, path)
    encoder_keys = {k for k in net.state_dict() if k.startswith("encoder.")}
    assert set(report.loaded) == encoder_keys  # every encoder tensor matched, nothing else touched
    for k, v in encoder.state_dict().items():
        torch.testing.assert_close(net.state_dict()["encoder." + k], v)


# --- networks, transforms and retrieval (common.methods.ctfm.model, common.methods.ctfm.views/windows, common.retrieval) ---

TINY_ENCODER = {"spatial_dims": 3, "in_channels": 1, "init_filters": 4, "blocks_down": (1, 1, 1, 1, 1)}  # pooled features: 64


def test_ctfm_checkpoint_loads_into_the_four_window_classifier_with_every_encoder_tensor(tmp_path):
    encoder = SegResEncoder(**{**TINY_ENCODER, "init_filters": 8, "blocks_down": (1, 2, 2, 4, 4)})
    torch.save({"state_dict": {"backbone." + k: v for k, v in encoder.state_dict().items()}}, tmp_path / "ctfm.pt")
    clf = EncoderClassifier(SegResEncoder(**{**TINY_ENCODER, "in_channels": 4, "init_filters": 8, "blocks_down": (1, 2, 2, 4, 4)}), num_classes=3, in_features=128)
    report = load_pretrained(clf, tmp_path / "ctfm.pt")
    assert report.prefix_map == ("backbone.", "encoder.")
    assert set(report.loaded) == {k for k in clf.state_dict() if k.startswith("encoder.")} and not report.skipped_shape
    assert report.adapted == ["encoder.conv_init.weight"]  # 1 CT channel spread over the 4 windows
    torch.testing.assert_close(clf.state_dict()["encoder.conv_init.weight"].sum(1, keepdim=True), encoder.state_dict()["conv_init.weight"])


def test_contrastive_model_groups_views_by_scan_and_crop():
    torch.manual_seed(0)
    model = ContrastiveModel(SegResEncoder(**TINY_ENCODER), ProjectionHead(64, 32, 16)).eval()
    views = torch.rand(2, 2, 3, 1, 16, 16, 16)  # B=2 scans, 2 views, K=3 crops
    out = model(views)
    assert isinstance(out, MethodOutput) and set(out) == {"view1", "view2"}
    z1, z2 = out.view1, out.view2
    assert z1.shape == z2.shape == (2, 3, 16)
    with torch.no_grad():  # view v of crop k of scan b is exactly the projection of that volume alone
        torch.testing.assert_close(z2[1, 2], model(views[1, 1, 2][None])[0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(z1[0, 1], model(views[0, 0, 1][None])[0], atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="B, 2, K"):
        model(torch.rand(2, 3, 3, 1, 16, 16, 16))


def test_intra_sample_views_layout_and_augmentation():
    image = torch.arange(40 * 48 * 44, dtype=torch.float32).reshape(1, 40, 48, 44)
    plain = IntraSampleViewsd("image", roi_size=(8, 16, 16), num_crops=5)
    plain.set_random_state(0)
    out = plain({"image": image, "id": "a"})["views"]
    assert out.shape == (2, 5, 1, 8, 16, 16) and "image" not in plain({"image": image})
    torch.testing.assert_close(out[0], out[1])  # without augmentation the two views of a crop are the crop itself
    firsts = {float(c.flatten()[0]) for c in out[0]}
    assert len(firsts) == 5  # 5 different crops
    for c in out[0]:  # each crop is a contiguous block of the image
        v0 = int(c.flatten()[0])
        z, rem = divmod(v0, 48 * 44)
        y, x = divmod(rem, 44)
        torch.testing.assert_close(c, image[:, z : z + 8, y : y + 16, x : x + 16])
    aug = IntraSampleViewsd("image", (8, 16, 16), 5, Compose([RandAxisFlip(prob=1.0), RandGaussianNoise(prob=1.0)]))
    aug.set_random_state(0)
    views = aug({"image": image})["views"]
    assert not torch.equal(views[0], views[1])  # the two views differ
    with pytest.raises(ValueError, match="smaller than roi_size"):
        plain({"image": torch.zeros(1, 4, 48, 44)})
    with pytest.raises(ValueError, match="num_crops"):
        IntraSampleViewsd("image", (8, 8, 8), num_crops=1)


def test_views_differ_after_set_determinism():
    """Every bundle seeds MONAI globally (set_determinism in `initialize`); the two views of a crop must still
    be augmented independently, and the augmentation must change from scan to scan (regression: a truth test
    on the Compose reseeded it on every call, so both views and every scan got the same draw)."""
    from monai.utils import set_determinism

    image = torch.arange(40 * 48 * 44, dtype=torch.float32).reshape(1, 40, 48, 44)
    set_determinism(seed=0)
    try:
        aug = IntraSampleViewsd("image", (8, 16, 16), 5, Compose([RandAxisFlip(prob=1.0), RandGaussianNoise(prob=1.0)]))
        aug.set_random_state(0)
        first, second = aug({"image": image})["views"], aug({"image": image})["views"]
    finally:
        set_determinism(seed=None)
    assert not torch.equal(first[0], first[1])
    noise = [v - v.round() for v in (first[0], second[0])]  # the noise part of the same-position views of two calls
    assert not torch.equal(noise[0], noise[1])


def test_ct_windows_by_hand():
    hu = torch.tensor([-1000.0, 0.0, 40.0, 80.0, 600.0, 2000.0]).reshape(1, 1, 1, 6)
    out = CTWindowsd("image", ["brain", "bone", (50, 100)])({"image": hu})["image"]
    assert out.shape == (3, 1, 1, 6)
    torch.testing.assert_close(out[0].flatten(), torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0, 1.0]))  # level 40, width 80: [0, 80] HU
    torch.testing.assert_close(out[1].flatten(), (hu.flatten() + 800).div(2800).clamp(0, 1))  # level 600, width 2800
    torch.testing.assert_close(out[2].flatten(), torch.tensor([0.0, 0.0, 0.4, 0.8, 1.0, 1.0]))
    with pytest.raises(ValueError, match="unknown CT window"):
        CTWindowsd("image", ["lung_typo"])


def test_patch_embeddings_and_reductions():
    torch.manual_seed(0)
    embedder = PooledEncoder(SegResEncoder(**TINY_ENCODER)).eval()
    image = torch.rand(1, 20, 40, 24)
    with torch.no_grad():
        feats = patch_embeddings(embedder, image, (16, 16, 16), batch_size=3)
        assert feats.shape == (2 * 3 * 2, 64)  # ceil(20/16) x ceil(40/16) x ceil(24/16) patches, zero-padded at the far edges
        first = embedder(image[None, :, :16, :16, :16])[0]
        torch.testing.assert_close(feats[0], first, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(reduce_patches(feats, "min"), feats.min(0).values)
    torch.testing.assert_close(reduce_patches(feats, "mean"), feats.mean(0))
    torch.testing.assert_close(embed_scan(embedder, image, (16, 16, 16), "min"), feats.min(0).values, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="reduce"):
        reduce_patches(feats, "max")


def test_index_search_save_load_and_results(tmp_path):
    index = EmbeddingIndex(settings={"reduce": "min"})
    for name, vec in {"a": [1.0, 0.0], "b": [0.8, 0.6], "c": [0.0, 1.0], "d": [-1.0, 0.0]}.items():
        index.add(name, torch.tensor(vec))
    hits = index.search(torch.tensor([1.0, 0.1]), k=3)[0]  # cosines by hand: a 0.995, b 0.856, c 0.0995
    assert [h[0] for h in hits] == ["a", "b", "c"]
    assert hits[0][1] == pytest.approx(1 / math.sqrt(1.01), abs=1e-6)
    assert [h[0] for h in index.search(index.embedding_of("a"), 2, exclude=["a"])[0]] == ["b", "c"]
    with pytest.raises(RetrievalError, match="already in the index"):
        index.add("a", torch.zeros(2))
    index.save(tmp_path / "idx.pt")
    loaded = EmbeddingIndex.load(tmp_path / "idx.pt")
    assert loaded.case_ids == index.case_ids and loaded.settings == {"reduce": "min"}
    rows = results_table(["q"], [hits])
    write_results(rows, tmp_path / "r.csv")
    assert (tmp_path / "r.csv").read_text().splitlines()[1].startswith("q,1,a,0.995")
    write_results(rows, tmp_path / "r.json")
    with pytest.raises(RetrievalError, match="does not exist"):
        EmbeddingIndex.load(tmp_path / "missing.pt")
    with pytest.raises(RetrievalError, match=r"\.json or \.csv"):
        write_results(rows, tmp_path / "r.txt")


def test_isotropic_resized_crop_keeps_the_aspect_ratio_and_the_size():
    """Reference view crop: one scale s for every axis, crop s x input size, resize back."""
    from common.methods.ctfm import RandIsotropicResizedCrop

    crop = RandIsotropicResizedCrop(size=(8, 16, 16), scale=(0.5, 0.5))
    crop.set_random_state(0)
    image = torch.arange(16 * 32 * 32, dtype=torch.float32).reshape(1, 16, 32, 32)
    out = crop(image)
    assert out.shape == (1, 8, 16, 16)
    assert [sl.stop - sl.start for sl in crop._crop] == [8, 16, 16]  # s = 0.5 of (16, 32, 32) on every axis
    sizes = set()
    crop = RandIsotropicResizedCrop(size=(8, 16, 16), scale=(0.33, 1.0))
    crop.set_random_state(1)
    for _ in range(20):
        crop(image)
        d, h, w = (sl.stop - sl.start for sl in crop._crop)
        assert h == w == int(h / 32 * 32) and abs(d / 16 - h / 32) <= 1 / 16 + 1e-9  # same fraction on every axis (to a voxel)
        sizes.add(h)
    assert len(sizes) > 5  # the scale is drawn per call
    with pytest.raises(ValueError, match="scale"):
        RandIsotropicResizedCrop(size=(8, 8, 8), scale=(0.0, 1.0))


def test_windows_match_the_reference_ranges_by_hand_and_sinoct_sets_its_geometry():
    """evaluation/sinoct.yaml: ScaleIntensityRange a_min/a_max blood [0, 80], subdural [-125, 175],
    stroke [28, 36], bone [-900, 2100] HU to [0, 1], clipped (the default windows); sinoct.json: 5 x 2 x 2 mm,
    48 x 128 x 128 centre crop."""
    from monai.bundle import ConfigParser

    configs = Path(__file__).resolve().parent.parent / "bundles" / "ctfm_classification" / "configs"
    parser = ConfigParser()
    parser.read_config([str(configs / "train.json"), str(configs / "sinoct.json")])
    assert parser.get_parsed_content("pixdim") == [5.0, 2.0, 2.0] and parser.get_parsed_content("spatial_size") == [48, 128, 128]
    default = ConfigParser()
    default.read_config(str(configs / "train.json"))
    assert default.get_parsed_content("windows") == parser.get_parsed_content("windows")  # the windows are the default
    hu = torch.tensor([-1000.0, 0.0, 30.0, 50.0, 200.0, 3000.0]).view(1, 6, 1, 1)
    out = CTWindowsd("image", parser.get_parsed_content("windows"))({"image": hu})["image"][:, :, 0, 0]
    ranges = [(0, 80), (-125, 175), (28, 36), (-900, 2100)]
    expected = [[min(1.0, max(0.0, (v - lo) / (hi - lo))) for v in (-1000.0, 0.0, 30.0, 50.0, 200.0, 3000.0)] for lo, hi in ranges]
    torch.testing.assert_close(out, torch.tensor(expected))
    assert expected[0][3] == 50 / 80 and expected[2][2] == 0.25  # e.g. 50 HU in the blood window; 30 HU in the stroke window


@pytest.mark.parametrize("overlap, per_axis", [(0.0, (2, 2, 2)), (0.625, (4, 4, 4)), (0.5, (3, 3, 3))])
def test_retrieval_patch_count_for_an_overlap(overlap, per_axis):
    """Per axis of length L, patch p, stride s = p (1 - overlap): ceil((L - p) / s) + 1 patches (the last padded).
    (48, 256, 256) in (24, 128, 128) patches: overlap 0 -> 2 per axis; 0.625 (the reference) -> stride
    (9, 48, 48), ceil(24 / 9) + 1 = ceil(128 / 48) + 1 = 4; 0.5 -> stride (12, 64, 64), 3."""

    class Ones(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return torch.ones(x.shape[0], 2)

    features = patch_embeddings(Ones(), torch.zeros(1, 48, 256, 256), (24, 128, 128), batch_size=16, overlap=overlap)
    assert features.shape == (per_axis[0] * per_axis[1] * per_axis[2], 2)
    with pytest.raises(ValueError, match="overlap"):
        patch_embeddings(Ones(), torch.zeros(1, 48, 256, 256), (24, 128, 128), overlap=1.0)


def test_freeze_encoder_trains_the_head_only():
    """``freeze_encoder`` (the reference's LighterFreezer without the scripts' ``until_epoch=0``): one optimiser step moves the head only."""
    from monai.bundle import ConfigParser

    from common.networks import freeze

    configs = Path(__file__).resolve().parent.parent / "bundles" / "ctfm_classification" / "configs"
    parser = ConfigParser()
    parser.read_config([str(configs / "train.json"), str(configs / "sinoct.json")])
    parser.update({"init_filters": 8, "device": "$torch.device('cpu')", "freeze_encoder": True})
    network, optimizer = parser.get_parsed_content("network"), parser.get_parsed_content("optimizer")
    before = {n: p.detach().clone() for n, p in network.named_parameters()}
    torch.manual_seed(0)
    loss = network(torch.rand(2, 1, 4 * 16, 32, 32)).sum()  # sinoct.json: the windows stacked in depth, one channel
    loss.backward()
    optimizer.step()
    moved = {n for n, p in network.named_parameters() if not torch.equal(p, before[n])}
    assert moved and all(n.startswith("head.") for n in moved)
    assert all(not p.requires_grad for n, p in network.named_parameters() if n.startswith("encoder."))
    with pytest.raises(ValueError, match="no parameter"):
        freeze(torch.nn.Linear(2, 2), ["encoder."])
