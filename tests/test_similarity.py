"""fss_attr.similarity: closed forms against autograd (float64), all-pairs paths against literal pair loops,
SFAM completeness, the spatial decomposition's marginals, the training constraint, the perturbation curves."""
import itertools

import pytest
import torch
from torch import nn

from fss_attr.similarity import (SFAM, SIMILARITIES, AttentionConsistencyLoss, EmbeddingModel, GradCAMSimilarity,
                                 GradientAttention, SpatialDecomposition, all_pairs, controlled_triplets,
                                 default_methods, default_model, head_vjp, pair_maps, pair_metrics, similarity,
                                 similarity_curves, similarity_grad)
from tests.conftest import rel_err

HEADS = [(False, False), (False, True), (True, False), (True, True)]  # (linear, normalize)
SHAPES = [(3, 16, 16), (4, 24, 20), (2, 32, 12)]  # (B, H, W)


def tiny_model(gen, linear=False, normalize=True, channels=5, dim=4, dtype=torch.float64, bias=True):
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=gen)))
    backbone = nn.Sequential(nn.Conv2d(3, 6, 3, stride=2, padding=1), nn.Tanh(),
                             nn.Conv2d(6, channels, 3, stride=2, padding=1))
    lin = nn.Linear(channels, dim, bias=bias) if linear else None
    return EmbeddingModel(backbone, lin, normalize).to(dtype)


def images(gen, b, h, w, dtype=torch.float64):
    return torch.randn(b, 3, h, w, generator=gen, dtype=dtype)


def features(model, x):
    with torch.no_grad():
        return model.features(x)


