"""CT-FM's core rules: NT-Xent with intra-sample negatives (by hand), and loading CT-FM-layout checkpoints."""

from __future__ import annotations

import math

import pytest
import torch
from monai.networks.nets import SegResNetDS
from monai.networks.nets.segresnet_ds import SegResEncoder

from common.losses import NTXentLoss, nt_xent
from common.networks import load_pretrained


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
    assert float(nt_xent(v1, v2, temperature=t)) == pytest.approx(expected, rel=1e-5)


def test_nt_xent_batch_negatives_and_temperature():
    g = torch.Generator().manual_seed(1)
    v1, v2 = torch.randn(2, 3, 4, generator=g), torch.randn(2, 3, 4, generator=g)
    views = [v1[b, k] for b in range(2) for k in range(3)] + [v2[b, k] for b in range(2) for k in range(3)]
    pairs = {i: i + 6 for i in range(6)} | {i + 6: i for i in range(6)}
    for t in (0.1, 0.5):
        assert float(nt_xent(v1, v2, temperature=t, negatives="batch")) == pytest.approx(by_hand(views, pairs, t), rel=1e-5)
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
    assert float(loss((crops, crops), None)) == pytest.approx(float(nt_xent(crops, crops, 0.1)))


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
