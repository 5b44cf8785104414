"""Robustness of AffEx and the ops to degenerate and hostile inputs (issue 15, items 1-5, 8, 9, 12)."""
import warnings

import pytest
import torch
from torch import nn

import fss_attr
from fss_attr import AffinityExplainer, LevelFeatures, LevelScores, ops
from fss_attr.data.episode import Episode
from fss_attr.explanation import CONSTANT_ULPS, constant_maps, degenerate_maps, minmax
from fss_attr.models import FeatureMatcher

BACKENDS = [b for b in ("literal", "torch", "cpu") if b in fss_attr.available_backends()]


def _region(b, h, w):
    r = torch.zeros(b, h, w, dtype=torch.bool)
    r[:, h // 4: h // 2 + 1, w // 4: w // 2 + 1] = True
    return r


class TinyBackbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)

    def forward(self, x):
        return [self.conv(x)]


def _episode(n=2, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    masks = torch.zeros(1, n, size, size, dtype=torch.bool)
    masks[..., 3:12, 4:13] = True
    qm = torch.zeros(1, size, size, dtype=torch.bool)
    qm[:, 4:10, 5:11] = True
    return Episode(torch.randn(1, 3, size, size, generator=g), torch.randn(1, n, 3, size, size, generator=g),
                   masks, query_mask=qm)


# item 1: inputs that require grad --------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("variant", ["unmasked", "masked", "signed"])
def test_levels_that_require_grad_give_the_no_grad_maps(backend, variant):
    torch.manual_seed(0)
    model = FeatureMatcher(TinyBackbone(), 1).eval()
    ep = _episode()
    with torch.no_grad():
        ref_levels = model.levels(model.encode(ep))
    levels = model.levels(model.encode(ep))
    assert levels[0].query.requires_grad
    ex = AffinityExplainer(variant, blur_kernel=5, backend=backend)
    region = ep.query_mask
    got = ex.explain_levels(levels, region, ep.support_masks)
    assert not got.requires_grad
    torch.testing.assert_close(got, ex.explain_levels(ref_levels, region, ep.support_masks), rtol=0, atol=0)
    scores = LevelScores(torch.randn(1, 16, 18, requires_grad=True), (4, 4), (3, 3), 2)
    assert not ex.explain_levels([scores], _region(1, 8, 8), torch.ones(1, 2, 8, 8)).requires_grad


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "literal"])
def test_backproject_ops_read_inputs_that_require_grad_as_constants(backend):
    s = torch.randn(2, 6, 5, requires_grad=True)
    w = torch.rand(2, 2, 6)
    got = ops.backproject_scores(s, w, backend=backend)
    assert not got.requires_grad
    torch.testing.assert_close(got, ops.backproject_scores(s.detach(), w, backend=backend), rtol=0, atol=0)
    q, k = torch.randn(2, 6, 3, requires_grad=True), torch.randn(2, 5, 3, requires_grad=True)
    got = ops.backproject_features(q, k, w, "cosine", backend=backend)
    torch.testing.assert_close(got, ops.backproject_features(q.detach(), k.detach(), w, "cosine", backend=backend))


def test_minmax_of_a_tensor_that_requires_grad():
    x = torch.tensor([[1.0, 3.0, 2.0]], requires_grad=True)
    out = minmax(x)
    torch.testing.assert_close(out.detach(), torch.tensor([[0.0, 1.0, 0.5]]))
    out.sum().backward()                     # differentiable where the map is not constant
    assert x.grad is not None


# item 2: empty batches and degenerate shapes ------------------------------------------------------------------

@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "literal"])
@pytest.mark.parametrize("shape", [(0, 8, 4, 4, 2, 3, 5), (2, 0, 4, 4, 2, 3, 5), (2, 8, 0, 4, 2, 3, 5),
                                   (2, 8, 4, 4, 0, 3, 5)])
def test_correlation_of_empty_inputs_is_the_same_on_every_backend(backend, shape):
    b, c, hq, wq, n, hs, ws = shape
    q, s = torch.randn(b, c, hq, wq), torch.randn(b, n, c, hs, ws)
    got = ops.correlation(q, s, backend=backend)
    assert tuple(got.shape) == (b, hq, wq, n, hs, ws)
    assert not bool(got.ne(0).any())                           # C = 0: every score is 0 (an empty sum)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("variant", ["unmasked", "masked"])
