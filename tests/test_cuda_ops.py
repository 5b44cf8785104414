"""CUDA kernels against the CPU kernels and the pure-PyTorch twins at sizes the CPU tests do not reach
(many rows, large M, several launches), on both kernel versions: the one-pass scores kernel (float32/16, M up to
12288) and the row-statistics one (float64, longer rows); the flash features kernel (no top-k; float32 on FMA,
float16/bfloat16 on tensor cores) and the blocked one (top-k, float64). Skipped without a GPU or without the
CUDA kernels."""
import pytest
import torch

from fss_attr import AffinityExplainer
from fss_attr.ops import torch_twin
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
    want = torch_twin.backproject_scores(s.double(), w.double(), softmax, top_k)
    assert rel_err(got, want) < 1e-5
    assert rel_err(got, torch.ops.fss_attr.backproject_scores(s.cpu(), w.cpu(), softmax, top_k)) < 1e-5


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_scores_dtypes(dtype, gen):
    s = torch.randn(2, 300, 4000, generator=gen).to(dtype).cuda()
    w = torch.rand(2, 2, 300, generator=gen, dtype=torch.float64 if dtype == torch.float64 else torch.float32).cuda()
    got = torch.ops.fss_attr.backproject_scores(s, w, True, 7)
    want = torch_twin.backproject_scores(s.double(), w.double(), True, 7)
    assert rel_err(got, want) < (1e-12 if dtype == torch.float64 else 1e-5)


def _plus_minus_one(*shape, gen):
    """±1 features: every dot product and cosine is exact in float32, so float32 and float64 keep the same top-k
    sets (random features would put float32 rounding next to top-k thresholds in some of 2304 rows)."""
    return torch.randint(0, 2, shape, generator=gen).float().mul_(2).sub_(1)


@pytest.mark.parametrize("similarity,relu,top_k", [("dot", False, 0), ("cosine", True, 0), ("cosine", False, 50)])
def test_features_large(similarity, relu, top_k, gen):
    make = _plus_minus_one if top_k else lambda *shape, gen: torch.randn(*shape, generator=gen)
    q = make(1, 2304, 256, gen=gen).cuda()
    k = make(1, 11520, 256, gen=gen).cuda()
    w = torch.rand(1, 2, 2304, generator=gen).cuda()
    got = torch.ops.fss_attr.backproject_features(q, k, w, similarity, 0.0625, relu, True, top_k)
    want = torch_twin.backproject_features(q.double(), k.double(), w.double(), similarity, 0.0625, relu, True, top_k)
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


ONEPASS_MAX_M = 512 * 24  # csrc/cuda/scores_onepass.cuh: kOnePassThreads * kMaxValuesPerThread


@pytest.mark.parametrize("q,m", [(1, 1), (3, 511), (700, 512), (5, 513), (64, 1025), (300, 4000), (50, 6000),
                                 (40, ONEPASS_MAX_M), (40, ONEPASS_MAX_M + 1)])
