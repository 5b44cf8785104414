"""Metrics against literal, loop-by-loop implementations of their definitions (docs/metrics.md)."""
import warnings
from decimal import ROUND_FLOOR, Decimal

import numpy as np
import pytest
import torch

from fss_attr.explanation import resolve_region
from fss_attr.metrics import (auc, evaluate, evaluate_states, foreground_confidence, foreground_iou, foreground_logit,
                              iauc_at, iauc_dauc, image_insertion_deletion, image_ranks, infidelity, make_state,
                              miou_loss, moved_count, pixel_ranks, pointing_game, relevance_mass)
from fss_attr.metrics.perturbation import ORIGINAL, SUBSTRATE
from tests.test_metrics_models import ConvMatcher, LinearAdapter, blob_episode


# ---------------------------------------------------------------- literal reference implementations

def literal_order(a):
    """Support pixel coordinates (n, y, x) sorted by attribution descending, ties in index order."""
    n, h, w = a.shape
    coords = [(i, y, x) for i in range(n) for y in range(h) for x in range(w)]
    flat = a.flatten().tolist()
    return [coords[j] for j in sorted(range(len(coords)), key=lambda j: (-flat[j], j))]


def literal_k(t, steps, fraction, total):
    """The AffEx paper's step count k = ⌊⌊P·p⌋·t/T⌋ (issue 16; was round-half-up of t/T·p·P)."""
    budget = int((Decimal(repr(fraction)) * Decimal(total)).to_integral_value(rounding=ROUND_FLOOR))
    return budget * t // steps


def literal_state(images, masks, coords, mode):
    """insertion: the substrate with ``coords`` copied from the original; deletion: the original with them zeroed."""
    if mode == "insertion":
        im, m = torch.zeros_like(images), torch.zeros_like(masks)
        for n, y, x in coords:
            im[n, :, y, x] = images[n, :, y, x]
            m[n, y, x] = masks[n, y, x]
    else:
        im, m = images.clone(), masks.clone()
        for n, y, x in coords:
            im[n, :, y, x] = 0
            m[n, y, x] = False
    return im, m


def literal_iou(logits, gt):
    pred = (logits[1] > logits[0]).numpy()
    gt = gt.numpy()
    union = np.logical_or(pred, gt).sum()
    return 1.0 if union == 0 else np.logical_and(pred, gt).sum() / union


def literal_confidence(logits, region, cls=1):
    p = torch.softmax(logits.double(), 0)[cls]
    return float(p[region].mean())


def literal_top_class(logits, region):
    """The class with the larger mean softmax probability over R (ties: the first, as argmax)."""
    means = [literal_confidence(logits, region, c) for c in range(2)]
    return int(np.argmax(means))


def literal_trapezoid(s):
    return float(np.trapezoid(np.asarray(s, dtype=np.float64), dx=1.0 / (len(s) - 1)))


def run_one(model, ep, e, images, masks):
    single = ep.index(e).with_support(images[None], masks[None])
    with torch.no_grad():
        return model(single)[0]


def literal_pixel_curve(model, ep, attr, mode, steps, fraction, first, score, region=None):
    out = []
    for e in range(ep.batch_size):
        order = literal_order(attr[e])
        vals = []
        if score != "iou":     # the class top at the original state is scored (the paper's code; issue 16)
            top = literal_top_class(run_one(model, ep, e, ep.support_images[e], ep.support_masks[e]), region[e])
        for t in range(first, steps + 1):
            k = literal_k(t, steps, fraction, len(order))
            im, m = literal_state(ep.support_images[e], ep.support_masks[e], order[:k], mode)
            logits = run_one(model, ep, e, im, m)
            vals.append(literal_iou(logits, ep.query_mask[e]) if score == "iou"
                        else literal_confidence(logits, region[e], top))
        out.append(vals)
    return out


