"""Baseline explainers: the common call, closed forms on a linear model, literal gradients, LIME's pieces."""
import numpy as np
import pytest
import torch

from fss_attr import AffinityExplainer
from fss_attr.explanation import minmax, resolve_region
from fss_attr.baselines import EXPLAINERS, SupportTarget, make_explainer
from fss_attr.baselines.lime import Lime, superpixels, weighted_ridge
from tests.test_metrics_models import ConvMatcher, LinearAdapter, blob_episode
from tests.toy_adapter import PooledPixelMatcher

FAST = {"ig": dict(n_steps=4), "gradientshap": dict(n_samples=3),
        "lime": dict(n_samples=12, n_segments=12, compactness=100.0)}
# the toy images are pixel noise, on which SLIC at compactness 10 merges everything into 1–2 segments; at 100
# it gives about n_segments segments (on real photos compactness 10 works: 31 segments for 50 at 128 px)


@pytest.mark.parametrize("name", EXPLAINERS)
def test_every_explainer_has_the_same_call_and_output(name, gen):
    ep = blob_episode(gen, b=2, n=2, size=(16, 16))
    model = ConvMatcher().double()
    out = make_explainer(name, **FAST.get(name, {})).explain(model, ep, region="gt")
    assert out.maps.shape == (2, 2, 16, 16) and out.maps.dtype == torch.float32
    assert torch.isfinite(out.maps).all() and out.maps.min() >= 0 and out.maps.max() <= 1
    assert torch.equal(out.region, ep.query_mask)
    assert torch.equal(out.logits, model(ep)) and torch.equal(out.prediction, model(ep).argmax(1) == 1)
    default = make_explainer(name, **FAST.get(name, {})).explain(model, ep)
    assert torch.equal(default.region, resolve_region("logits", model(ep), None))


@pytest.mark.parametrize("name", ["random", "gaussnoise", "gradientshap", "lime"])
def test_seeded_explainers_repeat(name, gen):
    ep = blob_episode(gen, b=1, n=2, size=(16, 16))
    model = ConvMatcher().double()
    a = make_explainer(name, seed=5, **FAST.get(name, {}))
    b = make_explainer(name, seed=5, **FAST.get(name, {}))
    first = a.explain(model, ep, "gt").maps
    assert torch.equal(first, b.explain(model, ep, "gt").maps)
    assert not torch.equal(first, a.explain(model, ep, "gt").maps)      # the next episode gets fresh draws


def test_registry():
    for variant in ("unmasked", "masked", "signed"):
        ex = make_explainer(f"affex-{variant}", backend="torch")
        assert isinstance(ex, AffinityExplainer) and ex.variant == variant and ex.backend == "torch"
    assert make_explainer("Integrated-Gradients", n_steps=3).n_steps == 3
    assert make_explainer("masked").variant == "masked"
    with pytest.raises(ValueError, match="unknown explainer 'gradcam'.*saliency"):
        make_explainer("gradcam")
    with pytest.raises(ValueError, match="n_steps"):
        make_explainer("ig", n_steps=0)
    with pytest.raises(ValueError, match="n_samples"):
        make_explainer("lime", n_samples=1)


