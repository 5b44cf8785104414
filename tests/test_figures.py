"""The figures explain themselves (issue 20): every overlay named in a legend, colour bars with the range and
meaning of what they colour, curve points at the states they hold. Checked through matplotlib's objects (legend
texts, colour-bar norms and labels, line data), never through pixels."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fss_attr.data.episode import Episode
from fss_attr.viz import pyplot


@pytest.fixture(autouse=True)
def close_figures():
    yield
    pyplot().close("all")


def colorbars(fig):
    """The colour bars of a figure's images, as (colormap name, vmin, vmax, label)."""
    out = []
    for ax in fig.axes:
        for im in ax.get_images():
            cb = im.colorbar
            if cb is not None:
                out.append((cb.cmap.name, cb.norm.vmin, cb.norm.vmax, cb.ax.get_ylabel()))
    return out


def legend_texts(fig):
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def tiny_episode(gen, n=2, size=24):
    masks = torch.zeros(1, n, size, size, dtype=torch.bool)
    masks[..., 4:16, 5:18] = True
    evidence = masks.clone()
    evidence[..., 4:8, 5:9] = False
    query_mask = torch.zeros(1, size, size, dtype=torch.bool)
    query_mask[:, 6:18, 6:18] = True
    return Episode(torch.randn(1, 3, size, size, generator=gen), torch.randn(1, n, 3, size, size, generator=gen),
                   masks, query_mask=query_mask, support_evidence=evidence)


def test_signed_evidence_keeps_the_sign_the_signed_variant_min_maxes_away(gen):
    from fss_attr import AffinityExplainer
    from fss_attr.explanation import minmax
    from fss_attr.testing import random_level, random_masks, random_region
    from fss_attr.viz import signed_evidence

    levels = [random_level(2, 3, (5, 5), (4, 4), generator=gen), random_level(2, 3, (3, 3), (3, 3), generator=gen)]
    region, masks = random_region(2, (20, 20), generator=gen), random_masks(2, 3, (20, 20), generator=gen)
    unmasked = AffinityExplainer("unmasked", backend="torch").explain_levels(levels, region, masks)
    signed = AffinityExplainer("signed", backend="torch", blur_kernel=5, blur_sigma=1.0).explain_levels(
        levels, region, masks)
    s = signed_evidence(unmasked, masks, 5, 1.0)
    assert s.shape == unmasked.shape and s.dtype == torch.float32
    assert float(s.min()) < 0 < float(s.max()) and float(s.abs().max()) <= 1
    torch.testing.assert_close(minmax(s), signed, rtol=0, atol=1e-6)       # the variant is its min-max
    with pytest.raises(ValueError, match="support_masks must have shape"):
        signed_evidence(unmasked, masks[:, :2])


def test_demo_figure_names_every_overlay_and_gives_signed_maps_their_own_colour_bar(gen):
    from fss_attr.viz import explanation_figure, signed_evidence

    ep = tiny_episode(gen)
    region = torch.zeros(1, 24, 24, dtype=torch.bool)
    region[:, 8:16, 8:16] = True
    ex = {v: SimpleNamespace(maps=torch.rand(1, 2, 24, 24, generator=gen), prediction=region, region=region)
          for v in ("unmasked", "masked", "signed")}
    signed = {"signed": signed_evidence(ex["unmasked"].maps, ep.support_masks)}
    fig = explanation_figure(ep, ex, signed=signed)
    texts = legend_texts(fig)
    for words in ("ground truth", "prediction", "explained query region R", "support mask", "known evidence"):
        assert sum(words in t for t in texts) == 1, (words, texts)
    bars = colorbars(fig)
    assert len(bars) == 2
    (c0, lo0, hi0, label0), (c1, lo1, hi1, label1) = sorted(bars, key=lambda b: b[1], reverse=True)
    assert (c0, lo0, hi0) == ("inferno", 0, 1) and "attribution" in label0
    assert (c1, lo1, hi1) == ("RdBu_r", -1, 1) and "signed" in label1 and "0" in label1   # centred on zero
    # the signed row's supports show the signed values, the others the [0, 1] maps
    signed_axes = [ax for ax in fig.axes if ax.get_images() and ax.get_images()[-1].get_cmap().name == "RdBu_r"]
    assert len(signed_axes) == 2
    assert np.allclose(signed_axes[0].get_images()[-1].get_array(), signed["signed"][0, 0].numpy())
    # without a signed row (and without evidence or a query mask) only the plain colour bar and the overlays drawn
    plain = Episode(ep.query, ep.support_images, ep.support_masks)
    fig = explanation_figure(plain, {"unmasked": SimpleNamespace(maps=ex["unmasked"].maps)})
    assert [b[:3] for b in colorbars(fig)] == [("inferno", 0, 1)]
    assert legend_texts(fig) == ["support mask (outline)"]
    with pytest.raises(ValueError, match="signed names"):
        explanation_figure(ep, {"unmasked": ex["unmasked"]}, signed=signed)