def test_explain_levels_of_an_empty_batch_is_empty(backend, variant):
    scores = LevelScores(torch.randn(0, 16, 32), (4, 4), (4, 4), 2)
    feats = LevelFeatures(torch.randn(0, 16, 3), torch.randn(0, 32, 3), (4, 4), (4, 4), 2)
    ex = AffinityExplainer(variant, blur_kernel=3, backend=backend)
    for lv in (scores, feats):
        out = ex.explain_levels([lv], torch.ones(0, 8, 8, dtype=torch.bool), torch.ones(0, 2, 8, 8))
        assert tuple(out.shape) == (0, 2, 8, 8) and out.dtype == torch.float32


def test_minmax_and_flags_of_an_empty_batch():
    assert tuple(minmax(torch.zeros(0, 2, 3)).shape) == (0, 2, 3)
    assert tuple(constant_maps(torch.zeros(0, 2, 3)).shape) == (0,)
    assert tuple(degenerate_maps(torch.zeros(0, 2, 3), torch.zeros(0, 3, 3, dtype=torch.bool)).shape) == (0,)


@pytest.mark.parametrize("what, args, match", [
    ("0 shots", ((1, 3, 8, 8), (1, 0, 3, 8, 8), (1, 0, 8, 8)), "support_images must hold at least one shot"),
    ("0x0 images", ((1, 3, 0, 0), (1, 2, 3, 0, 0), (1, 2, 0, 0)), "image size of at least 1×1"),
    ("0x5 images", ((1, 3, 0, 5), (1, 2, 3, 0, 5), (1, 2, 0, 5)), "image size of at least 1×1"),
])
def test_episode_refuses_degenerate_shapes(what, args, match):
    q, s, m = args
    with pytest.raises(ValueError, match=match):
        Episode(torch.randn(q), torch.randn(s), torch.zeros(m, dtype=torch.bool))


@pytest.mark.parametrize("field", ["query", "support_images"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_episode_refuses_non_finite_images(field, bad):
    ep = _episode()
    x = getattr(ep, field).clone()
    x.view(-1)[5] = bad
    with pytest.raises(ValueError, match=f"{field} contains NaN or infinite values"):
        Episode(**{"query": ep.query, "support_images": ep.support_images, "support_masks": ep.support_masks,
                   field: x})


# item 3: maps with no information ------------------------------------------------------------------------------

def test_minmax_constant_rule_values():
    # spread of 100 ulps of float32 at magnitude 1: constant under the float32 resolution, not under float64's
    one = torch.tensor(1.0, dtype=torch.float64)
    eps32 = torch.finfo(torch.float32).eps
    x = torch.stack([one, one + 100 * eps32, one + 50 * eps32]).view(1, 3)
    assert bool(constant_maps(x, torch.float32)[0]) and not bool(constant_maps(x)[0])
    assert minmax(x, resolution=torch.float32).eq(0).all()
    torch.testing.assert_close(minmax(x), torch.tensor([[0.0, 1.0, 0.5]], dtype=torch.float64))
    # the threshold is relative: the same spread at magnitude 1e6 is far below resolution, at magnitude 1e-3
    # with a spread of 1e-6 it is far above
    edge = CONSTANT_ULPS * eps32
    assert bool(constant_maps(torch.tensor([[1e6, 1e6 + 1e6 * edge * 0.99]], dtype=torch.float64), torch.float32))
    assert not bool(constant_maps(torch.tensor([[1e6, 1e6 + 1e6 * edge * 1.01]], dtype=torch.float64),
                                  torch.float32))
    assert not bool(constant_maps(torch.tensor([[1e-3, 1e-3 + 1e-6]]), torch.float32))
    # an all-zero map, an exactly constant map, one episode constant and one not
    x = torch.tensor([[0.0, 0.0], [-2.0, -2.0], [1.0, 4.0]])
    torch.testing.assert_close(minmax(x), torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 1.0]]))
    assert constant_maps(x).tolist() == [True, True, False]