@pytest.mark.parametrize("kind", SIMILARITIES)
def test_similarity_grad_matches_autograd(gen, kind):
    e1 = torch.randn(5, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    e2 = torch.randn(5, 7, generator=gen, dtype=torch.float64)
    (ref,) = torch.autograd.grad(similarity(e1, e2, kind).sum(), e1)
    assert rel_err(similarity_grad(e1.detach(), e2, kind), ref) < 1e-12
    s = all_pairs(torch.cat([e1.detach(), e2]), kind)
    assert s.shape == (10, 10)
    assert torch.allclose(s[2, 7], similarity(e1[2], e2[2], kind))


@pytest.mark.parametrize("linear,normalize", HEADS)
def test_head_vjp_matches_autograd(gen, linear, normalize):
    model = tiny_model(gen, linear, normalize)
    g = torch.randn(6, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    v = torch.randn(6, 4 if linear else 5, generator=gen, dtype=torch.float64)
    (ref,) = torch.autograd.grad((model.embed_pooled(g) * v).sum(), g)
    assert rel_err(head_vjp(model, g.detach(), v), ref) < 1e-12


def gradcam_loop(model, a_l, a_r, kind):
    """Literal Grad-CAM on s(A_l[b], A_r[b]), one pair at a time, autograd through the whole head."""
    out = []
    for b in range(a_l.shape[0]):
        a = a_l[b:b + 1].clone().requires_grad_(True)
        s = similarity(model.head(a), model.head(a_r[b:b + 1]), kind)
        (grad,) = torch.autograd.grad(s.sum(), a)
        out.append((grad.mean((-2, -1))[..., None, None] * a_l[b:b + 1]).sum(1))
    return torch.cat(out)


@pytest.mark.parametrize("kind", SIMILARITIES)
@pytest.mark.parametrize("linear,normalize", HEADS)
def test_gradient_attention_closed_form_matches_autograd(gen, kind, linear, normalize):
    model = tiny_model(gen, linear, normalize)
    for b, h, w in SHAPES:
        a = features(model, images(gen, 2 * b, h, w))
        a1, a2 = a[:b], a[b:]
        ref = gradcam_loop(model, a1, a2, kind)
        closed = GradientAttention(kind).raw_maps(model, a1, a2)
        assert rel_err(closed, ref) < 1e-12
        if not linear and (normalize or kind == "cosine"):  # s unchanged when g_l is scaled: maps sum to 0
            assert closed.sum((-2, -1)).abs().max() < 1e-12 * closed.abs().sum((-2, -1)).max()
        assert rel_err(GradCAMSimilarity(kind).raw_maps(model, a1, a2), ref) < 1e-12
        # all pairs, closed form and vmap-autograd, against the literal loop over (i, j)
        ii, jj = zip(*itertools.product(range(b), range(b)))
        ref_all = gradcam_loop(model, a1[list(ii)], a1[list(jj)], kind).view(b, b, *a1.shape[-2:])
        assert rel_err(GradientAttention(kind).raw_maps(model, a1, a1, all_pairs=True), ref_all) < 1e-12
        assert rel_err(GradCAMSimilarity(kind, chunk=2).raw_maps(model, a1, a1, all_pairs=True), ref_all) < 1e-12


@pytest.mark.parametrize("linear,normalize", HEADS)
def test_triplet_attention_matches_autograd(gen, linear, normalize):
    model = tiny_model(gen, linear, normalize)
    a = features(model, images(gen, 9, 20, 16))
    a_a, a_p, a_n = a[:3], a[3:6], a[6:]
    raw, scores = GradientAttention(form="triplet").triplet_raw(model, a_a, a_p, a_n)
    e = [model.head(x) for x in (a_a, a_p, a_n)]
    w = (1 - (e[0] - e[1]).abs()) * (e[0] - e[2]).abs()
    for t, x in enumerate((a_a, a_p, a_n)):
        xg = x.clone().requires_grad_(True)
        s = (w.detach() * model.head(xg)).sum(-1)
        (grad,) = torch.autograd.grad(s.sum(), xg)
        ref = (grad.mean((-2, -1))[..., None, None] * x).sum(1)
        assert rel_err(raw[:, t], ref) < 1e-12
        assert torch.allclose(scores[:, t], s.detach())


@pytest.mark.parametrize("kind", SIMILARITIES)
@pytest.mark.parametrize("linear,normalize", HEADS)
def test_sfam_maps_sum_to_the_score(gen, kind, linear, normalize):
    model = tiny_model(gen, linear, normalize)
    sfam = SFAM(kind)
    for b, h, w in SHAPES:
        a = features(model, images(gen, 2 * b, h, w))
        a1, a2 = a[:b], a[b:]
        s = sfam.scores(model, a1, a2)
        assert torch.allclose(sfam.raw_maps(model, a1, a2).sum((-2, -1)), s, rtol=1e-10, atol=1e-12)
        s_all = sfam.scores(model, a1, a1, all_pairs=True)
        raw_all = sfam.raw_maps(model, a1, a1, all_pairs=True)
        assert torch.allclose(raw_all.sum((-2, -1)), s_all, rtol=1e-10, atol=1e-12)
        for i, j in itertools.product(range(b), range(b)):  # all pairs against pair calls
            assert torch.allclose(raw_all[i, j], sfam.raw_maps(model, a1[i:i + 1], a1[j:j + 1])[0])
        cis, o = sfam.channel_scores(model, a1, a2)
        assert torch.allclose(cis.sum(-1) + o, s, rtol=1e-10, atol=1e-12)
        if not linear and kind != "neg_sq_euclidean":
            assert torch.all(o == 0)  # the channel terms alone add up to the score


def test_sfam_cosine_gap_completeness_literal(gen):
    """Cosine of GAP features, no linear head: CIS_c = g1_c g2_c / (‖g1‖‖g2‖) sum exactly to the score."""
    model = tiny_model(gen, linear=False, normalize=True)
    a = features(model, images(gen, 4, 16, 24))
    g1, g2 = a[:2].mean((-2, -1)), a[2:].mean((-2, -1))
    cis, o = SFAM("cosine").channel_scores(model, a[:2], a[2:])
    assert torch.allclose(cis, g1 * g2 / (g1.norm(dim=1) * g2.norm(dim=1))[:, None], rtol=1e-12)
    assert torch.allclose(cis.sum(1), torch.cosine_similarity(g1, g2), rtol=1e-12, atol=1e-15)
    assert torch.all(o == 0)


@pytest.mark.parametrize("bias", [False, True])
def test_sfam_linear_l2_head(gen, bias):
    """Linear (+ bias) + L2 head, cosine: the C channel terms (Wᵀv)_c g_c sum to s − b·v, v = z_r/(‖z_l‖‖z_r‖);
    exactly s without a bias."""
    model = tiny_model(gen, linear=True, normalize=True, bias=bias)
    a = features(model, images(gen, 6, 16, 20))
    g1, g2 = a[:3].mean((-2, -1)), a[3:].mean((-2, -1))
    lin = model.linear
    z1, z2 = lin(g1), lin(g2)
    v = z2 / (z1.norm(dim=1) * z2.norm(dim=1))[:, None]
    cis, o = SFAM("cosine").channel_scores(model, a[:3], a[3:])
    assert cis.shape == (3, 5)  # feature channels, not embedding dimensions
    assert torch.allclose(cis, (v @ lin.weight) * g1, rtol=1e-12)
    s = torch.cosine_similarity(z1, z2)
    offset = (v * lin.bias).sum(1) if bias else torch.zeros(3, dtype=torch.float64)
    assert torch.allclose(o, offset, rtol=1e-12, atol=0)
    assert torch.allclose(cis.sum(1), s - offset, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("kind", SIMILARITIES)
def test_sfam_cis_weighting_literal(gen, kind):
    """weighting="cis": raw(p) = Σ_c CIS_c A_c(p), by a loop over channels; all pairs against pair calls."""
    model = tiny_model(gen, linear=True, normalize=kind != "dot")
    a = features(model, images(gen, 6, 16, 24))
    a1, a2 = a[:3], a[3:]
    sfam = SFAM(kind, weighting="cis")
    cis, _ = sfam.channel_scores(model, a1, a2)
    ref = sum(cis[:, c, None, None] * a1[:, c] for c in range(a1.shape[1]))
    assert rel_err(sfam.raw_maps(model, a1, a2), ref) < 1e-12
    raw_all = sfam.raw_maps(model, a1, a2, all_pairs=True)
    for i, j in itertools.product(range(3), range(3)):
        assert torch.allclose(raw_all[i, j], sfam.raw_maps(model, a1[i:i + 1], a2[j:j + 1])[0], rtol=1e-12)


@pytest.mark.parametrize("kind", ["cosine", "dot", "neg_sq_euclidean"])
@pytest.mark.parametrize("linear,normalize", HEADS)
def test_spatial_decomposition(gen, kind, linear, normalize):
    model = tiny_model(gen, linear, normalize)
    sd = SpatialDecomposition(kind, chunk=2)
    a = features(model, images(gen, 6, 16, 20))
    a1, a2 = a[:3], a[3:]
    if kind == "neg_sq_euclidean" and not normalize:
        with pytest.raises(ValueError, match="bilinear"):
            sd.point_similarity(model, a1, a2)
        return
    mat = sd.point_similarity(model, a1, a2)
    assert torch.allclose(mat.sum((-2, -1)), sd.scores(model, a1, a2), rtol=1e-10, atol=1e-12)
    raw_all = sd.raw_maps(model, a1, a1, all_pairs=True)
    mat_all = sd.point_similarity(model, a1, a1, all_pairs=True)
    h, w = a1.shape[-2:]
    for i, j in itertools.product(range(3), range(3)):
        assert torch.allclose(mat_all[i, j], sd.point_similarity(model, a1[i:i + 1], a1[j:j + 1])[0])
        # column sums of pair (i, j) are image j's map in pair (j, i)
        assert torch.allclose(mat_all[i, j].sum(0).view(h, w), raw_all[j, i])
    # for a GAP head the row sums are SFAM's map (the bias spread over the positions)
    assert torch.allclose(sd.raw_maps(model, a1, a2), SFAM(kind).raw_maps(model, a1, a2), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("method", list(default_methods().values()), ids=list(default_methods()))
def test_explain_and_all_pairs(gen, method):
    model = tiny_model(gen, linear=True, normalize=True)
    x = images(gen, 3, 24, 20)
    ex = method.explain_all_pairs(model, x)
    assert ex.maps.shape == (3, 3, 24, 20) and ex.maps.dtype == torch.float32
    assert ex.raw.shape == (3, 3, 6, 5) and ex.scores.shape == (3, 3)
    assert float(ex.maps.min()) >= 0 and float(ex.maps.max()) <= 1
    pair = method.explain(model, x[[0, 2]], x[[1, 0]])
    assert pair.maps.shape == (2, 2, 24, 20)
    for p, (i, j) in enumerate(((0, 1), (2, 0))):
        assert torch.allclose(pair.raw[p, 0], ex.raw[i, j]) and torch.allclose(pair.raw[p, 1], ex.raw[j, i])
        assert torch.allclose(pair.maps[p, 0], ex.maps[i, j], atol=1e-6)
        assert torch.allclose(pair.scores[p], ex.scores[i, j])


def test_explain_triplets_shapes(gen):
    model = tiny_model(gen)
    x = images(gen, 6, 16, 16)
    ex = GradientAttention(form="triplet").explain_triplets(model, x[:2], x[2:4], x[4:])
    assert ex.maps.shape == (2, 3, 16, 16) and ex.scores.shape == (2, 3)


def test_bad_arguments(gen):
    model = tiny_model(gen)
    x = images(gen, 2, 16, 16)
    with pytest.raises(ValueError, match="similarity"):
        SFAM("l1")
    with pytest.raises(ValueError, match="form"):
        GradientAttention(form="quad")
    with pytest.raises(ValueError, match="triplet"):
        GradientAttention(form="triplet").explain(model, x, x)
    with pytest.raises(ValueError, match="chunk"):
        GradCAMSimilarity(chunk=0)
    with pytest.raises(ValueError, match="chunk"):
        SpatialDecomposition(chunk=True)
    with pytest.raises(ValueError, match="weighting"):
        SFAM(weighting="grad")
    with pytest.raises(ValueError, match="layer"):
        default_model(pretrained=False, layer=16)
    with pytest.raises(ValueError, match="n_distractors"):
        controlled_triplets(1, n_distractors=3)
    with pytest.raises(TypeError, match="model"):
        SFAM().explain(nn.Identity(), x, x)
    with pytest.raises(ValueError, match="x2 must have the shape of x1"):
        SFAM().explain(model, x, images(gen, 2, 16, 8))
    with pytest.raises(TypeError, match="backbone"):
        EmbeddingModel(3)
    with pytest.raises(ValueError, match="feature map"):
        EmbeddingModel(lambda t: t.mean((2, 3))).features(x)
    with pytest.raises(ValueError, match="mode"):
        similarity_curves(model, x, x, x[:, 0], mode="both")
    with pytest.raises(ValueError, match="maps"):
        similarity_curves(model, x, x, x[:, 0, :8])


def test_attention_constraint_trains(gen):
    torch.manual_seed(0)
    model = tiny_model(torch.Generator().manual_seed(1), linear=True, normalize=True, dtype=torch.float32)
    loss_fn = AttentionConsistencyLoss()
    g = torch.Generator().manual_seed(2)
    xa, xp, xn = (torch.randn(4, 3, 24, 24, generator=g) for _ in range(3))
    params = list(model.parameters()) + list(loss_fn.parameters())
    opt = torch.optim.Adam(params, lr=1e-2)
    losses = []
    for step in range(25):
        opt.zero_grad()
        loss = loss_fn(model, xa, xp, xn)
        loss.backward()
        if step == 0:
            assert loss_fn.alpha.grad is not None and float(loss_fn.alpha.grad.abs()) > 0
            assert loss_fn.beta.grad is not None and float(loss_fn.beta.grad.abs()) > 0
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5, losses


def test_similarity_curves_batched_matches_loop(gen):
    model = tiny_model(gen, linear=True, normalize=True)
    x, partner = images(gen, 3, 16, 12), images(gen, 3, 16, 12)
    maps = torch.rand(3, 16, 12, generator=gen, dtype=torch.float64)
    for mode in ("deletion", "insertion"):
        batched = similarity_curves(model, x, partner, maps, mode, steps=6, internal_batch_size=5)
        loop = similarity_curves(model, x, partner, maps, mode, steps=6, loop=True)
        assert batched.shape == (3, 7) and torch.allclose(batched, loop, rtol=1e-10)
        with torch.no_grad():
            full = similarity(model(x), model(partner))
            empty = similarity(model(torch.zeros_like(x)), model(partner))
        first, last = (full, empty) if mode == "deletion" else (empty, full)
        assert torch.allclose(batched[:, 0], first) and torch.allclose(batched[:, -1], last)
    # one state by hand: deletion of the top 4 of 16·12 pixels at step 1 of 48
    curve = similarity_curves(model, x, partner, maps, "deletion", steps=48)
    top = maps.flatten(1).argsort(dim=1, descending=True, stable=True)[:, :4]
    xd = x.flatten(2).clone()
    xd.scatter_(2, top[:, None].expand(-1, 3, -1), 0.0)
    with torch.no_grad():
        ref = similarity(model(xd.view_as(x)), model(partner))
    assert torch.allclose(curve[:, 1], ref)


def test_controlled_triplets():
    import numpy as np

    from fss_attr.data.imagenet import imagenet_normalize
    from fss_attr.data.controlled import CLASSES, render_image
    from fss_attr.data.textures import BACKGROUND_SOURCES

    t = controlled_triplets(2, size=48, seed=3)
    assert t["anchor"].shape == (2, 3, 48, 48) and t["anchor_mask"].dtype == torch.bool
    assert torch.equal(t["negative"][:1], controlled_triplets(1, size=48, seed=3)["negative"])  # deterministic
    for b in range(2):
        shared, negative = t["classes"][b]
        per_image = t["distractor_classes"][b]
        # the shared object is the only class both the anchor and the positive show
        assert shared != negative and all(len(d) == 2 for d in per_image)
        assert len({shared, negative, *per_image[0], *per_image[1], *per_image[2]}) == len(CLASSES)
        assert len(set(t["backgrounds"][b])) == 3
        for role in ("anchor", "positive", "negative"):
            obj, dis = t[f"{role}_mask"][b], t[f"{role}_distractors"][b]
            assert bool(obj.any()) and bool(dis.any()) and not bool((obj & dis).any())
    # the object is rendered_image's object, pixel for pixel (first draw of the triplet's image rng)
    rng = np.random.default_rng(3)
    classes = [CLASSES[i] for i in rng.permutation(len(CLASSES))]
    rng.choice(len(BACKGROUND_SOURCES), size=3, replace=False)
    obj = render_image(classes[0], int(rng.integers(2**31 - 1)), (48, 48), n_distractors=0)
    assert torch.equal(obj.object_mask, t["anchor_mask"][0])
    m = obj.object_mask
    assert torch.allclose(imagenet_normalize(obj.image)[:, m], t["anchor"][0][:, m])
    assert not bool(controlled_triplets(1, size=32, n_distractors=0)["anchor_distractors"].any())


def test_pair_maps_and_metrics(gen):
    model = tiny_model(gen, linear=True, normalize=True, dtype=torch.float32)
    x = images(gen, 6, 24, 24, dtype=torch.float32)
    maps, scores = pair_maps(model, x[:2], x[2:4], x[4:])
    assert set(maps) == set(default_methods()) | {"gradient attention (triplet)"}
    assert all(m.shape == (2, 2, 24, 24) for m in maps.values()) and all(s.shape == (2,) for s in scores.values())
    objects = torch.zeros(2, 24, 24, dtype=torch.bool)
    objects[:, 4:12, 6:18] = True
    m = maps["SFAM"][:, 0]
    res = pair_metrics(model, x[:2], x[2:4], m, objects, ~objects, steps=4)
    top = m.flatten(1).argmax(1)
    assert torch.equal(res["pointing"], objects.flatten(1)[torch.arange(2), top].double())
    assert torch.equal(res["on_distractor"], 1 - res["pointing"])
    from fss_attr.metrics.perturbation import auc
    assert torch.allclose(res["dauc"], auc(similarity_curves(model, x[:2], x[2:4], m, "deletion", 4)))
    assert set(res) == {"dauc", "iauc", "pointing", "mass", "on_distractor"}


def test_default_model_head_features():
    model = default_model(pretrained=False)
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    a = model.features(x)
    assert a.shape == (2, 1280, 2, 3) and float(a.min()) >= 0 and float(a.max()) <= 6  # ReLU6


def test_cli_similarity_writes_figure(tmp_path):
    import json

    from fss_attr.cli import main

    assert main(["similarity", "--size", "64", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "similarity.json").read_text())
    assert (tmp_path / "similarity.png").stat().st_size > 0
    assert set(report["pointing_game_hits"]) == set(default_methods()) | {"gradient attention (triplet)"}


def test_pair_maps_whole_triplet_and_the_cli_report_give_each_score_once(gen, tmp_path):
    import json

    from fss_attr.cli import main

    model = tiny_model(gen, linear=True, normalize=True, dtype=torch.float32)
    x = images(gen, 6, 24, 24, dtype=torch.float32)
    cut, _ = pair_maps(model, x[:2], x[2:4], x[4:])
    maps, scores = pair_maps(model, x[:2], x[2:4], x[4:], whole_triplet=True)
    t = "gradient attention (triplet)"
    assert maps[t].shape == (2, 3, 24, 24) and scores[t].shape == (2, 3)
    assert torch.equal(maps[t][:, :2], cut[t])
    assert main(["similarity", "--size", "48", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "similarity.json").read_text())
    assert set(report["pair_similarity"]) == {"anchor_positive", "anchor_negative", "positive_negative"}
    explained = report["explained_scores"]
    assert set(explained) == set(default_methods()) | {t}
    assert all(v == {"explains": "pair_similarity.anchor_positive (cosine)"} for k, v in explained.items() if k != t)
    assert set(explained[t]["score"]) == {"anchor", "positive", "negative"}