@pytest.mark.parametrize("softmax,top_k", [(True, 0), (False, 0), (True, 1), (True, 37), (False, 5)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_scores_both_versions(q, m, softmax, top_k, dtype, gen):
    s = (torch.randn(2, q, m, generator=gen) * 3).to(dtype)
    w = torch.rand(2, 2, q, generator=gen)
    got = torch.ops.fss_attr.backproject_scores(s.cuda(), w.cuda(), softmax, top_k)
    assert got.dtype == torch.float32 and got.shape == (2, 2, m)
    want = torch_twin.backproject_scores(s.double(), w.double(), softmax, top_k)  # the inputs are exact in float64
    assert rel_err(got, want) < 1e-5


FLASH_SHAPES = [(1, 1, 1, 1), (2, 70, 130, 40), (3, 129, 65, 33), (1, 300, 5000, 256), (1, 2304, 11520, 64),
                (2, 64, 64, 32)]


@pytest.mark.parametrize("shape", FLASH_SHAPES)
@pytest.mark.parametrize("similarity,relu,scale,softmax", [("dot", False, 0.125, True), ("cosine", True, 8.0, True),
                                                           ("cosine", False, 1.0, False), ("dot", True, 0.5, False)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_features_flash(shape, similarity, relu, scale, softmax, dtype, gen):
    b, q, m, d = shape
    qf = torch.randn(b, q, d, generator=gen).to(dtype)
    kf = torch.randn(b, m, d, generator=gen).to(dtype)
    w = torch.rand(b, 2, q, generator=gen)
    got = torch.ops.fss_attr.backproject_features(qf.cuda(), kf.cuda(), w.cuda(), similarity, scale, relu,
                                                  softmax, 0)
    assert got.dtype == torch.float32 and got.shape == (b, 2, m)
    # Half-precision features are exact in float64; the kernel's products of them are exact in float32 and only
    # the float32 sums differ from this reference.
    want = torch_twin.backproject_features(qf.double(), kf.double(), w.double(), similarity, scale, relu, softmax, 0)
    assert rel_err(got, want) < 1e-5


def test_features_flash_equals_cpu_kernel(gen):
    qf = torch.randn(2, 577, 96, generator=gen)
    kf = torch.randn(2, 2885, 96, generator=gen)
    w = torch.rand(2, 2, 577, generator=gen)
    got = torch.ops.fss_attr.backproject_features(qf.cuda(), kf.cuda(), w.cuda(), "cosine", 10.0, True, True, 0)
    want = torch.ops.fss_attr.backproject_features(qf, kf, w, "cosine", 10.0, True, True, 0)
    assert rel_err(got, want) < 1e-5


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_features_blocked_top_k(dtype, gen):
    """Top-k (and float64) take the blocked path; small integer features make every score exact."""
    qf = torch.randint(-2, 3, (2, 130, 40), generator=gen).to(dtype)
    kf = torch.randint(-2, 3, (2, 700, 40), generator=gen).to(dtype)
    w = torch.rand(2, 2, 130, generator=gen, dtype=torch_twin.acc_dtype(dtype))
    for softmax in (True, False):
        got = torch.ops.fss_attr.backproject_features(qf.cuda(), kf.cuda(), w.cuda(), "dot", 0.25, True, softmax, 9)
        want = torch_twin.backproject_features(qf.double(), kf.double(), w.double(), "dot", 0.25, True, softmax, 9)
        assert rel_err(got, want) < (1e-12 if dtype == torch.float64 else 1e-5)


# ---- every CUDA kernel version against the reference; determinism ----
# backproject_scores: 1 row statistics + atomic column sums, 2 one pass (float32/16/bf16, M <= 12288),
# 3 = 1 with deterministic column sums; backproject_features: 1 blocked cuBLAS + row kernels, 2 flash
# (no top-k, no float64), 3 = 1 deterministic. Version 0 picks.

def _version_applies(op, version, dtype, m, top_k):
    if version != 2:
        return True
    if op == "scores":
        return dtype != torch.float64 and m <= ONEPASS_MAX_M
    return dtype != torch.float64 and not (0 < top_k < m)


@pytest.mark.parametrize("version", [0, 1, 2, 3])
@pytest.mark.parametrize("q,m", [(1, 1), (5, 513), (70, 4000), (40, ONEPASS_MAX_M + 1), (3000, 64)])
@pytest.mark.parametrize("softmax,top_k", [(True, 0), (False, 0), (True, 37)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_scores_every_version(version, q, m, softmax, top_k, dtype, gen):
    s = (torch.randn(2, q, m, generator=gen) * 3).to(dtype)
    w = torch.rand(2, 2, q, generator=gen, dtype=torch_twin.acc_dtype(dtype))
    if not _version_applies("scores", version, dtype, m, top_k):
        with pytest.raises(RuntimeError, match="version 2 needs"):
            torch.ops.fss_attr.backproject_scores(s.cuda(), w.cuda(), softmax, top_k, version)
        return
    got = torch.ops.fss_attr.backproject_scores(s.cuda(), w.cuda(), softmax, top_k, version)
    want = torch_twin.backproject_scores(s.double(), w.double(), softmax, top_k)
    assert rel_err(got, want) < (1e-12 if dtype == torch.float64 else 1e-5)


@pytest.mark.parametrize("version", [0, 1, 2, 3])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 70, 130, 40), (1, 300, 5000, 64)])
@pytest.mark.parametrize("top_k", [0, 9])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_features_every_version(version, shape, top_k, dtype, gen):
    """Small integer features: every score is exact, so top-k sets agree with the float64 reference."""
    b, q, m, d = shape
    qf = torch.randint(-2, 3, (b, q, d), generator=gen).to(dtype)
    kf = torch.randint(-2, 3, (b, m, d), generator=gen).to(dtype)
    w = torch.rand(b, 2, q, generator=gen, dtype=torch_twin.acc_dtype(dtype))
    args = ("dot", 0.25, True, True, top_k)
    if not _version_applies("features", version, dtype, m, top_k):
        with pytest.raises(RuntimeError, match="version 2 needs"):
            torch.ops.fss_attr.backproject_features(qf.cuda(), kf.cuda(), w.cuda(), *args, version)
        return
    got = torch.ops.fss_attr.backproject_features(qf.cuda(), kf.cuda(), w.cuda(), *args, version)
    want = torch_twin.backproject_features(qf.double(), kf.double(), w.double(), *args)
    assert rel_err(got, want) < (1e-12 if dtype == torch.float64 else 1e-5)


@pytest.fixture
def deterministic(monkeypatch):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS products (version 1/3 features) ask for it
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(before)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_deterministic_default_repeats_bitwise(deterministic, dtype, gen):
    s = (torch.randn(2, 3000, 2000, generator=gen) * 3).to(dtype).cuda()
    w = torch.rand(2, 2, 3000, generator=gen, dtype=torch_twin.acc_dtype(dtype)).cuda()
    runs = [torch.ops.fss_attr.backproject_scores(s, w, True, 0) for _ in range(3)]
    assert all(torch.equal(runs[0], r) for r in runs[1:])
    qf = torch.randn(1, 2304, 64, generator=gen).to(dtype).cuda()
    kf = torch.randn(1, 5000, 64, generator=gen).to(dtype).cuda()
    wf = torch.rand(1, 2, 2304, generator=gen, dtype=torch_twin.acc_dtype(dtype)).cuda()
    runs = [torch.ops.fss_attr.backproject_features(qf, kf, wf, "cosine", 5.0, False, True, 0) for _ in range(3)]
    assert all(torch.equal(runs[0], r) for r in runs[1:])
    want = torch_twin.backproject_features(qf.double(), kf.double(), wf.double(), "cosine", 5.0, False, True, 0)
    assert rel_err(runs[0], want) < (1e-12 if dtype == torch.float64 else 1e-5)


def test_atomic_versions_alert_in_deterministic_mode(deterministic, gen):
    s = torch.randn(1, 40, 300, generator=gen).cuda()
    w = torch.rand(1, 2, 40, generator=gen).cuda()
    qf, kf = torch.randn(1, 40, 8, generator=gen).cuda(), torch.randn(1, 300, 8, generator=gen).cuda()
    for version in (1, 2):
        with pytest.raises(RuntimeError, match="backproject_scores"):
            torch.ops.fss_attr.backproject_scores(s, w, True, 0, version)
        with pytest.raises(RuntimeError, match="backproject_features"):
            torch.ops.fss_attr.backproject_features(qf, kf, w, "dot", 1.0, False, True, 0, version)