@pytest.mark.filterwarnings("ignore:the region makes the map degenerate")
@pytest.mark.parametrize("backend", BACKENDS)
def test_one_support_position_gives_an_all_zero_map_on_every_backend(backend):
    g = torch.Generator().manual_seed(1)
    s = (3 * torch.randn(1, 1, 1, generator=g)).double()
    region = torch.tensor([[[True, True], [False, True]]])
    for softmax in (True, False):
        out = AffinityExplainer(softmax=softmax, backend=backend).explain_levels(
            [LevelScores(s.abs(), (1, 1), (1, 1), 1)], region)
        assert out.eq(0).all(), out
        assert degenerate_maps(out).tolist() == [True]
    # a 2×2 query grid (R informative) and still one support position: constant by min-max's rule, no warning
    s4 = (3 * torch.randn(1, 4, 1, generator=g)).abs()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for softmax in (True, False):
            out = AffinityExplainer(softmax=softmax, backend=backend).explain_levels(
                [LevelScores(s4, (2, 2), (1, 1), 1)], torch.tensor([[[True, False, False], [False, True, False]]]))
            assert out.eq(0).all(), out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_uniform_affinity_gives_an_all_zero_map_on_every_backend(backend, dtype):
    lv = LevelScores(torch.full((2, 16, 18), 0.7, dtype=dtype), (4, 4), (3, 3), 2)
    out = AffinityExplainer(backend=backend).explain_levels([lv], _region(2, 16, 16))
    assert out.eq(0).all()
    feats = LevelFeatures(torch.ones(1, 16, 4, dtype=dtype), torch.ones(1, 18, 4, dtype=dtype), (4, 4), (3, 3), 2)
    out = AffinityExplainer("masked", blur_kernel=3, backend=backend).explain_levels(
        [feats], _region(1, 16, 16), torch.ones(1, 2, 16, 16))
    assert out.eq(0).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_region_covering_the_image_warns_and_gives_zeros(backend):
    g = torch.Generator().manual_seed(3)
    lv = LevelScores(torch.randn(2, 16, 18, generator=g), (4, 4), (3, 3), 2)
    region = _region(2, 12, 12)
    region[1] = True
    with pytest.warns(UserWarning, match=r"degenerate in episode\(s\) \[1\] \(it covers the whole image"):
        out = AffinityExplainer(backend=backend).explain_levels([lv], region)
    assert out[1].eq(0).all() and out[0].amax() == 1
    assert degenerate_maps(out, region).tolist() == [False, True]


def test_explain_flags_degenerate_episodes_and_warns_on_the_empty_prediction_fallback():
    torch.manual_seed(0)
    model = FeatureMatcher(TinyBackbone(), 1).eval()
    ep = _episode()
    ex = AffinityExplainer("unmasked", backend="torch")
    with pytest.warns(UserWarning, match="degenerate"):
        out = ex.explain(model, ep, region="all", level_weights="uniform")
    assert out.degenerate.tolist() == [True] and out.maps.eq(0).all()
    out = ex.explain(model, ep, region="gt", level_weights="uniform")
    assert out.degenerate.tolist() == [False]


# item 4: softmax=False with signed affinities ------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_softmax_off_refuses_negative_affinities(backend):
    ex = AffinityExplainer(softmax=False, backend=backend)
    scores = torch.rand(1, 16, 18)
    scores[0, 3, 4] = -0.25
    with pytest.raises(ValueError, match=r"levels\[0\] has negative affinities \(min -0.25\)"):
        ex.explain_levels([LevelScores(scores, (4, 4), (3, 3), 2)], _region(1, 8, 8))
    q, k = torch.randn(1, 16, 4), torch.randn(1, 18, 4)
    with pytest.raises(ValueError, match="negative affinities"):
        ex.explain_levels([LevelFeatures(q, k, (4, 4), (3, 3), 2, "cosine")], _region(1, 8, 8))
    with pytest.raises(ValueError, match="negative affinities"):      # level_maps checks too
        ex.level_maps([LevelFeatures(q, k, (4, 4), (3, 3), 2, "dot")], _region(1, 8, 8))
    # relu'd (ReLU-cosine) and non-negative scores are accepted, and with softmax the sign does not matter
    out = ex.explain_levels([LevelFeatures(q, k, (4, 4), (3, 3), 2, "cosine", relu=True)], _region(1, 8, 8))
    assert out.amax() == 1
    AffinityExplainer(backend=backend).explain_levels([LevelScores(scores, (4, 4), (3, 3), 2)], _region(1, 8, 8))


