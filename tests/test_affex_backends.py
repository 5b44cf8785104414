"""Every backend of AffinityExplainer against the literal definition (docs/affex.md)."""
import math

import pytest
import torch

from fss_attr import AffinityExplainer, LevelFeatures, LevelScores
from fss_attr.affex.interp import linear_interp_matrix
from fss_attr.ops.reference import literal_support_attribution
from fss_attr.testing import random_level, random_masks, random_region
from tests.conftest import FAST_BACKENDS, device_of, rel_err

# (query_hw, support_hw, out_size): square and not, equal and unequal grids, odd sizes.
GRIDS = [((4, 4), (4, 4), (16, 16)), ((3, 5), (6, 2), (20, 18)), ((6, 6), (3, 3), (17, 23)),
         ((1, 1), (2, 3), (16, 16)), ((5, 2), (5, 2), (31, 16))]


def _levels(gen, batch, shots, grids, features, dtype, device, similarity="dot", relu=False):
    return [random_level(batch, shots, qhw, shw, features=features, dim=7, similarity=similarity, scale=0.8,
                         relu=relu, dtype=dtype, device=device, generator=gen) for qhw, shw in grids]


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("shots", [1, 2, 5])
@pytest.mark.parametrize("softmax,top_k", [(True, 0), (False, 0), (True, 3), (False, 5)])
def test_level_attribution_equals_literal(backend, grid, shots, softmax, top_k, gen):
    qhw, shw, out = grid
    dev = device_of(backend)
    level = random_level(2, shots, qhw, shw, dtype=torch.float64, generator=gen)
    region = random_region(2, out, generator=gen)
    ex = AffinityExplainer(softmax=softmax, top_k=top_k)
    want = ex.level_attribution(level, region, backend="literal")
    lv64 = LevelScores(level.scores.to(dev), qhw, shw, shots)
    assert rel_err(ex.level_attribution(lv64, region.to(dev), backend=backend), want) < 1e-10
    # Without softmax, signed scores can make a column's total sum_p U_j(p) cancel to ~0, and step 3's ratio
    # is then ill-conditioned in any float32 arithmetic; the float32 check uses non-negative scores there
    # (as relu'd cosine affinities are), the float64 check above keeps the signed ones.
    s32 = level.scores if softmax else level.scores.abs()
    want32 = want if softmax else ex.level_attribution(LevelScores(s32, qhw, shw, shots), region, backend="literal")
    lv32 = LevelScores(s32.float().to(dev), qhw, shw, shots)
    assert rel_err(ex.level_attribution(lv32, region.to(dev), backend=backend), want32) < 1e-4


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("variant", ["unmasked", "masked", "signed"])
@pytest.mark.parametrize("features", [False, True])
@pytest.mark.parametrize("softmax,top_k", [(True, 0), (False, 0), (True, 4)])
@pytest.mark.parametrize("shots", [1, 3, 5])
def test_explain_levels_equals_literal(backend, variant, features, softmax, top_k, shots, gen):
    out = (18, 21)
    grids = [((4, 5), (3, 3)), ((2, 2), (4, 2)), ((6, 3), (6, 3))]
    dev = device_of(backend)
    # without softmax, non-negative affinities (relu), as in the float32 level test above
    levels = _levels(gen, 2, shots, grids, features, torch.float32, dev, similarity="cosine" if shots == 3 else "dot",
                     relu=not softmax)
    if not softmax and not features:
        levels = [LevelScores(lv.scores.abs(), lv.query_hw, lv.support_hw, lv.n_shots) for lv in levels]
    region, masks = random_region(2, out, generator=gen, device=dev), random_masks(2, shots, out, generator=gen,
                                                                                   device=dev)
    weights = torch.rand(len(grids), generator=gen) + 0.1
    kw = dict(variant=variant, softmax=softmax, top_k=top_k, blur_kernel=9, blur_sigma=4.0)
    want = AffinityExplainer(**kw, backend="literal").explain_levels(
        [_to64(lv) for lv in levels], region, masks, weights, out)
    got = AffinityExplainer(**kw, backend=backend).explain_levels(levels, region, masks, weights, out)
    assert got.dtype == torch.float32 and got.shape == (2, shots, *out)
    assert float(got.min()) >= 0.0 and float(got.max()) <= 1.0
    assert rel_err(got, want) < 1e-4


def _to64(level):
    if isinstance(level, LevelFeatures):
        return LevelFeatures(level.query.double(), level.support.double(), level.query_hw, level.support_hw,
                             level.n_shots, level.similarity, level.scale, level.relu)
    return LevelScores(level.scores.double(), level.query_hw, level.support_hw, level.n_shots)


