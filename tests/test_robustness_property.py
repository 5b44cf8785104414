"""Every backend computes the same AffEx maps on every valid input, degenerate ones included (issue 15).

Random small inputs: B 1-2, N 1-3, grids 1-4 per side (1×1 included), outputs 1-10 per side, scores or
features (dot / cosine, relu), uniform scores (a map constant by definition), softmax on/off, top-k, one or
two levels, every variant, float32, regions that are random, a single pixel, or the whole image. The claim
(docs: every fast path computes the literal definition, and min-max treats a spread below the arithmetic's
resolution as constant the same way everywhere): the maps of "literal", "torch" and "cpu" agree within 1e-4,
or every backend refuses the input with the same ValueError.

In float64 this holds for every input. In float32, min-max scaling stretches the backends' few-ulp rounding
differences by 1/(relative spread of the map): a map whose spread is 1e-3 of its magnitude turns 1e-7
differences into 1e-4. So float32 examples are kept where every min-max'd quantity is either degenerate
(relative spread below 1e-6 in float64: then every backend must return zeros, by the constant rule) or
well-resolved (relative spread above 1e-2); the band between is what float32 cannot resolve to 1e-4.
"""
import warnings

import torch
from hypothesis import HealthCheck, assume, given, settings, strategies as st

import fss_attr
from fss_attr import AffinityExplainer, LevelFeatures, LevelScores
from fss_attr.affex.blur import gaussian_blur
from fss_attr.affex.explainer import uninformative_regions
from fss_attr.explanation import minmax

BACKENDS = [b for b in ("literal", "torch", "cpu") if b in fss_attr.available_backends()]


@st.composite
def cases(draw):
    c = dict(b=draw(st.integers(1, 2)), n=draw(st.integers(1, 3)), hq=draw(st.integers(1, 4)),
             wq=draw(st.integers(1, 4)), hs=draw(st.integers(1, 4)), ws=draw(st.integers(1, 4)),
             H=draw(st.integers(1, 10)), W=draw(st.integers(1, 10)), seed=draw(st.integers(0, 2**31 - 1)),
             kind=draw(st.sampled_from(["scores", "uniform", "dot", "cosine"])), softmax=draw(st.booleans()),
             variant=draw(st.sampled_from(["unmasked", "masked", "signed"])), relu=draw(st.booleans()),
             n_levels=draw(st.integers(1, 2)), region=draw(st.sampled_from(["random", "pixel", "all"])))
    m = c["n"] * c["hs"] * c["ws"]
    c["top_k"] = draw(st.sampled_from([0, 1, 2, m, m + 3]))
    return c


def build(c, dtype=torch.float32):
    g = torch.Generator().manual_seed(c["seed"])
    q, m = c["hq"] * c["wq"], c["n"] * c["hs"] * c["ws"]
    levels = []
    for _ in range(c["n_levels"]):
        if c["kind"] in ("scores", "uniform"):
            s = 3 * torch.randn(c["b"], q, m, generator=g)
            if c["kind"] == "uniform":
                s = torch.full_like(s, float(s[0, 0, 0]))
            if c["relu"]:
                s = s.clamp_min(0)
            levels.append(LevelScores(s.to(dtype), (c["hq"], c["wq"]), (c["hs"], c["ws"]), c["n"]))
        else:
            fq = torch.randn(c["b"], q, 4, generator=g).to(dtype)
            fk = torch.randn(c["b"], m, 4, generator=g).to(dtype)
            levels.append(LevelFeatures(fq, fk, (c["hq"], c["wq"]), (c["hs"], c["ws"]), c["n"], c["kind"], 3.0,
                                        c["relu"]))
    if c["region"] == "random":
        region = torch.rand(c["b"], c["H"], c["W"], generator=g) > 0.5
        region[:, 0, 0] = True
    elif c["region"] == "pixel":
        region = torch.zeros(c["b"], c["H"], c["W"], dtype=torch.bool)
        region[:, c["H"] // 2, c["W"] // 2] = True
    else:
        region = torch.ones(c["b"], c["H"], c["W"], dtype=torch.bool)
    masks = torch.rand(c["b"], c["n"], c["H"], c["W"], generator=g) > 0.5
    return levels, region, masks


def run(c, backend, levels, region, masks):
    ex = AffinityExplainer(c["variant"], softmax=c["softmax"], top_k=c["top_k"], blur_kernel=1, backend=backend)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ex.explain_levels(levels, region, masks).double()
    except ValueError as e:          # a refused input must be refused by every backend alike
        return str(e)


def resolved_in_float32(c) -> bool:
    """Whether every min-max'd quantity of the example is degenerate or well-resolved (module docstring)."""
    levels, region, masks = build(c, torch.float64)
    ex = AffinityExplainer(c["variant"], softmax=c["softmax"], top_k=c["top_k"], blur_kernel=1, backend="literal")
    try:
        maps = ex.level_maps(levels, region)
    except ValueError:
        return True
    total = sum(maps) / len(maps)
    total[uninformative_regions(region, [lv.query_hw for lv in levels])] = 0

    def ok(x, floor=0.0):
        flat = x.flatten(1)
        spread = flat.amax(1) - flat.amin(1)
        rel = spread / flat.abs().amax(1).clamp_min(floor).clamp_min(1e-300)
        return bool(((rel < 1e-6) | (rel > 1e-2)).all())

    if not ok(total):
        return False
    if c["variant"] == "unmasked":
        return True
    g = gaussian_blur(masks.to(torch.float32), 1, 50.0).double()
    return ok(minmax(total).mul_(g if c["variant"] == "masked" else 2 * g - 1), floor=1.0)


def check_agreement(c, dtype):
    levels, region, masks = build(c, dtype)
    want = run(c, "literal", levels, region, masks)
    for backend in BACKENDS[1:]:
        got = run(c, backend, levels, region, masks)
        if isinstance(want, str) or isinstance(got, str):
            assert got == want, (backend, c)
        else:
            assert float((got - want).abs().max()) < 1e-4, (backend, c)
            assert float(got.min()) >= 0 and float(got.max()) <= 1


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(cases())
def test_every_backend_gives_the_literal_maps_float64(c):
    check_agreement(c, torch.float64)


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(cases())
def test_every_backend_gives_the_literal_maps_float32(c):
    assume(resolved_in_float32(c))
    check_agreement(c, torch.float32)


def test_degenerate_inputs_give_zeros_on_every_backend_float32():
    """The degenerate corners, pinned: 1×1 query grids, uniform scores, a one-pixel region, R = everything."""
    base = dict(b=2, n=2, hq=3, wq=2, hs=2, ws=3, H=7, W=5, seed=3, kind="scores", softmax=True,
                variant="unmasked", relu=False, n_levels=2, region="random", top_k=0)
    for change in (dict(hq=1, wq=1), dict(kind="uniform"), dict(region="all"), dict(kind="uniform", region="pixel"),
                   dict(hq=1, wq=1, variant="masked"), dict(kind="uniform", variant="signed", softmax=False,
                                                             relu=True)):
        c = base | change
        levels, region, masks = build(c)
        for backend in BACKENDS:
            out = run(c, backend, levels, region, masks)
            assert not isinstance(out, str) and out.eq(0).all(), (backend, change)