def test_curve_positions_match_the_states_each_plan_holds():
    from fss_attr.metrics.fss import curve_positions, iauc_at_plan, iauc_dauc_plan, image_plan

    total = 3 * 20 * 20
    plan = iauc_dauc_plan(total, steps=75)
    ins = [s for s in plan.states if s.mode == "insertion" or s.kind == "original"][:75]
    xs = curve_positions("iauc", 75)
    assert xs[0] == pytest.approx(1 / 75) and xs[-1] == 1 and len(xs) == 75
    # the plan's insertion states t = 1..75 moved round(t/75 · P) pixels: x·P to within half a pixel
    moved = [s.k if s.kind == "pixel" else total for s in ins]
    assert all(abs(x * total - k) <= 0.5 for x, k in zip(xs, moved))
    at = iauc_at_plan(total, 0.01, 5)
    assert len(at.states) == 6 and curve_positions("iauc@1%", 6) == pytest.approx([0, .002, .004, .006, .008, .01])
    assert len(image_plan(4).states) == 10 and curve_positions("image_iauc", 5) == [0, .25, .5, .75, 1]
    with pytest.raises(ValueError, match="unknown curve"):
        curve_positions("auc", 4)
    with pytest.raises(ValueError, match="at least 2 points"):
        curve_positions("image_dauc", 1)


def test_curves_figure_places_points_at_their_states_with_one_legend_and_units():
    from fss_attr.evaluation.report import curves_figure

    rng = np.random.default_rng(0)
    curves = {name: {"iauc": rng.random(75).tolist(), "dauc": rng.random(75).tolist(),
                     "iauc@1%": rng.random(6).tolist(), "image_iauc": rng.random(6).tolist()}
              for name in ("random", "affex-masked")}
    fig = curves_figure(curves, title="t")
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 4
    by_title = {ax.get_title(): ax for ax in panels}
    iauc = next(ax for t, ax in by_title.items() if "IAUC)" in t)
    x = iauc.get_lines()[0].get_xdata()
    assert x[0] == pytest.approx(1 / 75) and x[-1] == pytest.approx(1.0)      # state 0 is not in the curve
    assert list(iauc.get_lines()[0].get_ydata()) == curves["random"]["iauc"]         # paper order
    conf = next(ax for t, ax in by_title.items() if "IAUC@1%" in t)
    assert conf.get_lines()[0].get_xdata()[0] == 0 and conf.get_lines()[0].get_xdata()[-1] == pytest.approx(0.01)
    image = next(ax for t, ax in by_title.items() if t == "image insertion")
    assert list(image.get_lines()[0].get_xdata()) == pytest.approx([0, .2, .4, .6, .8, 1])
    for ax in panels:
        assert ax.get_legend() is None                                         # one legend, for the figure
        assert "fraction of support" in ax.get_xlabel()
        assert ("IoU" in ax.get_ylabel()) != ("confidence" in ax.get_ylabel())
    assert "confidence" in conf.get_ylabel()
    assert len(fig.legends) == 1 and legend_texts(fig) == ["Random", "AffEx Masked"]
    with pytest.raises(ValueError, match="no known curve"):
        curves_figure({"random": {"auc": [1.0]}})


