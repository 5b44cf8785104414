"""Controlled episodes, the offline pretrained backbone, and LiteMatcher as a model adapter."""
import pytest
import torch

from fss_attr import AffinityExplainer
from fss_attr.backbones.efficientnet import efficientnet_lite0
from fss_attr.data.imagenet import imagenet_denormalize, imagenet_normalize
from fss_attr.data import CLASSES, make_episode, make_episodes, render_image
from fss_attr.models.lite_matcher import LiteMatcher
from tests.conftest import rel_err


@pytest.fixture(scope="module")
def matcher():
    return LiteMatcher()


def test_render_is_deterministic_and_masks_are_consistent():
    a = render_image("brick", seed=5, size=(64, 80), cue="watermark", occluder=True)
    b = render_image("brick", seed=5, size=(64, 80), cue="watermark", occluder=True)
    assert torch.equal(a.image, b.image) and torch.equal(a.object_mask, b.object_mask)
    assert a.image.shape == (3, 64, 80) and 0 <= float(a.image.min()) and float(a.image.max()) <= 1
    assert a.object_mask.any() and a.cue_mask.any() and a.occluder_mask.any()
    assert not (a.distractor_mask & a.object_mask).any()
    assert not (a.occluder_mask & ~a.object_mask).any()
    assert torch.equal(a.evidence_mask, a.object_mask & ~a.occluder_mask)
    assert not torch.equal(render_image("brick", seed=6, size=(64, 80)).image, a.image)
    with pytest.raises(ValueError, match="class_name"):
        render_image("dog", 0)
    with pytest.raises(ValueError, match="cue"):
        render_image("brick", 0, cue="logo")


def test_episodes():
    e = make_episode(11, n_shots=3, size=(64, 64))
    assert e.query.shape == (1, 3, 64, 64) and e.support_images.shape == (1, 3, 3, 64, 64)
    assert e.meta["class_name"] in CLASSES
    assert (e.support_evidence <= e.support_masks).all() and e.query_mask.any()
    assert torch.allclose(imagenet_normalize(e.meta["query_rgb"]), e.query)
    batch = next(make_episodes(4, seed=1, n_shots=2, size=(32, 32), batch_size=4))
    assert batch.batch_size == 4
    assert torch.equal(make_episode(11, 3, (64, 64)).query, e.query)


def test_backbone_is_the_pretrained_one():
    net = efficientnet_lite0()
    x = imagenet_normalize(torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    feats = net(x)
    assert [f.shape[1] for f in feats] == list(net.channels) == [24, 40, 112, 320]
    assert [64 // f.shape[-1] for f in feats] == list(net.strides)
    random_net = efficientnet_lite0(pretrained=False)
    assert not torch.allclose(random_net(x)[-1], feats[-1])
    assert torch.allclose(imagenet_denormalize(imagenet_normalize(x)), x, atol=1e-6)


def test_levels_reproduce_the_models_affinities(matcher):
    e = make_episode(3, n_shots=2, size=(96, 96))
    state = matcher.encode(e)
    levels = matcher.levels(state)
    assert len(levels) == matcher.n_levels == 5
    for lv, scores in zip(levels, matcher.affinities(state)):
        assert torch.equal(lv.materialize().scores, scores)
    assert torch.equal(matcher.decode(state), matcher(e))
    assert not torch.equal(matcher.decode(state, ablate_level=0), matcher(e))
    w = matcher.level_weights(state, e.query_mask)
    assert w.shape == (1, 5) and torch.allclose(w.sum(1), torch.ones(1, dtype=torch.float64))


def test_explain_lite_matcher_backends_agree(matcher):
    e = make_episode(4, n_shots=2, size=(96, 96))
    fast = AffinityExplainer("masked").explain(matcher, e)
    ref = AffinityExplainer("masked", backend="torch").explain(matcher, e)
    assert fast.maps.shape == (1, 2, 96, 96)
    assert rel_err(fast.maps, ref.maps) < 1e-4
