"""The pure-PyTorch twins (fss_attr.ops.torch_twin) against a row-by-row reading of docs/ops.md."""
import pytest
import torch

from fss_attr.ops import torch_twin
from tests.conftest import rel_err


def naive_row(s: torch.Tensor, softmax: bool, top_k: int) -> torch.Tensor:
    """One row of P by the words of docs/ops.md, with Python loops over the entries."""
    vals = s.tolist()
    m = len(vals)
    if 0 < top_k < m:
        t = sorted(vals, reverse=True)[top_k - 1]
        kept = [v >= t for v in vals]
    else:
        kept = [True] * m
    if not softmax:
        return torch.tensor([v if k else 0.0 for v, k in zip(vals, kept)], dtype=torch.float64)
    mx = max(v for v, k in zip(vals, kept) if k)
    e = [torch.exp(torch.tensor(v - mx, dtype=torch.float64)).item() if k else 0.0 for v, k in zip(vals, kept)]
    tot = sum(e)
    return torch.tensor([x / tot for x in e], dtype=torch.float64)


def naive_backproject(scores, weights, softmax, top_k):
    b, q, m = scores.shape
    out = torch.zeros(b, 2, m, dtype=torch.float64)
    for bi in range(b):
        for qi in range(q):
            p = naive_row(scores[bi, qi], softmax, top_k)
            out[bi] += weights[bi, :, qi, None] * p
    return out


@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 3, 7), (2, 5, 9), (3, 4, 16)])
@pytest.mark.parametrize("softmax", [True, False])
@pytest.mark.parametrize("top_k", [0, 1, 3, 100])
def test_backproject_scores_matches_row_definition(shape, softmax, top_k, gen):
    scores = torch.randn(*shape, generator=gen, dtype=torch.float64) * 3
    weights = torch.rand(shape[0], 2, shape[1], generator=gen, dtype=torch.float64)
    got = torch_twin.backproject_scores(scores, weights, softmax, top_k, chunk_rows=2)
    assert rel_err(got, naive_backproject(scores, weights, softmax, top_k)) < 1e-12


def test_top_k_keeps_all_ties():
    scores = torch.tensor([[[1.0, 3.0, 3.0, 2.0, 3.0]]], dtype=torch.float64)
    weights = torch.ones(1, 2, 1, dtype=torch.float64)
    got = torch_twin.backproject_scores(scores, weights, softmax=True, top_k=2)
    assert torch.allclose(got[0, 0], torch.tensor([0, 1 / 3, 1 / 3, 0, 1 / 3], dtype=torch.float64))


@pytest.mark.parametrize("similarity", ["dot", "cosine"])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("top_k", [0, 4])
def test_backproject_features_equals_scores_of_features(similarity, relu, top_k, gen):
    q = torch.randn(2, 6, 5, generator=gen, dtype=torch.float64)
    k = torch.randn(2, 11, 5, generator=gen, dtype=torch.float64)
    w = torch.rand(2, 2, 6, generator=gen, dtype=torch.float64)
    scale = 0.7
    s = torch.zeros(2, 6, 11, dtype=torch.float64)
    for b in range(2):
        for i in range(6):
            for j in range(11):
                v = q[b, i] @ k[b, j]
                if similarity == "cosine":
                    v = v / (q[b, i].norm() * k[b, j].norm())
                s[b, i, j] = max(scale * v, 0.0) if relu else scale * v
    want = naive_backproject(s, w, True, top_k)
    got = torch_twin.backproject_features(q, k, w, similarity, scale, relu, True, top_k, chunk_rows=4)
    assert rel_err(got, want) < 1e-12


@pytest.mark.parametrize("similarity", ["dot", "cosine"])
@pytest.mark.parametrize("relu,top_k", [(False, 0), (True, 0), (False, 5), (True, 3)])
def test_correlation_matches_loops(similarity, relu, top_k, gen):
    b, c, n = 2, 4, 2
    q = torch.randn(b, c, 3, 2, generator=gen, dtype=torch.float64)
    k = torch.randn(b, n, c, 2, 3, generator=gen, dtype=torch.float64)
    got = torch_twin.correlation(q, k, similarity, relu, top_k)
    assert got.shape == (b, 3, 2, n, 2, 3)
    for bi in range(b):
        for y in range(3):
            for x in range(2):
                row = []
                for ni in range(n):
                    for u in range(2):
                        for v in range(3):
                            a, kk = q[bi, :, y, x], k[bi, ni, :, u, v]
                            val = a @ kk / ((a.norm() * kk.norm()) if similarity == "cosine" else 1.0)
                            row.append(max(val.item(), 0.0) if relu else val.item())
                want = naive_row(torch.tensor(row, dtype=torch.float64), False, top_k)
                assert torch.allclose(got[bi, y, x].flatten(), want, atol=1e-12)
