"""The explainer protocol (docs/explainers.md): every explainer family answers ``explain(model, *inputs, ...)``
and returns an fss_attr.Explanation with the documented fields, shapes, dtypes and ranges."""
import inspect

import pytest
import torch
from torch import nn

import fss_attr
from fss_attr import AffinityExplainer, Explanation
from fss_attr.baselines import EXPLAINERS, make_explainer
from fss_attr.explanation import Explainer, minmax
from fss_attr.fewshot.ram import RegionActivationMapping, region_activation_maps
from fss_attr.fewshot.rcn import RegionComparisonNetwork
from fss_attr.sat.classifier import LinearProbe, ProbedClassifier
from fss_attr.sat.saliency import GradCAM, InputGradient, class_score, grad_cam, input_gradient
from fss_attr.similarity import GradientAttention, default_methods
from tests.test_metrics_models import ConvMatcher, blob_episode
from tests.test_similarity import images, tiny_model

FAST = {"ig": dict(n_steps=3), "gradientshap": dict(n_samples=2),
        "lime": dict(n_samples=8, n_segments=6, compactness=100.0)}


def in_unit_range(maps):
    return maps.dtype == torch.float32 and bool(torch.isfinite(maps).all()) and \
        float(maps.min()) >= 0.0 and float(maps.max()) <= 1.0


def test_explanation_is_the_package_result_type():
    assert fss_attr.Explanation is Explanation and fss_attr.Explainer is Explainer
    ex = Explanation(torch.zeros(1, 2, 3, 3), scores=torch.ones(1))
    assert ex.raw is None and ex.logits is None and ex.scores.shape == (1,)
    with pytest.raises(TypeError):          # family fields are keyword-only
        Explanation(torch.zeros(1), torch.zeros(1), torch.zeros(1))


def every_explainer():
    return ([make_explainer(n, **({"backend": "torch"} if n.startswith("affex") else FAST.get(n, {})))
             for n in EXPLAINERS] + list(default_methods().values())
            + [GradientAttention(form="triplet"), RegionActivationMapping(), GradCAM(), InputGradient()])


def test_one_call_shape():
    """explain's first argument is ``model`` in every family, and every explainer is an Explainer."""
    for explainer in every_explainer():
        assert isinstance(explainer, Explainer), explainer
        params = list(inspect.signature(explainer.explain).parameters)
        assert params[0] == "model", (explainer, params)


# ---------------------------------------------------------------- few-shot segmentation

@pytest.mark.parametrize("name", EXPLAINERS)
def test_fss_explainers(name, gen):
    ep = blob_episode(gen, b=2, n=2, size=(16, 16))
    model = ConvMatcher().double()
    kw = {"backend": "torch"} if name.startswith("affex") else FAST.get(name, {})
    out = make_explainer(name, **kw).explain(model, ep, region="gt")
    assert isinstance(out, Explanation)
    assert out.maps.shape == (2, 2, 16, 16) and in_unit_range(out.maps)
    assert out.raw.shape == (2, 2, 16, 16) and torch.isfinite(out.raw).all()
    assert out.logits.shape == (2, 2, 16, 16) and torch.equal(out.prediction, out.logits.argmax(1) == 1)
    assert torch.equal(out.region, ep.query_mask)
    assert out.scores is None and out.target is None and out.support is None and out.query is None
    if name.startswith("affex"):
        assert out.raw.dtype == torch.float64 and out.level_weights.shape == (2, model.n_levels)
        if name == "affex-unmasked":        # maps = minmax(E), raw = E
            torch.testing.assert_close(out.maps, minmax(out.raw, torch.float32), rtol=0, atol=0)
    else:
        assert out.raw.dtype == torch.float32 and out.level_weights is None
        torch.testing.assert_close(out.maps, minmax(out.raw.double(), torch.float32), rtol=0, atol=1e-6)


def test_affex_raw_is_the_aggregated_map_before_the_variant(gen):
    ep = blob_episode(gen, b=2, n=2, size=(16, 16))
    model = ConvMatcher().double()
    unmasked = AffinityExplainer("unmasked", backend="torch").explain(model, ep, "gt")
    masked = AffinityExplainer("masked", blur_kernel=5, backend="torch").explain(model, ep, "gt")
    assert torch.equal(unmasked.raw, masked.raw)
    want = AffinityExplainer("masked", blur_kernel=5, backend="torch").explain_levels(
        model.levels(model.encode(ep)), masked.region, ep.support_masks, masked.level_weights)
    assert torch.equal(masked.maps, want)
    with pytest.raises(ValueError, match="level_weights"):
        AffinityExplainer(backend="torch").explain(model, ep, level_weights="equal")


# ---------------------------------------------------------------- similarity

@pytest.mark.parametrize("name", list(default_methods()))
def test_similarity_forms(name, gen):
    method = default_methods()[name]
    model = tiny_model(gen, linear=True, normalize=True)
    x1, x2 = images(gen, 3, 24, 20), images(gen, 3, 24, 20)
    pairs = method.explain(model, x1, x2)
    assert isinstance(pairs, Explanation)
    assert pairs.maps.shape == (3, 2, 24, 20) and in_unit_range(pairs.maps)
    assert pairs.raw.shape == (3, 2, 6, 5) and pairs.raw.dtype == torch.float64 and pairs.scores.shape == (3,)
    everything = method.explain(model, x1)
    assert everything.maps.shape == (3, 3, 24, 20) and in_unit_range(everything.maps)
    assert everything.raw.shape == (3, 3, 6, 5) and everything.scores.shape == (3, 3)
    named = method.explain_all_pairs(model, x1)              # the all-pairs form by name: the same call
    assert torch.equal(named.maps, everything.maps) and torch.equal(named.scores, everything.scores)
    assert everything.logits is None and everything.region is None
    with pytest.raises(ValueError, match="triplet"):
        method.explain(model, x1, x2, x1)