@pytest.fixture
def setup(gen):
    ep = blob_episode(gen, b=2, n=2, size=(16, 16))
    model = ConvMatcher().double()
    # quantised attributions: many ties, so the tie rule matters
    attr = (torch.rand(ep.support_masks.shape, generator=gen, dtype=torch.float64) * 4).floor() / 4
    return model, ep, attr


# ---------------------------------------------------------------- building blocks

def test_pixel_ranks_follow_a_stable_descending_sort(gen):
    a = (torch.rand(3, 2, 5, 4, generator=gen) * 3).floor()
    ranks = pixel_ranks(a)
    for e in range(3):
        order = literal_order(a[e])
        for r, (n, y, x) in enumerate(order):
            assert ranks[e, n, y, x] == r


def test_image_ranks_by_mean_attribution(gen):
    a = torch.rand(2, 4, 3, 3, generator=gen, dtype=torch.float64)
    a[0, 2] = a[0, 1]                     # tie between images 1 and 2: image 1 first
    ranks = image_ranks(a)
    for e in range(2):
        means = a[e].flatten(1).mean(1).tolist()
        order = sorted(range(4), key=lambda i: (-means[i], i))
        for r, i in enumerate(order):
            assert (ranks[e, i] == r).all()


@pytest.mark.parametrize("steps,fraction,total", [(75, 1.0, 2 * 10 * 10), (5, 0.01, 5 * 192 * 192),
                                                  (5, 0.01, 3 * 50 * 50), (2, 1.0, 1), (4, 0.05, 250)])
def test_moved_count_floors_as_the_paper(steps, fraction, total):
    for t in range(steps + 1):
        assert moved_count(t, steps, fraction, total) == literal_k(t, steps, fraction, total)
    assert moved_count(steps, steps, 1.0, total) == total and moved_count(0, steps, fraction, total) == 0


def test_moved_count_hand_values():
    """Values where floor and round differ: 200 pixels in 75 steps, t = 1: 200/75 = 2.67 -> 2 (round: 3);
    1% of 5·7·7 = 245 pixels is 2.45 -> budget 2, t = 3 of 5: 6/5 -> 1 (round of 3/5 · 2.45 = 1.47: 1),
    t = 4: 8/5 -> 1 (round of 1.96: 2)."""
    assert moved_count(1, 75, 1.0, 200) == 2
    assert moved_count(74, 75, 1.0, 200) == 197
    assert [moved_count(t, 5, 0.01, 245) for t in range(6)] == [0, 0, 0, 1, 1, 2]


class _MaskShare(torch.nn.Module):
    """Foreground logit = 10·(share of support pixels in the mask) − 3 at every query pixel, background 0."""

    def forward(self, episode):
        share = episode.support_masks.double().flatten(1).mean(1)
        fg = (10 * share - 3).view(-1, 1, 1).expand(-1, *episode.image_size)
        return torch.stack([torch.zeros_like(fg), fg], 1)


@pytest.mark.parametrize("share", [0.1, 0.5])
def test_confidence_scores_the_class_top_at_the_original_state(share):
    """Share 0.1: the original leans background (fg logit −2), so every state's score is the background
    probability 1 − σ(fg); share 0.5: the foreground's σ(fg) (the paper's FSSCausalMetric ``top``)."""
    n, h, w = 1, 4, 5
    masks = torch.zeros(1, n, h, w, dtype=torch.bool)
    masks.view(-1)[: round(share * h * w)] = True
    from fss_attr.data.episode import Episode
    ep = Episode(torch.zeros(1, 3, h, w, dtype=torch.float64), torch.ones(1, n, 3, h, w, dtype=torch.float64),
                 masks, masks[:, 0])
    attr = -torch.arange(n * h * w, dtype=torch.float64).view(1, n, h, w)    # mask pixels first
    total = n * h * w
    states = [make_state("pixel", "insertion", k, total) for k in (0, 1, 2, 5, total)]
    got = evaluate_states(_MaskShare(), ep, attr, states, ["confidence"], torch.ones(1, h, w, dtype=torch.bool))
    want = []
    for k in (0, 1, 2, 5, total):
        fg = 10 * min(k, int(masks.sum())) / total - 3
        p = 1 / (1 + np.exp(-fg))
        want.append(p if share > 0.3 else 1 - p)
    assert got["confidence"][0].tolist() == pytest.approx(want, abs=1e-12)


