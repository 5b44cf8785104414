"""LIME in the AffEx paper's settings (fss_attr.baselines.lime): its pieces against hand-derived values and the
whole explainer against a literal per-sample twin (one episode per sample, captum's Lasso fit by scikit-learn)."""
import pytest
import torch
import torch.nn.functional as F

from fss_attr.baselines import make_explainer
from fss_attr.baselines.lime import Lime, superpixels, weighted_lasso, weighted_ridge
from fss_attr.data.episode import Episode
from fss_attr.explanation import resolve_region
from fss_attr.metrics.scores import foreground_logit
from tests.test_metrics_models import ConvMatcher, blob_episode


def test_paper_settings_are_the_default():
    lime = make_explainer("lime")
    assert (lime.settings, lime.n_samples, lime.n_segments, lime.compactness, lime.alpha, lime.kernel_width,
            lime.image_weight) == ("paper", 25, 80, 10.0, 0.01, 1.0, 0.2)
    ridge = Lime(settings="ridge")
    assert (ridge.n_samples, ridge.n_segments, ridge.alpha, ridge.kernel_width, ridge.image_weight) == \
        (64, 50, 1.0, 0.25, None)
    with pytest.raises(ValueError, match="settings must be one of"):
        Lime(settings="captum")
    with pytest.raises(ValueError, match="image_weight applies to settings='paper'"):
        Lime(settings="ridge", image_weight=0.5)
    with pytest.raises(ValueError, match="image_weight must be in"):
        Lime(image_weight=1.5)


def test_shared_labels_start_at_zero_in_every_image(gen):
    ep = blob_episode(gen, b=1, n=3, size=(20, 20))
    shared = superpixels(ep.support_images[0], n_segments=8, compactness=100.0, shared_labels=True)
    across = superpixels(ep.support_images[0], n_segments=8, compactness=100.0)
    for n in range(3):
        labels = shared[n].unique()
        assert labels.tolist() == list(range(int(labels.max()) + 1))
        torch.testing.assert_close(across[n] - across[n].min(), shared[n], rtol=0, atol=0)


def test_a_draw_that_keeps_no_mask_pixel_switches_one_mask_feature_on():
    seg = torch.tensor([[0, 0, 1, 1], [2, 2, 3, 3]]).repeat(2, 1)[None].expand(2, 4, 4).clone()     # [N=2, 4, 4]
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[0, 1, 2:] = True               # shot 0's mask lies in feature 3 only
    z = Lime(n_samples=400, seed=3).paper_samples(seg, masks)
    assert z.shape == (400, 4) and bool(z[:, 3].all())
    for k in range(3):                   # the others stay Bernoulli(1/2)
        assert 0.35 < float(z[:, k].double().mean()) < 0.65
    masks[1, 0, :2] = True               # now features 0 and 3: each fixes about half of the all-off draws
    z = Lime(n_samples=400, seed=3).paper_samples(seg, masks)
    assert bool((z[:, 0] | z[:, 3]).all())
    assert not bool(z[:, 0].all()) and not bool(z[:, 3].all())
    empty = Lime(n_samples=50, seed=3).paper_samples(seg, torch.zeros_like(masks))
    assert not bool(empty.any(1).all())   # no mask to keep: draws stay as drawn (some all off)


def test_paper_kernel_hand_values(gen):
    x = torch.randn(2, 3, 6, 6, generator=gen, dtype=torch.float64)
    masks = torch.zeros(2, 6, 6, dtype=torch.bool)
    masks[0, :, :4] = True               # 24 pixels
    masks[1, 3:, 3:] = True              # 9 pixels
    keep = torch.zeros(2, 2, 6, 6, dtype=torch.bool)
    keep[0, 0, :, :2] = True             # sample 0: shot 0 keeps 12 of 24 mask pixels, shot 1 keeps none -> left out
    keep[0, 1, :3] = True
    keep[1] = True                       # sample 1: everything kept
    lime = Lime(kernel_width=0.7, image_weight=0.3)
    cos0 = F.cosine_similarity(x[0].flatten(), (x[0] * keep[0, 0]).flatten(), dim=0)
    d_img = 1 - (cos0 + 0) / 2
    d_mask = ((1 - 12 / 24) + 1) / 2
    d = 0.3 * d_img + 0.7 * d_mask
    want = torch.stack([torch.exp(-d ** 2 / 0.49), torch.tensor(1.0, dtype=torch.float64)])
    torch.testing.assert_close(lime.paper_kernel(x, masks, keep), want, rtol=1e-12, atol=1e-12)