# item 5: level weights ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("weights, match", [
    ([0.0, 0.0], r"positive sum in every episode; they sum to 0 in episode\(s\) \[0, 1\]"),
    ([-1.0, 0.5], "level_weights must be >= 0, got a minimum of -1"),
    ([[0.5, 0.5], [0.0, 0.0]], r"sum to 0 in episode\(s\) \[1\]"),
    ([float("nan"), 1.0], "NaN or infinite"),
    ([1.0], r"shape \[2\] or \[2, 2\]"),
])
def test_level_weights_must_be_non_negative_with_a_positive_sum(weights, match):
    lv = LevelScores(torch.randn(2, 16, 18), (4, 4), (3, 3), 2)
    with pytest.raises(ValueError, match=match):
        AffinityExplainer().explain_levels([lv, lv], _region(2, 8, 8), level_weights=weights)


def test_level_weights_with_one_zero_entry_are_fine():
    lv = LevelScores(torch.randn(1, 16, 18), (4, 4), (3, 3), 2)
    lv2 = LevelScores(torch.randn(1, 16, 18), (4, 4), (3, 3), 2)
    ex = AffinityExplainer(backend="torch")
    torch.testing.assert_close(ex.explain_levels([lv, lv2], _region(1, 8, 8), level_weights=[0.0, 2.0]),
                               ex.explain_levels([lv2], _region(1, 8, 8)))


# item 8: bring-your-own backbone --------------------------------------------------------------------------------

class DictBackbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.b = nn.Conv2d(4, 6, 3, stride=2, padding=1)

    def forward(self, x):
        fa = self.a(x)
        return {"late": self.b(fa), "early": fa}          # insertion order, not key order


class SeqBackbone(DictBackbone):
    def forward(self, x):
        d = super().forward(x)
        return tuple(d.values())


class OneBackbone(DictBackbone):
    def forward(self, x):
        return self.a(x)


def test_feature_matcher_takes_dicts_tuples_and_single_tensors():
    torch.manual_seed(0)
    ep = _episode()
    ref = FeatureMatcher(SeqBackbone(), 2).eval()
    state = ref.encode(ep)
    assert [lv.hw for lv in state.levels] == [(4, 4), (8, 8)]
    d = FeatureMatcher(DictBackbone(), 2).eval()
    d.backbone.load_state_dict(ref.backbone.state_dict())
    torch.testing.assert_close(d.decode(d.encode(ep)), ref.decode(state))
    one = FeatureMatcher(OneBackbone(), 1).eval()
    assert [lv.hw for lv in one.encode(ep).levels] == [(8, 8)]


@pytest.mark.parametrize("out, match", [
    (lambda x: "features", "returned str; expected a list/tuple or dict"),
    (lambda x: {"a": x.mean()}, r"dict with keys \['a'\]; item 0 is \(\), expected a \[K=3, C, h, w\] tensor"),
    (lambda x: [x[:1]], r"item 0 is \(1, 3, 16, 16\)"),
    (lambda x: [x, None], "item 1 is NoneType"),
])
def test_feature_matcher_says_what_a_bad_backbone_returned(out, match):
    class Bad(nn.Module):
        def forward(self, x):
            return out(x)

    with pytest.raises(TypeError, match=match):
        FeatureMatcher(Bad(), 1).encode(_episode())


def test_every_adapter_names_a_dtype_or_device_mismatch():
    """One check (MatchingAdapter.check_episode): HSNet/DMTNet and DCAMA refuse a float64 episode into a float32
    model naming both dtypes, before any layer runs; FeatureMatcher checks the type only, as a bring-your-own
    backbone may cast its input."""
    from fss_attr.models.dcama import DCAMA
    from fss_attr.models.hsnet import HSNet

    ep = _episode()
    ep64 = Episode(ep.query.double(), ep.support_images.double(), ep.support_masks)
    for model in (HSNet(), DCAMA("resnet50")):
        with pytest.raises(TypeError, match=r"the episode is torch.float64 on cpu, \w+ is torch.float32 on cpu"):
            model.encode(ep64)

    class Casting(SeqBackbone):
        def forward(self, x):
            return super().forward(x.float())

    torch.manual_seed(0)
    matcher = FeatureMatcher(Casting(), 2).eval()
    torch.testing.assert_close(matcher(ep64), matcher(ep))
    with pytest.raises(TypeError, match="episode must be a fss_attr.data.episode.Episode, got dict"):
        matcher.encode({"query": ep.query})


# item 9: NaN pixels into the similarity explainers --------------------------------------------------------------