def test_auc_is_the_trapezoid_rule(gen):
    s = torch.rand(3, 7, generator=gen, dtype=torch.float64)
    for i in range(3):
        assert auc(s)[i].item() == pytest.approx(literal_trapezoid(s[i].tolist()), rel=1e-14)
    with pytest.raises(ValueError, match="at least 2 points"):
        auc(s[:, :1])


def test_states_are_canonical():
    assert make_state("pixel", "insertion", 0, 10) == SUBSTRATE == make_state("pixel", "deletion", 10, 10)
    assert make_state("pixel", "insertion", 10, 10) == ORIGINAL == make_state("image", "deletion", 0, 3)
    assert make_state("pixel", "insertion", 3, 10) != make_state("pixel", "deletion", 7, 10)
    with pytest.raises(ValueError, match="k must be"):
        make_state("pixel", "insertion", 11, 10)
    with pytest.raises(ValueError, match="mode"):
        make_state("pixel", "insert", 1, 10)


def test_scores_against_literal(gen):
    logits = torch.randn(4, 2, 6, 7, generator=gen, dtype=torch.float64)
    gt = torch.rand(4, 6, 7, generator=gen) > 0.5
    region = torch.rand(4, 6, 7, generator=gen) > 0.3
    region[:, 0, 0] = True
    iou, conf = foreground_iou(logits, gt), foreground_confidence(logits, region)
    logit = foreground_logit(logits.float(), region)
    assert iou.dtype == conf.dtype == logit.dtype == torch.float64
    for e in range(4):
        assert iou[e].item() == pytest.approx(literal_iou(logits[e], gt[e]), rel=1e-15)
        assert conf[e].item() == pytest.approx(literal_confidence(logits[e], region[e]), rel=1e-12)
        assert logit[e].item() == pytest.approx(float(logits[e, 1].float().double()[region[e]].mean()), rel=1e-12)
    nothing = torch.stack([torch.ones(1, 3, 3), torch.zeros(1, 3, 3)], 1)  # predicts background everywhere
    assert foreground_iou(nothing, torch.zeros(1, 3, 3, dtype=torch.bool)).item() == 1.0
    for fn in (foreground_confidence, foreground_logit):
        with pytest.raises(ValueError, match="region is empty"):
            fn(logits, torch.zeros(4, 6, 7, dtype=torch.bool))


# ---------------------------------------------------------------- the metrics

def test_iauc_dauc_match_the_definition(setup):
    model, ep, attr = setup
    steps = 9
    got = iauc_dauc(model, ep, attr, steps=steps, internal_batch_size=5)
    ins = literal_pixel_curve(model, ep, attr, "insertion", steps, 1.0, 1, "iou")
    dele = literal_pixel_curve(model, ep, attr, "deletion", steps, 1.0, 1, "iou")
    for e in range(2):
        assert got["curve:iauc"][e].tolist() == pytest.approx(ins[e], abs=0)
        assert got["curve:dauc"][e].tolist() == pytest.approx(dele[e], abs=0)
        assert got["iauc"][e].item() == pytest.approx(literal_trapezoid(ins[e]), rel=1e-14)
        assert got["dauc"][e].item() == pytest.approx(literal_trapezoid(dele[e]), rel=1e-14)
    torch.testing.assert_close(got["diff"], got["iauc"] - got["dauc"], rtol=0, atol=0)
    assert got["curve:iauc"].shape == (2, steps)


