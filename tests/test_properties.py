"""Property tests (hypothesis) across backends: agreement with the literal definition and invariances."""
import torch
from hypothesis import given, settings, strategies as st

from fss_attr import AffinityExplainer, LevelScores
from fss_attr.testing import random_level, random_masks, random_region
from tests.conftest import FAST_BACKENDS, device_of, rel_err

grid = st.tuples(st.integers(1, 6), st.integers(1, 6))


@settings(max_examples=30, deadline=None)
@given(qhw=grid, shw=grid, shots=st.integers(1, 5), out=st.tuples(st.integers(1, 20), st.integers(1, 20)),
       softmax=st.booleans(), top_k=st.integers(0, 12), seed=st.integers(0, 2**31 - 1))
def test_all_backends_agree_with_literal(qhw, shw, shots, out, softmax, top_k, seed):
    g = torch.Generator().manual_seed(seed)
    level = random_level(2, shots, qhw, shw, dtype=torch.float64, generator=g)
    region = random_region(2, out, generator=g, kind="noise")
    ex = AffinityExplainer(softmax=softmax, top_k=top_k)
    want = ex.level_attribution(level, region, backend="literal")
    for backend in FAST_BACKENDS:
        dev = device_of(backend)
        lv = LevelScores(level.scores.to(dev), qhw, shw, shots)
        assert rel_err(ex.level_attribution(lv, region.to(dev), backend=backend), want) < 1e-10


@settings(max_examples=20, deadline=None)
@given(shots=st.integers(1, 4), shift=st.floats(-50, 50), seed=st.integers(0, 2**31 - 1),
       backend=st.sampled_from(["literal"] + FAST_BACKENDS))
def test_invariances(shots, shift, seed, backend):
    """Row shifts of the scores (softmax), positive scaling of the level weights, and shot order."""
    g = torch.Generator().manual_seed(seed)
    dev = device_of(backend)
    levels = [random_level(1, shots, (3, 4), (2, 3), dtype=torch.float64, generator=g, device=dev),
              random_level(1, shots, (2, 2), (4, 4), dtype=torch.float64, generator=g, device=dev)]
    region = random_region(1, (16, 16), generator=g, device=dev)
    masks = random_masks(1, shots, (16, 16), generator=g, device=dev)
    ex = AffinityExplainer("masked", blur_kernel=5, backend=backend)
    w = torch.tensor([0.3, 0.9])
    base = ex.explain_levels(levels, region, masks, w)
    assert float(base.min()) >= 0 and float(base.max()) <= 1
    row_shift = shift * torch.rand(1, levels[0].scores.shape[1], 1, generator=g, dtype=torch.float64).to(dev)
    shifted = [LevelScores(levels[0].scores + row_shift, (3, 4), (2, 3), shots), levels[1]]
    assert rel_err(ex.explain_levels(shifted, region, masks, w), base) < 1e-5
    assert rel_err(ex.explain_levels(levels, region, masks, 7.5 * w), base) < 1e-6
    perm = torch.randperm(shots, generator=g)
    permuted = [LevelScores(lv.scores.view(1, lv.scores.shape[1], shots, -1)[:, :, perm.to(dev)].reshape_as(lv.scores),
                            lv.query_hw, lv.support_hw, shots) for lv in levels]
    got = ex.explain_levels(permuted, region, masks[:, perm.to(dev)], w)
    assert rel_err(got, base[:, perm.to(dev)]) < 1e-6