@pytest.mark.parametrize("backend", ["literal"] + FAST_BACKENDS)
@pytest.mark.parametrize("similarity,relu", [("dot", False), ("cosine", True)])
def test_features_equal_scores_of_features(backend, similarity, relu, gen):
    dev = device_of(backend)
    lf = random_level(1, 2, (3, 4), (2, 5), features=True, dim=6, similarity=similarity, scale=0.37, relu=relu,
                      dtype=torch.float64, device=dev, generator=gen)
    q, k = lf.query, lf.support
    if similarity == "cosine":
        q, k = q / q.norm(dim=-1, keepdim=True), k / k.norm(dim=-1, keepdim=True)
    s = 0.37 * q @ k.transpose(1, 2)
    ls = LevelScores(s.clamp_min(0) if relu else s, (3, 4), (2, 5), 2)
    region = random_region(1, (16, 16), generator=gen, device=dev)
    ex = AffinityExplainer(top_k=6, backend=backend)
    assert rel_err(ex.level_attribution(lf, region), ex.level_attribution(ls, region)) < 1e-10


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_low_precision_inputs_accumulate_in_float32(dtype, backend, gen):
    dev = device_of(backend)
    lv = random_level(1, 2, (4, 4), (4, 4), dtype=dtype, device=dev, generator=gen)
    region = random_region(1, (16, 16), generator=gen, device=dev)
    ex = AffinityExplainer(backend=backend)
    got = ex.level_attribution(lv, region)
    assert got.dtype == torch.float32
    want = ex.level_attribution(LevelScores(lv.scores.double(), (4, 4), (4, 4), 2), region, backend="literal")
    assert rel_err(got, want) < 1e-5  # the inputs are exact in float64; only float32 accumulation differs


def test_default_blur_on_realistic_size(gen):
    levels = _levels(gen, 1, 2, [((6, 6), (6, 6))], False, torch.float32, "cpu")
    region, masks = random_region(1, (48, 40), generator=gen), random_masks(1, 2, (48, 40), generator=gen)
    want = AffinityExplainer("signed", backend="literal").explain_levels(levels, region, masks)
    for backend in FAST_BACKENDS:
        if backend == "cuda":
            continue
        got = AffinityExplainer("signed", backend=backend).explain_levels(levels, region, masks)
        assert rel_err(got, want) < 1e-4


def bilinear_by_formula(x: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """Bilinear upsampling of one [h, w] map written from the coordinate formula (align_corners=False)."""
    h, w = x.shape
    out = torch.zeros(out_h, out_w, dtype=torch.float64)
    for i in range(out_h):
        sy = max((i + 0.5) * h / out_h - 0.5, 0.0)
        y0 = min(int(math.floor(sy)), h - 1)
        y1, fy = min(y0 + 1, h - 1), sy - y0
        for j in range(out_w):
            sx = max((j + 0.5) * w / out_w - 0.5, 0.0)
            x0 = min(int(math.floor(sx)), w - 1)
            x1, fx = min(x0 + 1, w - 1), sx - x0
            out[i, j] = ((1 - fy) * ((1 - fx) * x[y0, x0] + fx * x[y0, x1])
                         + fy * ((1 - fx) * x[y1, x0] + fx * x[y1, x1]))
    return out


def test_literal_oracle_against_pixel_loops(gen):
    """The oracle itself: steps 1–4 with hand-written bilinear upsampling and explicit pixel sums."""
    hq, wq, hs, ws, n, h, w = 3, 2, 2, 2, 2, 7, 5
    scores = torch.randn(1, hq * wq, n * hs * ws, generator=gen, dtype=torch.float64)
    region = torch.rand(1, h, w, generator=gen) > 0.5
    region[0, 0, 0] = True
    p = torch.softmax(scores[0], dim=-1)
    want = []
    for j in range(n * hs * ws):
        u = bilinear_by_formula(p[:, j].reshape(hq, wq), h, w)
        u = u / (u.sum() + 1e-6)
        want.append(u[region[0]].mean())
    got = literal_support_attribution(scores, (hq, wq), region)
    assert torch.allclose(got[0], torch.stack(want), rtol=1e-12, atol=0)


def test_interp_matrix_is_bilinear_upsampling(gen):
    x = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    want = bilinear_by_formula(x, 11, 7)
    got = linear_interp_matrix(11, 4) @ x @ linear_interp_matrix(7, 3).T
    assert torch.allclose(got, want, atol=1e-13)