def test_iauc_dauc_default_is_75_steps_and_ends_at_the_extremes(setup):
    model, ep, attr = setup
    got = iauc_dauc(model, ep, attr)
    assert got["curve:iauc"].shape == (2, 75)
    full = foreground_iou(model(ep), ep.query_mask)
    torch.testing.assert_close(got["curve:iauc"][:, -1], full, rtol=0, atol=0)   # t = 75: the original support
    empty = ep.with_support(torch.zeros_like(ep.support_images), torch.zeros_like(ep.support_masks))
    torch.testing.assert_close(got["curve:dauc"][:, -1], foreground_iou(model(empty), ep.query_mask), rtol=0, atol=0)


def test_deleting_the_mask_first_empties_the_prediction(gen):
    """A state moves mask values too: once every foreground support pixel is deleted, ConvMatcher sees
    empty masks and predicts no foreground (IoU 0, as the query has foreground)."""
    ep = blob_episode(gen, b=2, n=2, size=(10, 10))
    model = ConvMatcher().double()
    attr = ep.support_masks.double() + 0.01 * torch.rand(ep.support_masks.shape, generator=gen, dtype=torch.float64)
    steps = 20
    got = iauc_dauc(model, ep, attr, steps=steps)["curve:dauc"]
    for e in range(2):
        fg = int(ep.support_masks[e].sum())
        for t in range(1, steps + 1):
            if moved_count(t, steps, 1.0, 200) >= fg:
                assert got[e, t - 1] == 0.0


def test_iauc_at_matches_the_definition(setup, gen):
    model, ep, attr = setup
    region = ep.query_mask.clone()
    got = iauc_at(model, ep, attr, region=region, p=0.1, steps=5)
    curves = literal_pixel_curve(model, ep, attr, "insertion", 5, 0.1, 0, "confidence", region)
    for e in range(2):
        assert len(curves[e]) == 6
        assert got[e].item() == pytest.approx(literal_trapezoid(curves[e]), rel=1e-12)
    # the default region is the model's prediction on the original episode
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # an empty prediction falls back to the whole image
        pred = resolve_region("logits", model(ep), None)
        default = iauc_at(model, ep, attr, p=0.1)
    torch.testing.assert_close(default, iauc_at(model, ep, attr, region=pred, p=0.1),
                               rtol=0, atol=0)


@pytest.mark.parametrize("p", [0.01, 0.05, 0.3])
def test_miou_loss_matches_the_definition(setup, p):
    model, ep, attr = setup
    got = miou_loss(model, ep, attr, p=p)
    for e in range(2):
        order = literal_order(attr[e])
        k = literal_k(1, 1, p, len(order))
        im, m = literal_state(ep.support_images[e], ep.support_masks[e], order[:k], "insertion")
        full = literal_iou(run_one(model, ep, e, ep.support_images[e], ep.support_masks[e]), ep.query_mask[e])
        top = literal_iou(run_one(model, ep, e, im, m), ep.query_mask[e])
        assert got[e].item() == pytest.approx(full - top, abs=1e-15)


def test_image_level_insertion_deletion_matches_the_definition(gen):
    ep = blob_episode(gen, b=2, n=3, size=(10, 10))
    model = ConvMatcher().double()
    attr = torch.rand(ep.support_masks.shape, generator=gen, dtype=torch.float64)
    got = image_insertion_deletion(model, ep, attr)
    for e in range(2):
        means = attr[e].flatten(1).mean(1).tolist()
        order = sorted(range(3), key=lambda i: (-means[i], i))
        for mode in ("insertion", "deletion"):
            vals = []
            for t in range(4):
                coords = [(n, y, x) for n in order[:t] for y in range(10) for x in range(10)]
                im, m = literal_state(ep.support_images[e], ep.support_masks[e], coords, mode)
                vals.append(literal_iou(run_one(model, ep, e, im, m), ep.query_mask[e]))
            key = "image_iauc" if mode == "insertion" else "image_dauc"
            assert got[f"curve:{key}"][e].tolist() == pytest.approx(vals, abs=0)
            assert got[key][e].item() == pytest.approx(literal_trapezoid(vals), rel=1e-14)


