"""Similarities between embeddings and the closed-form gradients of an embedding model's head.

Similarities (broadcasting over leading dimensions, embeddings [..., D] -> [...]):

- ``cosine``: e1·e2 / (‖e1‖‖e2‖)
- ``dot``: e1·e2
- ``neg_sq_euclidean``: −‖e1 − e2‖²
"""
from __future__ import annotations

import torch

from fss_attr.similarity.model import NORM_EPS, EmbeddingModel
from fss_attr.validation import check_choice

SIMILARITIES = ("cosine", "dot", "neg_sq_euclidean")


def check_similarity(similarity: str) -> str:
    return check_choice("similarity", similarity, SIMILARITIES)


def _norm(x: torch.Tensor) -> torch.Tensor:
    return x.norm(dim=-1).clamp_min(NORM_EPS)


def similarity(e1: torch.Tensor, e2: torch.Tensor, kind: str = "cosine") -> torch.Tensor:
    """s(e1 [..., D], e2 [..., D]) -> [...] (broadcasting)."""
    check_similarity(kind)
    if kind == "neg_sq_euclidean":
        return -((e1 - e2) ** 2).sum(-1)
    dot = (e1 * e2).sum(-1)
    return dot if kind == "dot" else dot / (_norm(e1) * _norm(e2))


def all_pairs(e: torch.Tensor, kind: str = "cosine") -> torch.Tensor:
    """e [B, D] -> S [B, B] with S[i, j] = s(e_i, e_j)."""
    return similarity(e[:, None], e[None, :], kind)


def similarity_grad(e1: torch.Tensor, e2: torch.Tensor, kind: str = "cosine") -> torch.Tensor:
    """∂s(e1, e2)/∂e1 [..., D] in closed form (broadcasting)."""
    check_similarity(kind)
    e1, e2 = torch.broadcast_tensors(e1, e2)
    if kind == "dot":
        return e2
    if kind == "neg_sq_euclidean":
        return -2 * (e1 - e2)
    n1, n2 = _norm(e1)[..., None], _norm(e2)[..., None]
    cos = (e1 * e2).sum(-1, keepdim=True) / (n1 * n2)
    return e2 / (n1 * n2) - cos * e1 / n1 ** 2


def head_vjp(model: EmbeddingModel, g: torch.Tensor, grad_e: torch.Tensor) -> torch.Tensor:
    """Closed-form vector-Jacobian product of the head after pooling: (∂e/∂g)ᵀ grad_e.

    Args:
        model: the :class:`EmbeddingModel` (linear layer and normalization are read from it).
        g: [..., C] pooled features.
        grad_e: [..., D] a gradient with respect to the embedding e (broadcasts against g's leading dims).

    Returns:
        [..., C]: with e = z/‖z‖, ∂e/∂z = (I − e eᵀ)/‖z‖; with z = W g + b, ∂z/∂g = W.
    """
    z = model.project(g)
    if model.normalize:
        n = z.norm(dim=-1, keepdim=True).clamp_min(NORM_EPS)
        e = z / n
        grad_e = (grad_e - e * (e * grad_e).sum(-1, keepdim=True)) / n
    return grad_e if model.linear is None else grad_e @ model.linear.weight
