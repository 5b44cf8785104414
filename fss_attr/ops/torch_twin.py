"""Pure-PyTorch twins of the compiled ops (docs/ops.md): the ``torch`` backend.

Each function computes exactly what its ``torch.ops.fss_attr`` namesake computes,
with plain PyTorch operations, chunked over query rows so that no more than
``chunk_rows`` rows of probabilities exist at a time. The back-projection results
are in the accumulation dtype: float64 for float64 inputs, float32 otherwise.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

COSINE_EPS = 1e-8
DEFAULT_CHUNK_ELEMENTS = 1 << 24  # rows per chunk are chosen so a chunk holds ~16M scores


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """The accumulation dtype for inputs of ``dtype`` (float64 stays, the rest is float32)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def keep_mask(scores: torch.Tensor, top_k: int) -> torch.Tensor | None:
    """[..., M] bool mask of the entries kept by the top-k rule (>= the k-th largest), or None when off."""
    m = scores.shape[-1]
    if top_k <= 0 or top_k >= m:
        return None
    threshold = torch.topk(scores, top_k, dim=-1, sorted=True).values[..., -1:]
    return scores >= threshold


def row_probabilities(scores: torch.Tensor, softmax: bool, top_k: int) -> torch.Tensor:
    """Apply the row rules of docs/ops.md (top-k, then softmax over the kept entries) along the last dim."""
    keep = keep_mask(scores, top_k)
    if softmax:
        if keep is not None:
            scores = scores.masked_fill(~keep, float("-inf"))
        return torch.softmax(scores, dim=-1)
    return scores if keep is None else scores * keep


def similarity_scores(query: torch.Tensor, support: torch.Tensor, similarity: str, scale: float = 1.0,
                      relu: bool = False) -> torch.Tensor:
    """Scores [B, Q, M] = scale·sim(q, k), then relu; query [B, Q, D], support [B, M, D]."""
    if similarity == "cosine":
        query = F.normalize(query, dim=-1, eps=COSINE_EPS)
        support = F.normalize(support, dim=-1, eps=COSINE_EPS)
    elif similarity != "dot":
        raise ValueError(f"similarity must be 'dot' or 'cosine', got {similarity!r}")
    scores = torch.bmm(query, support.transpose(1, 2))
    if scale != 1.0:
        scores = scores * scale
    return scores.clamp_min(0) if relu else scores


def _rows_per_chunk(m: int, chunk_rows: int | None) -> int:
    return max(1, chunk_rows if chunk_rows else DEFAULT_CHUNK_ELEMENTS // max(m, 1))


def backproject_scores(scores: torch.Tensor, weights: torch.Tensor, softmax: bool = True, top_k: int = 0,
                       chunk_rows: int | None = None) -> torch.Tensor:
    """Column sums [B, 2, M] = weights [B, 2, Q] @ P, P = row_probabilities(scores [B, Q, M])."""
    acc = acc_dtype(scores.dtype)
    weights = weights.to(acc)
    b, q, m = scores.shape
    out = scores.new_zeros((b, 2, m), dtype=acc)
    step = _rows_per_chunk(m, chunk_rows)
    for q0 in range(0, q, step):
        p = row_probabilities(scores[:, q0:q0 + step].to(acc), softmax, top_k)
        out.baddbmm_(weights[:, :, q0:q0 + step], p)
    return out


def backproject_features(query: torch.Tensor, support: torch.Tensor, weights: torch.Tensor,
                         similarity: str = "dot", scale: float = 1.0, relu: bool = False,
                         softmax: bool = True, top_k: int = 0, chunk_rows: int | None = None) -> torch.Tensor:
    """Column sums [B, 2, M] of the scores defined by features; query [B, Q, D], support [B, M, D]."""
    acc = acc_dtype(query.dtype)
    query, support, weights = query.to(acc), support.to(acc), weights.to(acc)
    if similarity == "cosine":  # normalize once, not per chunk
        query = F.normalize(query, dim=-1, eps=COSINE_EPS)
        support = F.normalize(support, dim=-1, eps=COSINE_EPS)
        similarity = "dot"
    b, q, _ = query.shape
    m = support.shape[1]
    out = query.new_zeros((b, 2, m))
    step = _rows_per_chunk(m, chunk_rows)
    for q0 in range(0, q, step):
        s = similarity_scores(query[:, q0:q0 + step], support, similarity, scale, relu)
        out.baddbmm_(weights[:, :, q0:q0 + step], row_probabilities(s, softmax, top_k))
    return out


def correlation(query: torch.Tensor, support: torch.Tensor, similarity: str = "cosine", relu: bool = False,
                top_k: int = 0) -> torch.Tensor:
    """Dense 4D correlation [B, Hq, Wq, N, Hs, Ws] of query [B, C, Hq, Wq] and support [B, N, C, Hs, Ws].

    Differentiable through autograd (the top-k selection is treated as constant).
    """
    b, c, hq, wq = query.shape
    _, n, _, hs, ws = support.shape
    q = query.flatten(2).transpose(1, 2)                               # [B, Q, C]
    k = support.permute(0, 1, 3, 4, 2).reshape(b, n * hs * ws, c)       # [B, M, C]
    s = similarity_scores(q, k, similarity, 1.0, relu)
    keep = keep_mask(s.detach(), top_k)
    if keep is not None:
        s = s * keep
    return s.reshape(b, hq, wq, n, hs, ws)