def test_similarity_figure_shows_the_triplet_whole(gen):
    from fss_attr.similarity.plot import pair_figure

    x = torch.randn(3, 3, 16, 16, generator=gen)
    masks = (torch.rand(16, 16, generator=gen) > 0.5, torch.rand(16, 16, generator=gen) > 0.5, None)
    maps = {"SFAM": torch.rand(2, 16, 16, generator=gen), "triplet": torch.rand(3, 16, 16, generator=gen)}
    fig = pair_figure(x[0], x[1], maps, {"SFAM": 0.5, "triplet": [0.7, 0.4, 0.8]}, masks, negative=x[2],
                      score_label="cosine(a, p)")
    axes = np.array([ax for ax in fig.axes if ax.get_images() and ax.get_label() != "<colorbar>"]).reshape(3, 3)
    assert [ax.get_ylabel() for ax in axes[:, 0]] == ["anchor", "positive", "negative"]
    assert axes[0, 1].get_title() == "SFAM\ncosine(a, p) = 0.500"
    assert [ax.get_xlabel() for ax in axes[:, 2]] == ["wᵀe = 0.700", "wᵀe = 0.400", "wᵀe = 0.800"]
    assert len(axes[2, 2].get_images()) == 2                                  # the negative's own map
    assert "no map of" in axes[2, 1].texts[0].get_text()                      # a pair method has none
    assert [b[:3] for b in colorbars(fig)] == [("inferno", 0, 1)]
    assert legend_texts(fig) == ["shared object (outline)"]
    with pytest.raises(ValueError, match="pass the negative image"):
        pair_figure(x[0], x[1], maps)


def test_ram_figure_says_in_words_what_each_row_is(gen):
    from fss_attr.data.classification import ArrayPool, EpisodeSampler
    from fss_attr.fewshot.plot import ram_figure
    from fss_attr.fewshot.ram import region_activation_maps
    from fss_attr.fewshot.rcn import RegionComparisonNetwork

    torch.manual_seed(0)
    pool = ArrayPool(torch.rand(3, 4, 3, 24, 24, generator=gen), ["a", "b", "c"],
                     torch.rand(3, 4, 24, 24, generator=gen) > 0.5)
    episode = EpisodeSampler(pool, 3, 1, 1, seed=0).episode(0)
    model = RegionComparisonNetwork(grid=(2, 2)).eval()
    with torch.no_grad():
        out = model.explain_features(*model.episode_features(episode.support, episode.query))
    fig = ram_figure(episode, region_activation_maps(out), 0)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    row_text = next(t for t in texts if t.startswith("row 1"))
    assert row_text.index("contribution") < row_text.index("w_r·s_r")          # words first, the formula after
    labels = sorted(b[3] for b in colorbars(fig))
    assert labels == ["query map:\ncontribution to y", "support map:\ncontribution to y"]
    assert all(b[1] == 0 for b in colorbars(fig))
    assert legend_texts(fig) == ["predicted class (★ after its name)", "object outline"]


def bar_summary():
    rows = []
    for cls, n in (("brick", 6), ("grass", 4)):
        for seg, share, present in (("object", 0.3, 1.0), ("background", 0.6, 1.0), ("cue", 0.1, 1.0 if cls == "brick"
                                                                                      else 0.0)):
            rows.append({"class": cls, "segment": seg, "n_images": n, "presence": present,
                         "mean_saliency": share * 2, "std_saliency": 0.1, "mean_share": share if present else
                         float("nan"), "std_share": 0.05, "rank_first": 0.5})
    return rows


def test_reliance_bars_say_what_the_error_bars_are():
    from fss_attr.sat.plots import heatmap_figure, reliance_bars_figure

    fig = reliance_bars_figure(bar_summary())
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts[:3] == ["object", "background", "cue"]
    assert "±1 standard deviation" in texts[3] and "n = 4–6" in texts[3]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["brick\n(n = 6)", "grass\n(n = 4)"]
    fig = heatmap_figure(bar_summary(), value="mean_share")
    (cmap, lo, hi, label), = colorbars(fig)
    assert (lo, hi) == pytest.approx((0.1, 0.6)) and label == "mean share"
