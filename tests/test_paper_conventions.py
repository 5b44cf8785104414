"""The AffEx paper's evaluation conventions (issue 16): DMTNet's 5-shot max fusion."""
import pytest
import torch

from fss_attr.data.episode import Episode
from fss_attr.models.dmtnet import DMTNet
from fss_attr.models.hsnet import fuse_shots
from fss_attr.testing import random_masks, random_region


@pytest.fixture(scope="module", autouse=True)
def one_intra_op_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_max_fusion_is_the_elementwise_max_of_per_shot_logits(gen):
    shot_logits = torch.randn(2, 3, 2, 5, 7, generator=gen, dtype=torch.float64)
    fused = fuse_shots(shot_logits, "max")
    for b in range(2):
        for c in range(2):
            want = torch.maximum(torch.maximum(shot_logits[b, 0, c], shot_logits[b, 1, c]), shot_logits[b, 2, c])
            assert torch.equal(fused[b, c], want)


def test_dmtnet_max_fusion_equals_the_max_of_one_shot_runs(gen):
    """DMTNet(shot_fusion="max") on a 2-shot episode = the element-wise max of the logits of the two 1-shot
    episodes (the official predict_mask_nshot with vote_prediction off)."""
    torch.manual_seed(3)
    model = DMTNet(shot_fusion="max").double().eval()
    size = (97, 97)
    q = torch.randn(1, 3, *size, generator=gen, dtype=torch.float64)
    s = torch.randn(1, 2, 3, *size, generator=gen, dtype=torch.float64)
    ep = Episode(q, s, random_masks(1, 2, size, generator=gen), query_mask=random_region(1, size, generator=gen))
    with torch.no_grad():
        fused = model(ep)
        singles = [model(Episode(q, s[:, i:i + 1], ep.support_masks[:, i:i + 1])) for i in range(2)]
    torch.testing.assert_close(fused, torch.maximum(*singles), rtol=1e-10, atol=1e-10)
    assert not torch.equal(singles[0], singles[1])