def test_infidelity_matches_the_definition(gen):
    ep = blob_episode(gen, b=2, n=2, size=(8, 8))
    model = ConvMatcher().double()
    attr = torch.rand(ep.support_masks.shape, generator=gen, dtype=torch.float64)
    region = ep.query_mask
    j_count, sigma, seed = 5, 0.3, 11
    got = infidelity(model, ep, attr, region, n_perturbations=j_count, sigma=sigma, seed=seed, internal_batch_size=4)
    for e in range(2):
        f0 = literal_confidence(run_one(model, ep, e, ep.support_images[e], ep.support_masks[e]), region[e])
        ia, df = [], []
        for j in range(j_count):
            g = torch.Generator().manual_seed(seed + e * j_count + j)
            noise = sigma * torch.randn(ep.support_images[e].shape, generator=g, dtype=torch.float64)
            ia.append(float(sum((noise[:, c] * attr[e]).sum() for c in range(3))))
            df.append(f0 - literal_confidence(run_one(model, ep, e, ep.support_images[e] - noise,
                                                      ep.support_masks[e]), region[e]))
        ia, df = np.array(ia), np.array(df)
        beta = (ia * df).sum() / (ia ** 2).sum()
        assert got["infidelity"][e].item() == pytest.approx(np.mean((ia - df) ** 2), rel=1e-10)
        assert got["infidelity_norm"][e].item() == pytest.approx(np.mean((beta * ia - df) ** 2), rel=1e-10)


def test_infidelity_of_the_exact_gradient_of_a_linear_model_is_zero(gen):
    """f = 0.5 + Σ W·x with W shared by the RGB channels: f(x) − f(x − I) = Σ I·W exactly, so a = W has
    infidelity 0 (up to float64 rounding), and any multiple c·W has normalised infidelity 0."""
    ep = blob_episode(gen, b=2, n=2, size=(8, 8))
    model = LinearAdapter(2, (8, 8), seed=3, channel_shared=True)
    w = model.weight[:, 0].expand(2, -1, -1, -1)
    region = torch.ones(2, 8, 8, dtype=torch.bool)
    exact = infidelity(model, ep, w.contiguous(), region, n_perturbations=6)
    scaled = infidelity(model, ep, 3.0 * w, region, n_perturbations=6)
    wrong = infidelity(model, ep, torch.rand(w.shape, generator=gen, dtype=torch.float64) * w.abs().max(),
                       region, n_perturbations=6)
    assert exact["infidelity"].max() < 1e-28 and exact["infidelity_norm"].max() < 1e-28
    assert scaled["infidelity"].min() > 1e-12 and scaled["infidelity_norm"].max() < 1e-28
    assert wrong["infidelity_norm"].min() > 1e3 * exact["infidelity_norm"].max() + 1e-20


def test_normalised_infidelity_ignores_the_attribution_scale(setup):
    model, ep, attr = setup
    a = infidelity(model, ep, attr, ep.query_mask, n_perturbations=4)
    b = infidelity(model, ep, 7.5 * attr, ep.query_mask, n_perturbations=4)
    torch.testing.assert_close(a["infidelity_norm"], b["infidelity_norm"], rtol=1e-10, atol=0)


def test_localisation_against_literal(gen):
    a = torch.randn(3, 2, 5, 5, generator=gen, dtype=torch.float64)
    ev = torch.rand(3, 2, 5, 5, generator=gen) > 0.6
    mass, point = relevance_mass(a, ev), pointing_game(a, ev)
    for e in range(3):
        pos = a[e].clamp_min(0)
        assert mass[e].item() == pytest.approx(float(pos[ev[e]].sum() / pos.sum()), rel=1e-14)
        top = literal_order(a[e])[0]
        assert point[e].item() == float(ev[e][top])
    zero = torch.zeros(1, 2, 5, 5, dtype=torch.float64)
    assert relevance_mass(zero, ev[:1]).item() == pytest.approx(ev[0].double().mean().item())
    tie = torch.zeros(1, 1, 2, 2)
    tie[0, 0, 0, 1] = tie[0, 0, 1, 0] = 1.0   # two maxima, one in the evidence: half of the tied maxima hit
    assert pointing_game(tie, torch.tensor([[[[False, True], [False, False]]]])).item() == 0.5
    assert pointing_game(tie, torch.tensor([[[[False, False], [True, False]]]])).item() == 0.5