def test_a_missing_package_is_named_before_anything_runs(monkeypatch, tmp_path, capsys):
    import importlib.util

    from fss_attr.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sklearn" else real(name, *a))
    with pytest.raises(ModuleNotFoundError, match=r"explainer 'lime' needs scikit-learn: pip install scikit-learn"):
        make_explainer("lime")
    make_explainer("saliency")                                   # the others are unaffected
    out = tmp_path / "out"
    assert main(["evaluate", "--explainers", "random,lime", "--episodes", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "needs scikit-learn" in err and len(err.strip().splitlines()) == 1 and not out.exists()


# ---------------------------------------------------------------- the target

def test_target_is_the_mean_foreground_logit_over_the_region(gen):
    ep = blob_episode(gen, b=2, n=2, size=(16, 16))
    model = ConvMatcher().double()
    region = torch.rand(2, 16, 16, generator=gen) < 0.4
    region[:, 3, 4] = True
    logits = model(ep)
    got = SupportTarget(model)(ep.support_images, ep.query, ep.support_masks, region)
    for e in range(2):
        assert got[e].item() == pytest.approx(logits[e, 1][region[e]].mean().item(), rel=1e-13)


# ---------------------------------------------------------------- closed forms on f = 0.5 + Σ W·x

@pytest.fixture
def linear(gen):
    ep = blob_episode(gen, b=2, n=2, size=(12, 12))
    return LinearAdapter(2, (12, 12), seed=int(torch.randint(0, 1000, (1,), generator=gen)), affine="logit"), ep


def test_saliency_of_a_linear_model_is_its_weight(linear):
    model, ep = linear
    out = make_explainer("saliency").explain(model, ep, "all")
    want = model.weight.abs().mean(1).expand(2, -1, -1, -1)
    torch.testing.assert_close(out.raw.double(), want.float().double(), rtol=1e-6, atol=0)
    torch.testing.assert_close(out.maps, minmax(want).float(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["ig", "deeplift", "gradientshap"])
def test_gradient_baselines_of_a_linear_model_are_weight_times_input(linear, name):
    """For f affine, IG and DeepLift from the zero image give W·x exactly; GradientShap gives W·(x − mean of its
    baselines and noise), whose expectation is W·x: with zero noise and the zero baseline only, W·x exactly."""
    model, ep = linear
    kw = {"gradientshap": dict(stdevs=0.0, n_samples=2, noise_baseline=False)}.get(name, {})
    out = make_explainer(name, **kw).explain(model, ep, "all")
    want = (model.weight * ep.support_images).mean(2)          # signed: the channel mean
    assert (want < 0).any() and (want > 0).any()
    # IG: captum's Gauss-Legendre step sizes are float32 (relative error ~1e-7)
    torch.testing.assert_close(out.raw.double(), want.float().double(), rtol=1e-5, atol=1e-12)


def test_saliency_equals_the_autograd_gradient(gen):
    ep = blob_episode(gen, b=2, n=2, size=(16, 16))
    model = ConvMatcher().double()
    region = ep.query_mask
    x = ep.support_images.clone().requires_grad_()
    f = SupportTarget(model)(x, ep.query, ep.support_masks, region)
    (grad,) = torch.autograd.grad(f.sum(), x)
    out = make_explainer("saliency").explain(model, ep, region)
    torch.testing.assert_close(out.raw, grad.abs().mean(2).float(), rtol=0, atol=0)


def test_ig_equals_a_literal_gauss_legendre_integral(gen):
    ep = blob_episode(gen, b=1, n=2, size=(16, 16))
    model = ConvMatcher().double()
    n_steps = 5
    nodes, weights = np.polynomial.legendre.leggauss(n_steps)
    total = torch.zeros_like(ep.support_images)
    for node, weight in zip(nodes, weights):
        alpha = float((node + 1) / 2)
        x = (alpha * ep.support_images).requires_grad_()
        f = SupportTarget(model)(x, ep.query, ep.support_masks, ep.query_mask)
        (grad,) = torch.autograd.grad(f.sum(), x)
        total += float(weight / 2) * grad
    want = (total * ep.support_images).mean(2)
    out = make_explainer("ig", n_steps=n_steps, internal_batch_size=2).explain(model, ep, "gt")
    torch.testing.assert_close(out.raw.double(), want.float().double(), rtol=1e-5, atol=1e-10)


def test_deeplift_without_nonlinear_modules_is_gradient_times_input(gen):
    """PooledPixelMatcher uses no nn modules, so captum overrides no gradient: DeepLift = ∇f(x) · x."""
    ep = blob_episode(gen, b=2, n=2, size=(16, 16))
    ep = ep.to("cpu")
    ep = type(ep)(ep.query.float(), ep.support_images.float(), ep.support_masks, ep.query_mask)  # the toy is float32
    model = PooledPixelMatcher()
    x = ep.support_images.clone().requires_grad_()
    (grad,) = torch.autograd.grad(SupportTarget(model)(x, ep.query, ep.support_masks, ep.query_mask).sum(), x)
    out = make_explainer("deeplift").explain(model, ep, "gt")
    torch.testing.assert_close(out.raw, (grad * ep.support_images).mean(2), rtol=1e-5, atol=1e-9)


def test_gaussnoise_clips_at_the_099_quantile_by_default(gen):
    """The paper's noisy mask: M + N(0, 0.01²), values above the episode's 0.99 quantile set to it."""
    ep = blob_episode(gen, b=2, n=2, size=(12, 12))
    model = ConvMatcher().double()
    out = make_explainer("gaussnoise", seed=3).explain(model, ep, "gt").raw.double()
    g = torch.Generator().manual_seed(3)
    x = ep.support_masks.double() + 0.01 * torch.randn(ep.support_masks.shape, generator=g, dtype=torch.float64)
    for e in range(2):
        q = float(np.quantile(x[e].flatten().numpy(), 0.99))                # numpy's linear rule, as torch's
        want = torch.clamp(x[e], max=q)
        torch.testing.assert_close(out[e], want.float().double(), rtol=0, atol=0)


def test_noisy_mask_baselines(gen):
    ep = blob_episode(gen, b=2, n=2, size=(12, 12))
    model = ConvMatcher().double()
    exact = make_explainer("gaussnoise", sigma=0.0).explain(model, ep, "gt")
    assert torch.equal(exact.raw, ep.support_masks.float())
    # clip_quantile=None: the unclipped variant (issue 16 made the paper's 0.99-quantile clip the default)
    noisy = make_explainer("gaussnoise", seed=3, clip_quantile=None).explain(model, ep, "gt")          # sigma 0.01
    g = torch.Generator().manual_seed(3)
    want = ep.support_masks.double() + 0.01 * torch.randn(ep.support_masks.shape, generator=g, dtype=torch.float64)
    torch.testing.assert_close(noisy.raw, want.float(), rtol=0, atol=0)
    rnd = make_explainer("random", seed=2).explain(model, ep, "gt").raw
    assert rnd.min() >= 0 and rnd.max() < 1 and rnd.std() > 0.2


# ---------------------------------------------------------------- LIME

def test_weighted_ridge_against_an_augmented_least_squares(gen):
    x = (torch.rand(40, 6, generator=gen) < 0.5).double()
    y = torch.randn(40, generator=gen, dtype=torch.float64)
    w = torch.rand(40, generator=gen, dtype=torch.float64)
    lam = 0.7
    beta = weighted_ridge(x, y, w, lam)
    # min Σ w (y − c − xβ)² + λ|β|²: rows sqrt(w)·[1, x] and sqrt(λ)·[0, I]
    a = np.vstack([np.sqrt(w.numpy())[:, None] * np.hstack([np.ones((40, 1)), x.numpy()]),
                   np.hstack([np.zeros((6, 1)), np.sqrt(lam) * np.eye(6)])])
    rhs = np.concatenate([np.sqrt(w.numpy()) * y.numpy(), np.zeros(6)])
    sol = np.linalg.lstsq(a, rhs, rcond=None)[0]
    np.testing.assert_allclose(beta.numpy(), sol[1:], rtol=1e-9, atol=1e-12)


def test_superpixels_are_numbered_across_shots(gen):
    ep = blob_episode(gen, b=1, n=3, size=(20, 20))
    segs = superpixels(ep.support_images[0], n_segments=8, compactness=100.0)
    assert segs.shape == (3, 20, 20) and segs.dtype == torch.int64
    labels = [set(segs[n].unique().tolist()) for n in range(3)]
    assert not (labels[0] & labels[1]) and not (labels[1] & labels[2])
    assert set().union(*labels) == set(range(int(segs.max()) + 1))
    assert max(labels[0]) < min(labels[1]) and max(labels[1]) < min(labels[2])


def test_lime_kernel():
    lime = Lime(settings="ridge", kernel_width=0.5)
    z = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    d = torch.tensor([0.0, 1 - 0.5, 1.0], dtype=torch.float64)       # cosine distance to all-ones
    torch.testing.assert_close(lime.kernel(z), torch.exp(-d ** 2 / 0.25), rtol=1e-15, atol=0)


def test_lime_recovers_an_additive_model(linear):
    """Keeping superpixel s adds c_s = Σ_{pixels of s} W·x to f, so the ridge fit (tiny penalty) returns c_s."""
    model, ep = linear
    lime = Lime(settings="ridge", n_samples=80, n_segments=6, compactness=100.0, alpha=1e-10, seed=1)
    out = lime.explain(model, ep, "all")
    for e in range(2):
        segs = superpixels(ep.support_images[e], 6, 100.0)
        assert segs.max() >= 5
        contrib = (model.weight * ep.support_images[e]).sum(1)           # [N, H, W]
        c = torch.zeros(int(segs.max()) + 1, dtype=torch.float64).index_add_(0, segs.flatten(), contrib.flatten())
        torch.testing.assert_close(out.raw[e].double(), c[segs].float().double(), rtol=1e-4, atol=1e-9)