def test_similarity_explainers_refuse_nan_images():
    from fss_attr.similarity import SFAM, EmbeddingModel
    from fss_attr.similarity.explainers import default_methods

    torch.manual_seed(0)
    model = EmbeddingModel(nn.Conv2d(3, 5, 3, stride=2, padding=1).eval())
    x1, x2 = torch.randn(1, 3, 16, 16), torch.randn(1, 3, 16, 16)
    bad = x1.clone()
    bad[0, 0, 3, 3] = float("nan")
    for name, ex in default_methods().items():
        with pytest.raises(ValueError, match="x1 contains NaN or infinite values"):
            ex.explain(model, bad, x2)
        with pytest.raises(ValueError, match="x2 contains NaN or infinite values"):
            ex.explain(model, x2, bad)
    assert bool(torch.isfinite(SFAM("cosine").explain(model, x1, x2).maps).all())


# item 12: numbers that overflow ---------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_overflowing_affinities_are_refused_on_every_backend(backend):
    g = torch.Generator().manual_seed(0)
    q, k = 1e19 * torch.randn(1, 16, 4, generator=g), 1e19 * torch.randn(1, 18, 4, generator=g)
    ex = AffinityExplainer(backend=backend)
    with pytest.raises(ValueError, match=r"levels\[0\]: the affinities can reach .* beyond what torch.float32"):
        ex.explain_levels([LevelFeatures(q, k, (4, 4), (3, 3), 2)], _region(1, 8, 8))
    with pytest.raises(ValueError, match="beyond what torch.float32"):      # a scale that makes moderate dots overflow
        ex.explain_levels([LevelFeatures(1e4 * q / 1e19, 1e4 * k / 1e19, (4, 4), (3, 3), 2, "dot", scale=1e31)],
                          _region(1, 8, 8))
    # without softmax the column sums (up to H·W·max s) must fit too
    s = torch.full((1, 16, 18), 1e37)
    with pytest.raises(ValueError, match="with softmax=False, the column sums"):
        AffinityExplainer(softmax=False, backend=backend).explain_levels([LevelScores(s, (4, 4), (3, 3), 2)],
                                                                         _region(1, 8, 8))
    # the same features in float64 are fine, and so are the float32 scores with the softmax
    out = AffinityExplainer(backend=backend).explain_levels(
        [LevelFeatures(q.double(), k.double(), (4, 4), (3, 3), 2)], _region(1, 8, 8))
    assert bool(torch.isfinite(out).all())
    assert bool(torch.isfinite(ex.explain_levels([LevelScores(s, (4, 4), (3, 3), 2)], _region(1, 8, 8))).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("d", [1, 4, 64])
def test_overflow_check_decides_by_the_norm_bound(dtype, d):
    """The dot-product range check settles most levels from max|q|·max|k|·D (no float64 copy) and computes
    the norms only when that is not enough: its decision is the norm bound's, scale·max‖q‖·max‖k‖ < limit,
    on features whose norms are far below √D·max|x| (one large coordinate) and on dense ones, for scales
    swept across the limit."""
    from fss_attr.affex.explainer import _check_range

    g = torch.Generator().manual_seed(d)
    limit = torch.finfo(dtype).max
    spiky_q = torch.randn(2, 6, d, generator=g, dtype=torch.float64) * 1e-3
    spiky_q[..., 0] = 1.0                 # ‖q‖ ≈ max|q|: the cheap bound overshoots by about D
    dense_k = torch.randn(2, 5, d, generator=g, dtype=torch.float64)
    for q, k in ((spiky_q, dense_k), (dense_k[:, :4], spiky_q[:, :3])):
        q, k = (1e10 * q).to(dtype), (1e10 * k).to(dtype)          # large features: the scales stay finite
        norm_bound = float(q.double().norm(dim=-1).max()) * float(k.double().norm(dim=-1).max())
        for factor in (0.5, 0.99, 1.01, 2.0, 0.9 / d, 1.1 / d):
            scale = factor * (limit / norm_bound)
            lv = LevelFeatures(q, k, (2, 3) if q.shape[1] == 6 else (2, 2), (1, 5) if k.shape[1] == 5 else (1, 3),
                               1, "dot", scale)
            refused = not scale * norm_bound < limit
            if refused:
                with pytest.raises(ValueError, match="beyond what"):
                    _check_range(lv, 0, True, 16)
            else:
                _check_range(lv, 0, True, 16)


def test_no_warning_for_ordinary_inputs():
    lv = LevelScores(torch.randn(1, 16, 18), (4, 4), (3, 3), 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        AffinityExplainer(backend="torch").explain_levels([lv], _region(1, 8, 8))