def test_weighted_lasso_is_sklearns_and_drops_non_finite_rows(gen):
    from sklearn.linear_model import Lasso

    x = (torch.rand(30, 5, generator=gen) < 0.5).double()
    y = x @ torch.tensor([1.0, -2.0, 0.0, 0.5, 3.0], dtype=torch.float64) + 0.3
    w = torch.rand(30, generator=gen, dtype=torch.float64) + 0.1
    want = Lasso(alpha=0.01).fit(x.numpy(), y.numpy(), sample_weight=w.numpy()).coef_
    torch.testing.assert_close(weighted_lasso(x, y, w, 0.01), torch.from_numpy(want), rtol=0, atol=0)
    # a tiny penalty recovers the generating coefficients (up to coordinate descent's stopping tolerance, 1e-4
    # of the duality gap)
    torch.testing.assert_close(weighted_lasso(x, y, w, 1e-8), torch.tensor([1.0, -2.0, 0.0, 0.5, 3.0],
                                                                           dtype=torch.float64), rtol=0, atol=1e-3)
    y2 = y.clone()
    y2[[3, 7]] = float("nan")
    keep = torch.ones(30, dtype=torch.bool)
    keep[[3, 7]] = False
    torch.testing.assert_close(weighted_lasso(x, y2, w, 0.01), weighted_lasso(x[keep], y[keep], w[keep], 0.01))
    assert torch.equal(weighted_lasso(x[:2], y2[:2] * float("nan"), w[:2], 0.01), torch.zeros(5, dtype=torch.float64))
    # ridge = 0 and Lasso → 0 agree where the least-squares problem is determined
    torch.testing.assert_close(weighted_lasso(x, y, w, 1e-10), weighted_ridge(x, y, w, 0.0), rtol=0, atol=1e-3)


def literal_paper_lime(model, episode, region, seed, n_samples, n_segments, compactness):
    """The paper's LIME written out per sample: an episode of the kept shots per sample, its mean foreground
    logit over R, the paper's distance with torch's cosine similarity, scikit-learn's Lasso."""
    from sklearn.linear_model import Lasso

    draws = Lime(n_samples=n_samples, n_segments=n_segments, compactness=compactness, seed=seed)
    maps = []
    for e in range(episode.batch_size):
        seg = superpixels(episode.support_images[e], n_segments, compactness, shared_labels=True)
        z = draws.paper_samples(seg, episode.support_masks[e])
        ys, ws = [], []
        for j in range(n_samples):
            keep = z[j][seg]                                                  # [N, H, W]
            images = episode.support_images[e] * keep[:, None]
            masks = episode.support_masks[e] & keep
            valid = masks.flatten(1).any(1)
            ep = Episode(episode.query[e:e + 1], images[valid][None], masks[valid][None])
            with torch.no_grad():
                ys.append(float(foreground_logit(model(ep), region[e:e + 1])[0]))
            cos, frac = [], []
            for n in range(episode.n_shots):
                if valid[n]:
                    cos.append(float(F.cosine_similarity(episode.support_images[e, n].flatten(),
                                                         images[n].flatten(), dim=0)))
                    frac.append(1 - float(masks[n].sum()) / float(episode.support_masks[e, n].sum()))
                else:
                    cos.append(0.0)
                    frac.append(1.0)
            d = 0.2 * (1 - sum(cos) / len(cos)) + 0.8 * sum(frac) / len(frac)
            ws.append(torch.exp(torch.tensor(-d ** 2, dtype=torch.float64)).item())
        coef = Lasso(alpha=0.01).fit(z.double().numpy(), ys, sample_weight=ws).coef_
        maps.append(torch.from_numpy(coef)[seg])
    return torch.stack(maps)


@pytest.mark.parametrize("shape", [(1, 1, 16), (2, 3, 20)])
def test_paper_lime_equals_the_literal_per_sample_twin(gen, shape):
    b, n, size = shape
    ep = blob_episode(gen, b=b, n=n, size=(size, size))
    model = ConvMatcher().double()
    region = resolve_region("gt", model(ep), ep.query_mask)
    lime = Lime(n_samples=30, n_segments=10, compactness=100.0, seed=7, internal_batch_size=4)
    calls = []
    hook = model.register_forward_pre_hook(lambda m, args: calls.append(args[0].n_shots))
    got = lime.attribute(model, ep, region)
    hook.remove()
    want = literal_paper_lime(model, ep, region, 7, 30, 10, 100.0)
    torch.testing.assert_close(got.cpu(), want, rtol=1e-7, atol=1e-9)
    if n > 1:                            # some samples left a shot out, and those ran with fewer shots
        assert min(calls) < n
    assert bool(got.abs().sum() > 0)
