"""Guided IG, Blur IG and XRAI through PAIR's saliency package, the paper's settings (issue 16, item 4)."""
import pytest
import torch

from fss_attr.baselines import make_explainer
from fss_attr.baselines.pair import quantile_clamp
from tests.test_metrics_models import ConvMatcher, blob_episode

pytest.importorskip("saliency.core")


def test_quantile_clamp_ties_the_top_percent(gen):
    x = torch.rand(2, 2, 10, 10, generator=gen, dtype=torch.float64)
    out = quantile_clamp(x)
    for b in range(2):
        q = torch.quantile(x[b].flatten(), 0.99)
        assert torch.equal(out[b], torch.minimum(x[b], q))
        assert int((out[b] == out[b].max()).sum()) >= 2


@pytest.mark.parametrize("name", ["guidedig", "blurig", "xrai"])
def test_pair_baselines_run_and_follow_the_support(name, gen):
    ep = blob_episode(gen, b=2, n=2, size=(12, 12))
    model = ConvMatcher().double()
    out = make_explainer(name, steps=4).explain(model, ep, "gt")
    assert out.maps.shape == (2, 2, 12, 12) and torch.isfinite(out.maps).all()
    assert float(out.maps.max()) == 1.0 and float(out.maps.min()) == 0.0
    # episode 1 alone gives its map of the batch
    alone = make_explainer(name, steps=4).explain(model, ep.index(1), "gt")
    torch.testing.assert_close(alone.raw, out.raw[1:], rtol=1e-5, atol=1e-7)


def test_guidedig_gradients_come_from_the_confidence_over_r(gen):
    """With steps=1… the PAIR call gets the gradient of the mean softmax foreground probability over R."""
    from saliency.core.base import INPUT_OUTPUT_GRADIENTS

    from fss_attr.baselines.pair import _Target
    from fss_attr.data.episode import Episode
    from fss_attr.metrics.scores import foreground_confidence

    ep = blob_episode(gen, b=1, n=2, size=(12, 12))
    model = ConvMatcher().double()
    x = ep.support_images.clone().requires_grad_()
    f = foreground_confidence(model(Episode(ep.query, x, ep.support_masks)), ep.query_mask)
    (want,) = torch.autograd.grad(f.sum(), x)
    got = _Target(model, ep, ep.query_mask, None)(ep.support_images.permute(0, 1, 3, 4, 2).numpy(), None,
                                                  [INPUT_OUTPUT_GRADIENTS])[INPUT_OUTPUT_GRADIENTS]
    torch.testing.assert_close(torch.from_numpy(got), want.permute(0, 1, 3, 4, 2), rtol=1e-10, atol=1e-14)
    one = _Target(model, ep, ep.query_mask, 1)(ep.support_images[:, 1].permute(0, 2, 3, 1).numpy(), None,
                                              [INPUT_OUTPUT_GRADIENTS])[INPUT_OUTPUT_GRADIENTS]
    torch.testing.assert_close(torch.from_numpy(one), want[:, 1].permute(0, 2, 3, 1), rtol=1e-10, atol=1e-14)