@pytest.mark.filterwarnings("ignore:region='logits'")
def test_evaluate_pools_states_and_equals_the_single_metrics(setup):
    model, ep, attr = setup
    metrics = ("miou", "iauc", "dauc", "diff", "iauc@1%", "miouloss@1%", "miouloss@5%", "image_iauc",
               "image_dauc", "image_diff", "infidelity", "infidelity_norm", "relevance_mass", "pointing_game")
    got = evaluate(model, ep, attr, metrics, internal_batch_size=8, infidelity_perturbations=3, return_curves=True)
    assert tuple(k for k in got if not k.startswith("curve:")) == metrics
    region = resolve_region("logits", model(ep), None)
    d = iauc_dauc(model, ep, attr)
    for k in ("iauc", "dauc", "diff"):
        torch.testing.assert_close(got[k], d[k], rtol=0, atol=0)
    torch.testing.assert_close(got["iauc@1%"], iauc_at(model, ep, attr, region=region), rtol=0, atol=0)
    torch.testing.assert_close(got["miouloss@5%"], miou_loss(model, ep, attr, p=0.05), rtol=0, atol=0)
    img = image_insertion_deletion(model, ep, attr)
    torch.testing.assert_close(got["image_diff"], img["image_diff"], rtol=0, atol=0)
    inf = infidelity(model, ep, attr, region, n_perturbations=3)
    torch.testing.assert_close(got["infidelity"], inf["infidelity"], rtol=0, atol=0)
    torch.testing.assert_close(got["miou"], foreground_iou(model(ep), ep.query_mask), rtol=0, atol=0)
    torch.testing.assert_close(got["relevance_mass"], relevance_mass(attr, ep.support_evidence), rtol=0, atol=0)
    assert got["curve:iauc@1%"].shape == (2, 6) and got["curve:image_iauc"].shape == (2, 3)


# ---------------------------------------------------------------- bad input

def test_bad_input_names_the_argument(setup):
    model, ep, attr = setup
    with pytest.raises(ValueError, match="attributions must have"):
        evaluate(model, ep, attr[:, :1], ["iauc"])
    with pytest.raises(ValueError, match="attributions contains NaN"):
        evaluate(model, ep, attr * float("nan"), ["iauc"])
    with pytest.raises(ValueError, match="unknown metric 'iou'"):
        evaluate(model, ep, attr, ["iou"])
    with pytest.raises(ValueError, match="percentage"):
        evaluate(model, ep, attr, ["miouloss@0%"])
    with pytest.raises(ValueError, match="internal_batch_size"):
        evaluate(model, ep, attr, ["iauc"], internal_batch_size=0)
    with pytest.raises(ValueError, match="steps must be"):
        evaluate(model, ep, attr, ["iauc"], steps=0)
    no_gt = ep.with_support(ep.support_images, ep.support_masks)
    no_gt.query_mask = None
    with pytest.raises(ValueError, match="query_mask"):
        evaluate(model, no_gt, attr, ["iauc"])
    no_ev = ep.with_support(ep.support_images, ep.support_masks)
    no_ev.support_evidence = None
    with pytest.raises(ValueError, match="support_evidence"):
        evaluate(model, no_ev, attr, ["pointing_game"])
    with pytest.raises(ValueError, match="region must have shape"):
        iauc_at(model, ep, attr, region=torch.ones(1, 3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="n_perturbations"):
        infidelity(model, ep, attr, ep.query_mask, n_perturbations=0)
    with pytest.raises(ValueError, match="score must be one of"):
        evaluate_states(model, ep, attr, [ORIGINAL], ["accuracy"])
    with pytest.raises(ValueError, match=r"scores \['logit'\] need a region"):
        evaluate_states(model, ep, attr, [ORIGINAL], ["logit"])
