"""Bad input raises a clear Python exception naming the argument; nothing crashes."""
import pytest
import torch

import fss_attr
from fss_attr import AffinityExplainer, LevelFeatures, LevelScores, ops
from tests.conftest import FAST_BACKENDS


def good(b=1, n=2):
    lv = LevelScores(torch.randn(b, 6, n * 4), (2, 3), (2, 2), n)
    region = torch.zeros(b, 16, 16, dtype=torch.bool)
    region[:, 4:9, 3:7] = True
    masks = torch.ones(b, n, 16, 16, dtype=torch.bool)
    return lv, region, masks


@pytest.mark.parametrize("make,match", [
    (lambda: LevelScores(torch.randn(6, 8), (2, 3), (2, 2), 2), "scores must have 3 dimensions"),
    (lambda: LevelScores(torch.randn(1, 6, 8), (3, 3), (2, 2), 2), "query_hw"),
    (lambda: LevelScores(torch.randn(1, 6, 8), (2, 3), (2, 3), 2), "n_shots"),
    (lambda: LevelScores(torch.randn(1, 6, 8), (2, 3), (2, 2), 0), "n_shots"),
    (lambda: LevelScores(torch.randn(1, 6, 8), (2, -3), (2, 2), 2), "query_hw"),
    (lambda: LevelScores(torch.full((1, 6, 8), float("nan")), (2, 3), (2, 2), 2), "NaN"),
    (lambda: LevelScores(torch.ones(1, 6, 8, dtype=torch.int64), (2, 3), (2, 2), 2), "float32"),
    (lambda: LevelFeatures(torch.randn(1, 6, 4), torch.randn(2, 8, 4), (2, 3), (2, 2), 2), "batch"),
    (lambda: LevelFeatures(torch.randn(1, 6, 4), torch.randn(1, 8, 5), (2, 3), (2, 2), 2), "D="),
    (lambda: LevelFeatures(torch.randn(1, 6, 4), torch.randn(1, 8, 4).double(), (2, 3), (2, 2), 2), "dtype"),
    (lambda: LevelFeatures(torch.randn(1, 6, 4), torch.randn(1, 8, 4), (2, 3), (2, 2), 2, "l2"), "similarity"),
    (lambda: LevelFeatures(torch.randn(1, 6, 4), torch.randn(1, 8, 4), (2, 3), (2, 2), 2,
                           scale=float("inf")), "scale"),
])
def test_bad_levels(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


@pytest.mark.parametrize("backend", ["literal"] + FAST_BACKENDS)
def test_bad_explain_arguments(backend):
    if backend == "cuda":
        pytest.skip("cpu inputs")
    lv, region, masks = good()
    ex = AffinityExplainer("masked", blur_kernel=5, backend=backend)
    with pytest.raises(ValueError, match="region is empty"):
        ex.explain_levels([lv], torch.zeros_like(region), masks)
    with pytest.raises(ValueError, match="region must have shape"):
        ex.explain_levels([lv], region, masks, out_size=(8, 8))
    with pytest.raises(ValueError, match="region must be a"):
        ex.explain_levels([lv], region[0], masks)
    with pytest.raises(ValueError, match="support_masks must have shape"):
        ex.explain_levels([lv], region, masks[:, :1])
    with pytest.raises(ValueError, match="needs support_masks"):
        ex.explain_levels([lv], region, None)
    with pytest.raises(ValueError, match="binary"):
        ex.explain_levels([lv], region, masks.float() * 0.5)
    with pytest.raises(ValueError, match="level_weights"):
        ex.explain_levels([lv], region, masks, level_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="levels must hold"):
        ex.explain_levels([], region, masks)
    with pytest.raises(TypeError, match=r"levels\[0\]"):
        ex.explain_levels([torch.randn(1, 6, 8)], region, masks)
    other = LevelScores(torch.randn(2, 6, 8), (2, 3), (2, 2), 2)
    with pytest.raises(ValueError, match=r"levels\[1\]"):
        ex.explain_levels([lv, other], region, masks)
    with pytest.raises(ValueError, match="blur_kernel"):
        AffinityExplainer("masked", blur_kernel=33, backend=backend).explain_levels([lv], region, masks)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="variant"):
        AffinityExplainer("maskd")
    with pytest.raises(ValueError, match="top_k"):
        AffinityExplainer(top_k=-1)
    with pytest.raises(ValueError, match="backend"):
        AffinityExplainer(backend="gpu")
    with pytest.raises(ValueError, match="blur_kernel"):
        AffinityExplainer(blur_kernel=4)
    with pytest.raises(ValueError, match="blur_sigma"):
        AffinityExplainer(blur_sigma=0.0)


def test_unavailable_backend_is_explained():
    lv, region, masks = good()
    missing = [b for b in ("cpu", "cuda") if b not in fss_attr.available_backends()]
    for b in missing:
        with pytest.raises(RuntimeError, match="not available"):
            AffinityExplainer(backend=b).explain_levels([lv], region, masks)


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_bad_op_arguments(backend):
    if backend == "cuda":
        pytest.skip("cpu inputs")
    s, w = torch.randn(1, 4, 5), torch.rand(1, 2, 4)
    with pytest.raises(ValueError, match="weights must have shape"):
        ops.backproject_scores(s, w[:, :, :3], backend=backend)
    with pytest.raises(ValueError, match="top_k"):
        ops.backproject_scores(s, w, top_k=-2, backend=backend)
    with pytest.raises(ValueError, match="NaN"):
        ops.backproject_scores(s.masked_fill(s > 0, float("nan")), w, backend=backend)
    with pytest.raises(ValueError, match="similarity"):
        ops.backproject_features(torch.randn(1, 4, 3), torch.randn(1, 5, 3), w, "euclid", backend=backend)
    with pytest.raises(ValueError, match="must match query"):
        ops.correlation(torch.randn(1, 3, 2, 2), torch.randn(1, 2, 4, 2, 2), backend=backend)
    with pytest.raises(ValueError, match="4 dimensions"):
        ops.correlation(torch.randn(3, 2, 2), torch.randn(1, 2, 3, 2, 2), backend=backend)