def test_similarity_triplets(gen):
    model = tiny_model(gen)
    x = images(gen, 6, 16, 16)
    method = GradientAttention(form="triplet")
    out = method.explain(model, x[:2], x[2:4], x[4:])
    assert out.maps.shape == (2, 3, 16, 16) and in_unit_range(out.maps)
    assert out.raw.shape == (2, 3, 4, 4) and out.scores.shape == (2, 3)
    named = method.explain_triplets(model, x[:2], x[2:4], x[4:])
    assert torch.equal(named.maps, out.maps) and torch.equal(named.raw, out.raw)
    with pytest.raises(ValueError, match="x2"):
        method.explain(model, x[:2], None, x[4:])


# ---------------------------------------------------------------- RAM

def test_ram(gen):
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=gen)))
    model = RegionComparisonNetwork(grid=(2, 2)).eval()
    support, query = torch.randn(3, 2, 3, 32, 32, generator=gen), torch.randn(4, 3, 32, 32, generator=gen)
    out = RegionActivationMapping().explain(model, support, query)
    assert isinstance(out, Explanation)
    assert out.maps.shape == (4, 3, 2, 32, 32) and in_unit_range(out.maps)
    assert out.raw.shape == (4, 3, 2, 2, 2) and out.raw is out.support and out.query.shape == (4, 3, 2, 2, 2)
    with torch.no_grad():
        scores = model(support, query)
    torch.testing.assert_close(out.scores, scores, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out.raw.sum((2, 3, 4)), scores, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out.query.sum((2, 3, 4)), scores, rtol=1e-6, atol=1e-6)
    # maps: the support map upsampled and min-max scaled per (query, class) over the K shots
    assert bool((out.maps.flatten(2).amax(-1) == 1).all())
    with torch.no_grad():
        grid = region_activation_maps(model.explain_features(*model.episode_features(support, query)))
    assert grid.maps.shape == (4, 3, 2, 2, 2) and torch.equal(grid.support, out.support)
    with pytest.raises(TypeError, match="RegionComparisonNetwork"):
        RegionActivationMapping().explain(nn.Identity(), support, query)


# ---------------------------------------------------------------- SAT saliency

def probed_classifier(seed=0):
    g = torch.Generator().manual_seed(seed)
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1, dtype=torch.float64)
    with torch.no_grad():
        for p in conv.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    linear = nn.Linear(4, 3, dtype=torch.float64)
    with torch.no_grad():
        for p in linear.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    probe = LinearProbe(torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64), linear)
    return ProbedClassifier(lambda x: torch.relu(conv(x)), probe)


@pytest.mark.parametrize("cls", [GradCAM, InputGradient])
def test_sat_saliency(cls, gen):
    model = probed_classifier()
    x = torch.randn(3, 3, 12, 10, generator=gen, dtype=torch.float64)
    target = torch.tensor([0, 2, 1])
    out = cls().explain(model, x, target)
    assert isinstance(out, Explanation)
    assert out.maps.shape == (3, 12, 10) and in_unit_range(out.maps)
    assert out.raw.shape == (3, 12, 10) and out.raw.dtype == torch.float64 and bool((out.raw >= 0).all())
    want = grad_cam(model.head, model.features(x), target, (12, 10)) if cls is GradCAM else \
        input_gradient(model, x, target)
    assert torch.equal(out.raw, want)
    assert torch.equal(out.maps, minmax(want, torch.float32))
    torch.testing.assert_close(out.scores, class_score(model(x), target))
    assert torch.equal(out.target, target)
    predicted = cls().explain(model, x)                      # no target: the predicted class
    assert torch.equal(predicted.target, model(x).argmax(1))
    logits = cls(log_prob=False).explain(model, x, target)
    torch.testing.assert_close(logits.scores, model(x).gather(1, target[:, None])[:, 0])


# ---------------------------------------------------------------- one validation module, messages naming the argument

def test_shared_argument_checks():
    from fss_attr.validation import check_blur, check_choice, check_positive_int

    assert check_positive_int("n", 3) == 3 and check_positive_int("seed", 0, 0) == 0
    for call, message in [(lambda: check_positive_int("n_steps", 0), "n_steps must be a positive int, got 0"),
                          (lambda: check_positive_int("n_way", 1, 2), "n_way must be an int >= 2, got 1"),
                          (lambda: check_positive_int("layer", 16, 0, 15), "layer must be an int in 0..15"),
                          (lambda: check_positive_int("k", True), "k must be a positive int, got True"),
                          (lambda: check_positive_int("size", 4, odd=True), "size must be a positive odd int"),
                          (lambda: check_blur(31, 0.0), "blur_sigma must be > 0"),
                          (lambda: check_blur(33, 1.0, (16, 16)), "blur_kernel=33 needs support masks larger"),
                          (lambda: check_choice("variant", "maskd", ("masked",)), "variant must be one of")]:
        with pytest.raises(ValueError, match=message):
            call()
    # the explainers use them
    with pytest.raises(ValueError, match="n_steps must be a positive int"):
        make_explainer("ig", n_steps=0)
    with pytest.raises(ValueError, match="chunk must be a positive int"):
        default_methods()["spatial decomposition"].__class__(chunk=0)
    with pytest.raises(ValueError, match="blur_kernel must be a positive odd int"):
        AffinityExplainer(blur_kernel=2)
