"""The fast paths of the explanation pipeline against the slow ones they replace (float64, tiny models):

- batched ablation decodes (``MatchingAdapter.iter_ablations``) and the ablation weights against one
  ``decode(state, ablate_level=l)`` per level, for every adapter (DCAMA, HSNet, DMTNet, FeatureMatcher, the
  generic ``ablated_state`` batching and the sequential fallback): relative error < 1e-9;
- one encode per episode for the three AffEx variants (``ExplanationCache``, ``explain_variants``), the same maps;
- the perturbation metrics with the query encoded once (``reuse_query``) against every state run whole.
"""
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fss_attr.affex import VARIANTS, AffinityExplainer, ExplanationCache  # noqa: E402
from fss_attr.data.episode import Episode  # noqa: E402
from fss_attr.metrics import evaluate  # noqa: E402
from fss_attr.models import DCAMA, DMTNet, HSNet  # noqa: E402
from fss_attr.models.base import MatchingAdapter, concat_states  # noqa: E402
from fss_attr.models.generic import FeatureMatcher  # noqa: E402
from fss_attr.testing import random_masks, random_region  # noqa: E402
from test_dcama import tiny_swin  # noqa: E402
from test_hsnet import DMT_SIZE, HS_SIZE, randomize_norms  # noqa: E402
from toy_adapter import PooledPixelMatcher  # noqa: E402

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def episode(b, n, size, seed, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    return Episode(torch.randn(b, 3, *size, generator=g, dtype=F64).to(dtype),
                   torch.randn(b, n, 3, *size, generator=g, dtype=F64).to(dtype),
                   random_masks(b, n, size, generator=g), query_mask=random_region(b, size, generator=g))


class TinyPyramid(nn.Module):
    """Three conv stages (strides 2, 4, 8) returning a list of feature maps."""

    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(3, 8, 3, 2, 1), nn.Conv2d(8, 12, 3, 2, 1), nn.Conv2d(12, 16, 3, 2, 1)])

    def forward(self, x):
        out = []
        for conv in self.convs:
            x = torch.relu(conv(x))
            out.append(x)
        return out


class Pooled64(PooledPixelMatcher):
    """The toy matcher with the support masks in the features' dtype (float64 here)."""

    def encode(self, episode):
        state = super().encode(episode)
        state["feats"] = [(q, s, m.to(q.dtype), g) for q, s, m, g in state["feats"]]
        return state


class BatchedPooled(Pooled64):
    """The toy matcher with the ``ablated_state`` hook: the generic batched ablation path."""

    def ablated_state(self, state, level):
        """Every level gets a [B] factor: 0 for the ablated level, 1 for the others (joinable along the batch)."""
        feats = []
        for i, (q, s, m, g, *_) in enumerate(state["feats"]):
            feats.append((q, s, m, g, torch.full((q.shape[0],), float(i != level), dtype=q.dtype)))
        return {**state, "feats": feats}

    def decode(self, state, ablate_level=None):
        feats = state["feats"]
        if feats and len(feats[0]) == 5:            # an ablated state: the factors say which level is zeroed
            probs = []
            for q, s, m, g, keep in feats:
                p = torch.softmax(self.scale * q @ s.transpose(1, 2), -1) @ m[..., None]
                p = torch.where(keep.view(-1, 1, 1, 1) > 0, p.view(-1, 1, g, g), 0.0)
                probs.append(F.interpolate(p, size=state["size"], mode="bilinear", align_corners=False))
            fg = torch.stack(probs).mean(0)
            return torch.cat([1 - fg, fg], 1).clamp(1e-6, 1 - 1e-6).log()
        return super().decode(state, ablate_level)


def _seeded(seed, build):
    torch.manual_seed(seed)
    return build()


BUILDERS = {
    "dcama": lambda: (_seeded(0, lambda: DCAMA(tiny_swin()).to(F64)), (64, 64)),
    "hsnet-vote": lambda: (_seeded(1, lambda: randomize_norms(HSNet(shot_fusion="vote")).double().eval()), HS_SIZE),
    "hsnet-mean": lambda: (_seeded(1, lambda: randomize_norms(HSNet(shot_fusion="mean")).double().eval()), HS_SIZE),
    "dmtnet": lambda: (_seeded(2, lambda: randomize_norms(DMTNet(shot_fusion="mean")).double().eval()), DMT_SIZE),
    "feature-matcher": lambda: (_seeded(3, lambda: FeatureMatcher(TinyPyramid(), 3, "cosine", 0.1,
                                                                  (0.5, 0.3, 0.2)).double().eval()), (32, 40)),
    "generic-batched": lambda: (BatchedPooled(), (24, 24)),
    "sequential-fallback": lambda: (Pooled64(), (24, 24)),
}
MODELS: dict = {}


def get(name):
    if name not in MODELS:
        MODELS[name] = BUILDERS[name]()
    return MODELS[name]


