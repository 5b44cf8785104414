"""CUDA kernels against the CPU kernels and the pure-PyTorch twins at sizes the CPU tests do not reach
(many rows, large M, several launches). Skipped without a GPU or without the CUDA kernels."""
import pytest
import torch

from fss_attr import AffinityExplainer, torch_ops
from fss_attr._extension import has_kernel
from fss_attr.testing import dcama_like_levels, random_masks, random_region
from tests.conftest import rel_err

pytestmark = pytest.mark.skipif(not (torch.cuda.is_available() and has_kernel("backproject_scores", "CUDA")),
                                reason="needs a GPU and the CUDA kernels")


@pytest.mark.parametrize("shape", [(1, 2304, 11520), (2, 577, 2881), (1, 3, 70000)])
@pytest.mark.parametrize("softmax,top_k", [(True, 0), (False, 0), (True, 100), (True, 1)])
def test_scores_large(shape, softmax, top_k, gen):
    s = (torch.randn(*shape, generator=gen) * 3).cuda()
    w = torch.rand(shape[0], 2, shape[1], generator=gen).cuda()
    got = torch.ops.fss_attr.backproject_scores(s, w, softmax, top_k)
    want = torch_ops.backproject_scores(s.double(), w.double(), softmax, top_k)
    assert rel_err(got, want) < 1e-5
    assert rel_err(got, torch.ops.fss_attr.backproject_scores(s.cpu(), w.cpu(), softmax, top_k)) < 1e-5


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_scores_dtypes(dtype, gen):
    s = torch.randn(2, 300, 4000, generator=gen).to(dtype).cuda()
    w = torch.rand(2, 2, 300, generator=gen, dtype=torch.float64 if dtype == torch.float64 else torch.float32).cuda()
    got = torch.ops.fss_attr.backproject_scores(s, w, True, 7)
    want = torch_ops.backproject_scores(s.double(), w.double(), True, 7)
    assert rel_err(got, want) < (1e-12 if dtype == torch.float64 else 1e-5)


@pytest.mark.parametrize("similarity,relu,top_k", [("dot", False, 0), ("cosine", True, 0), ("cosine", False, 50)])
def test_features_large(similarity, relu, top_k, gen):
    q = torch.randn(1, 2304, 256, generator=gen).cuda()
    k = torch.randn(1, 11520, 256, generator=gen).cuda()
    w = torch.rand(1, 2, 2304, generator=gen).cuda()
    got = torch.ops.fss_attr.backproject_features(q, k, w, similarity, 0.0625, relu, True, top_k)
    want = torch_ops.backproject_features(q.double(), k.double(), w.double(), similarity, 0.0625, relu, True, top_k)
    assert rel_err(got, want) < 1e-5


def test_dcama_like_explanation_cuda_equals_cpu():
    region = random_region(1, (384, 384))
    masks = random_masks(1, 5, (384, 384))
    for features in (False, True):
        levels_cpu = dcama_like_levels(5, features=features)
        levels_gpu = dcama_like_levels(5, features=features, device="cuda")
        want = AffinityExplainer("masked", backend="cpu").explain_levels(levels_cpu, region, masks)
        got = AffinityExplainer("masked", backend="cuda").explain_levels(levels_gpu, region.cuda(), masks.cuda())
        assert rel_err(got, want) < 1e-4
