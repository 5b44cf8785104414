"""AffinityExplainer.explain on a model adapter: regions, level weights, and agreement with explain_levels."""
import pytest
import torch

from fss_attr import AffinityExplainer
from fss_attr.explanation import resolve_region
from fss_attr.data.episode import Episode
from tests.conftest import rel_err
from tests.toy_adapter import PooledPixelMatcher


def toy_episode(gen, b=2, n=3, size=(32, 32)):
    q = torch.randn(b, 3, *size, generator=gen)
    s = torch.randn(b, n, 3, *size, generator=gen)
    masks = torch.zeros(b, n, *size, dtype=torch.bool)
    masks[..., 8:24, 6:20] = True
    s[masks.unsqueeze(2).expand_as(s)] += 2.0
    qm = torch.zeros(b, *size, dtype=torch.bool)
    qm[:, 10:26, 10:22] = True
    q[qm.unsqueeze(1).expand_as(q)] += 2.0
    return Episode(q, s, masks, query_mask=qm)


@pytest.mark.parametrize("variant", ["unmasked", "masked", "signed"])
def test_explain_equals_explain_levels_with_ablation_weights(variant, gen):
    ep, model = toy_episode(gen), PooledPixelMatcher()
    ex = AffinityExplainer(variant, blur_kernel=9, backend="torch")
    out = ex.explain(model, ep)
    state = model.encode(ep)
    assert torch.equal(out.logits, model(ep))
    assert torch.equal(out.region, out.prediction) and out.region.any()
    assert torch.allclose(out.level_weights.sum(1), torch.ones(2, dtype=torch.float64))
    want = ex.explain_levels(model.levels(state), out.region, ep.support_masks, out.level_weights)
    assert torch.equal(out.maps, want)
    literal = AffinityExplainer(variant, blur_kernel=9, backend="literal").explain(model, ep)
    assert rel_err(out.maps, literal.maps) < 1e-4


def test_ablation_weights_follow_the_logit_change(gen):
    ep, model = toy_episode(gen), PooledPixelMatcher()
    state = model.encode(ep)
    region = ep.query_mask
    w = model.level_weights(state, region)
    fg_mean = [model.decode(state, l)[:, 1].double()[region].view(2, -1).mean(1) for l in (None, 0, 1)]
    deltas = torch.stack([(fg_mean[1] - fg_mean[0]).abs(), (fg_mean[2] - fg_mean[0]).abs()], 1)
    assert w.dtype == torch.float64
    assert torch.allclose(w, deltas / deltas.sum(1, keepdim=True), atol=1e-12)


def test_region_modes(gen):
    ep, model = toy_episode(gen), PooledPixelMatcher()
    logits = model(ep)
    assert torch.equal(resolve_region("gt", logits, ep.query_mask), ep.query_mask)
    assert resolve_region("all", logits, None).all()
    with pytest.raises(ValueError, match="query_mask"):
        resolve_region("gt", logits, None)
    with pytest.raises(ValueError, match="region must be"):
        resolve_region("pred", logits, None)
    empty_fg = torch.stack([torch.zeros_like(logits[:, 0]) + 5, torch.zeros_like(logits[:, 1])], 1)
    with pytest.warns(UserWarning, match="prediction is empty"):
        assert resolve_region("logits", empty_fg, None).all()
    out = AffinityExplainer(backend="torch").explain(model, ep, region="gt", level_weights="uniform")
    assert torch.equal(out.region, ep.query_mask)
    assert torch.allclose(out.level_weights, torch.full((2, 2), 0.5, dtype=torch.float64))


def test_episode_validation(gen):
    ep = toy_episode(gen)
    with pytest.raises(ValueError, match="support_images"):
        Episode(ep.query, ep.support_images[..., :16], ep.support_masks)
    with pytest.raises(ValueError, match="support_masks"):
        Episode(ep.query, ep.support_images, ep.support_masks[:, :1])
    with pytest.raises(ValueError, match="query must be"):
        Episode(ep.query[:, :1], ep.support_images, ep.support_masks)
    with pytest.raises(ValueError, match="binary"):
        Episode(ep.query, ep.support_images, ep.support_masks.float() * 0.5)
    sub = ep.index(1)
    assert sub.batch_size == 1 and torch.equal(sub.query, ep.query[1:2])


def test_generic_feature_matcher(gen):
    """Any backbone returning per-level maps becomes an adapter whose levels are the model's affinities."""
    from torch import nn

    from fss_attr.models import FeatureMatcher

    class Pools(nn.Module):
        def forward(self, x):
            return [torch.nn.functional.avg_pool2d(x, 4), torch.nn.functional.avg_pool2d(x, 8)]

    ep = toy_episode(gen)
    model = FeatureMatcher(Pools(), n_levels=2, similarity="dot", temperature=0.5, level_weights=[1.0, 3.0])
    state = model.encode(ep)
    for lv, s in zip(model.levels(state), model.affinities(state)):
        assert torch.equal(lv.materialize().scores, s)
    out = AffinityExplainer("masked", blur_kernel=9).explain(model, ep)
    assert out.maps.shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="n_levels=3"):
        FeatureMatcher(Pools(), n_levels=3).encode(ep)
    with pytest.raises(ValueError, match="level_weights"):
        FeatureMatcher(Pools(), n_levels=2, level_weights=[1.0])


def test_feature_matcher_is_differentiable_for_gradient_baselines(gen):
    """Gradient baselines differentiate the adapter's forward w.r.t. the support pixels."""
    from torch import nn

    from fss_attr.baselines import make_explainer
    from fss_attr.models import FeatureMatcher

    class Convs(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)

        def forward(self, x):
            f = self.conv(x)
            return [torch.nn.functional.avg_pool2d(f, 4), torch.nn.functional.avg_pool2d(f, 8)]

    ep = toy_episode(gen)
    model = FeatureMatcher(Convs(), n_levels=2, similarity="cosine", temperature=0.1).eval()
    out = make_explainer("saliency").explain(model, ep)
    assert out.maps.shape == ep.support_masks.shape
    assert float(out.maps.amax()) == 1.0                       # non-zero gradients, min-max scaled