def rel_err(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


NAMES = ["dcama", "hsnet-vote", "hsnet-mean", "dmtnet", "feature-matcher", "generic-batched", "sequential-fallback"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("b,n", [(1, 1), (2, 3)])
def test_ablation_weights_equal_the_per_level_decodes(name, b, n):
    model, size = get(name)
    ep = episode(b, n, size, seed=10 * b + n)
    with torch.no_grad():
        state = model.encode(ep)
        sequential = torch.stack([model.decode(state, ablate_level=l) for l in range(model.n_levels)])
        for batch_size in (3, 64):
            batched = model.decode_ablations(state, batch_size=batch_size)
            assert batched.shape == sequential.shape and batched.dtype == F64
            assert rel_err(batched, sequential) < 1e-9
        some = [model.n_levels - 1, 0]
        assert rel_err(model.decode_ablations(state, some), sequential[some]) < 1e-9
        region = ep.query_mask
        want = model.sequential_level_weights(state, region)
        got = model.level_weights(state, region)
        assert got.dtype == F64 and got.shape == (b, model.n_levels)
        assert rel_err(got, want) < 1e-9
        assert torch.equal(model.decode(state), model(ep))      # the fast paths leave the state untouched


def tiny_resnet_dcama():
    """DCAMA on a torchvision bottleneck ResNet with one block per stage (full widths), float64."""
    import torchvision

    torch.manual_seed(4)
    return DCAMA(torchvision.models.ResNet(torchvision.models.resnet.Bottleneck, [1, 1, 1, 1])).to(F64)


def region_of(kind, b, size, g):
    """[B, H, W] bool regions: a corner pixel, the image's edges, all of it, or a random blob / noise."""
    h, w = size
    r = torch.zeros(b, h, w, dtype=torch.bool)
    if kind == "corner":                 # one pixel in a corner: the kernel taps that fall in the zero padding
        r[:, 0, w - 1] = True
    elif kind == "edges":                # the border rows and columns
        r[:, 0], r[:, -1], r[:, :, 0], r[:, :, -1] = True, True, True, True
    elif kind == "all":
        r[:] = True
    else:
        r = random_region(b, size, generator=g, kind=kind)
    return r


@pytest.mark.parametrize("backbone,size,b,n,kind", [
    ("swin", (64, 64), 1, 1, "corner"), ("swin", (64, 64), 2, 3, "noise"), ("swin", (64, 64), 1, 2, "edges"),
    ("swin", (64, 64), 2, 1, "all"), ("resnet", (64, 64), 1, 2, "blob"), ("resnet", (96, 96), 2, 1, "corner"),
])
def test_dcama_ablation_weights_from_the_foreground_channel(backbone, size, b, n, kind):
    """DCAMA's ``level_weights`` (the last convolution for the foreground channel only, on the ablated tails
    of ``_ablated_tails``) equals the per-level decodes' weights, on both backbones, several sizes, batches,
    shots, chunk sizes and regions (corners and edges: where the convolutions' zero padding is read)."""
    key = f"dcama-{backbone}"
    if key not in MODELS:
        MODELS[key] = get("dcama")[0] if backbone == "swin" else tiny_resnet_dcama()
    model = MODELS[key]
    g = torch.Generator().manual_seed(b * 10 + n)
    ep = episode(b, n, size, seed=100 * b + n)
    region = region_of(kind, b, size, g)
    with torch.no_grad():
        state = model.encode(ep)
        logits = model.decode(state)
        want = model.sequential_level_weights(state, region, logits)
        for batch_size in (1, 5, 64):
            got = model.level_weights(state, region, logits, batch_size=batch_size)
            assert got.dtype == F64 and got.shape == (b, model.n_levels)
            assert rel_err(got, want) < 1e-9
        # the base class path (the full ablated logits of iter_ablations) agrees too
        base = MatchingAdapter.level_weights(model, state, region, logits)
        assert rel_err(base, want) < 1e-9


def test_concat_states_joins_along_the_batch():
    a = {"x": torch.ones(2, 3), "meta": (4, 4), "levels": [(torch.zeros(2, 1), 7)]}
    b = {"x": torch.zeros(2, 3), "meta": (4, 4), "levels": [(torch.ones(2, 1), 7)]}
    joined = concat_states([a, b])
    assert joined["x"].shape == (4, 3) and joined["meta"] == (4, 4) and joined["levels"][0][1] == 7
    assert torch.equal(joined["levels"][0][0], torch.tensor([[0.], [0.], [1.], [1.]]))
    with pytest.raises(ValueError, match="differ"):
        concat_states([a, {**b, "meta": (5, 5)}])


def counting_encodes(model):
    calls = []
    original = model.encode

    def encode(ep, *args, **kwargs):
        calls.append(ep)
        return original(ep, *args, **kwargs)

    model.encode = encode
    return calls


@pytest.mark.parametrize("name", ["feature-matcher", "dcama"])
def test_three_variants_one_encode_per_episode(name):
    model, size = get(name)
    episodes = [episode(1, 2, size, seed=s) for s in (1, 2, 3)]
    calls = counting_encodes(model)
    try:
        cached = []
        for ep in episodes:                              # the evaluation loop: one cache per episode
            cache = ExplanationCache()
            cached.append({v: AffinityExplainer(v, blur_kernel=9).explain(model, ep, cache=cache) for v in VARIANTS})
        assert len(calls) == len(episodes) and [c for c in calls] == episodes
        del calls[:]
        shared = ExplanationCache()                      # one cache kept across episodes resets itself
        for ep, want in zip(episodes, cached):
            got = {v: AffinityExplainer(v, blur_kernel=9).explain(model, ep, cache=shared) for v in VARIANTS}
            assert all(torch.equal(got[v].maps, want[v].maps) for v in VARIANTS)
        assert len(calls) == len(episodes)
        for ep, want in zip(episodes, cached):
            del calls[:]
            together = AffinityExplainer(blur_kernel=9).explain_variants(model, ep)
            assert len(calls) == 1
            for v in VARIANTS:
                alone = AffinityExplainer(v, blur_kernel=9).explain(model, ep)          # no cache: the old path
                for got in (want[v], together[v]):
                    assert torch.equal(got.maps, alone.maps)
                    assert torch.equal(got.level_weights, alone.level_weights)
                    assert torch.equal(got.region, alone.region) and torch.equal(got.logits, alone.logits)
    finally:
        del model.encode


def test_cache_keys_on_region_and_weights():
    model, size = get("feature-matcher")
    ep = episode(1, 2, size, seed=4)
    cache = ExplanationCache()
    ex = AffinityExplainer("masked", blur_kernel=9)
    for region in ("logits", "gt", "all"):
        for weights in ("ablation", "uniform"):
            got = ex.explain(model, ep, region=region, level_weights=weights, cache=cache)
            want = ex.explain(model, ep, region=region, level_weights=weights)
            assert torch.equal(got.maps, want.maps) and torch.equal(got.level_weights, want.level_weights)
    assert cache.encodes == 1
    top = AffinityExplainer("masked", blur_kernel=9, top_k=3)
    assert torch.equal(top.explain(model, ep, cache=cache).maps, top.explain(model, ep).maps)
    with pytest.raises(ValueError, match="variant"):
        ex.explain_variants(model, ep, ("unmasked", "bogus"))


@pytest.mark.parametrize("name", ["feature-matcher", "dcama", "hsnet-mean", "dmtnet"])
def test_metrics_unchanged_with_the_query_reused(name):
    """The query's features reused for every perturbation state: float64, the same values to rounding
    (IoU-based metrics exactly; continuous ones within 1e-9 relative)."""
    model, size = get(name)
    ep = episode(1, 2, size, seed=5)
    attributions = torch.rand(ep.support_masks.shape, generator=torch.Generator().manual_seed(6), dtype=F64)
    metrics = ("miou", "iauc", "dauc", "iauc@1%", "miouloss@5%", "image_iauc", "infidelity")
    queries = []
    original = model.query_features

    def counting(query):
        queries.append(query)
        return original(query)

    model.query_features = counting
    try:
        cache: dict = {}
        kw = dict(steps=8, internal_batch_size=4, infidelity_perturbations=4)
        reused = evaluate(model, ep, attributions, metrics, cache=cache, **kw)
        again = evaluate(model, ep, attributions.flip(-1), metrics, cache=cache, **kw)
        assert len(queries) == 1                           # one query encode for both explainers' metrics
        whole = evaluate(model, ep, attributions, metrics, reuse_query=False, **kw)
        whole_again = evaluate(model, ep, attributions.flip(-1), metrics, reuse_query=False, **kw)
    finally:
        del model.query_features
    for got, want in ((reused, whole), (again, whole_again)):
        for m in metrics:
            if m in ("iauc@1%", "infidelity"):
                assert rel_err(got[m], want[m]) < 1e-9, m
            else:
                assert torch.equal(got[m], want[m]), m


def test_evaluation_loop_encodes_each_episode_once_for_the_three_variants():
    """fss_attr.evaluation.evaluate_episodes passes a per-episode dict as ``cache``: AffEx keeps its
    ExplanationCache there, so the three variants of an episode share one encode."""
    from fss_attr.evaluation import EvaluationConfig, evaluate_episodes

    model, size = get("feature-matcher")
    episodes = [episode(1, 2, size, seed=s) for s in (7, 8)]
    explainers = {f"affex-{v}": AffinityExplainer(v, blur_kernel=9) for v in VARIANTS}
    calls = counting_encodes(model)
    try:
        config = EvaluationConfig(metrics=("miou", "miouloss@5%"), region="gt")
        results = list(evaluate_episodes(model, episodes, explainers, config))
    finally:
        del model.encode
    assert len(calls) == len(episodes) and len(results) == len(episodes)
    assert all(len(r.rows) == len(VARIANTS) for r in results)
