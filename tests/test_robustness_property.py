"""Every backend computes the same AffEx maps on every valid input, degenerate ones included (issue 15).

Random small inputs: B 1-2, N 1-3, grids 1-4 per side (1×1 included), outputs 1-10 per side, scores or
features (dot / cosine, relu), uniform scores (a map constant by definition), softmax on/off, top-k, one or
two levels, every variant, float32, regions that are random, a single pixel, or the whole image. The claim
(docs: every fast path computes the literal definition, and min-max treats a spread below the arithmetic's
resolution as constant the same way everywhere): the maps of "literal", "torch" and "cpu" agree within 1e-4,
or every backend refuses the input with the same ValueError.
"""
import warnings

import torch
from hypothesis import HealthCheck, given, settings, strategies as st

import fss_attr
from fss_attr import AffinityExplainer, LevelFeatures, LevelScores

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


def build(c):
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
            levels.append(LevelScores(s, (c["hq"], c["wq"]), (c["hs"], c["ws"]), c["n"]))
        else:
            fq, fk = torch.randn(c["b"], q, 4, generator=g), torch.randn(c["b"], m, 4, generator=g)
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


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(cases())
def test_every_backend_gives_the_literal_maps(c):
    levels, region, masks = build(c)
    want = run(c, "literal", levels, region, masks)
    for backend in BACKENDS[1:]:
        got = run(c, backend, levels, region, masks)
        if isinstance(want, str) or isinstance(got, str):
            assert got == want, (backend, c)
        else:
            assert float((got - want).abs().max()) < 1e-4, (backend, c)
            assert float(got.min()) >= 0 and float(got.max()) <= 1
