"""The matching of one feature level, as scores or as features.

A level pairs a query grid hq×wq (Q = hq·wq positions, row-major) with N support
grids hs×ws (M = N·hs·ws positions, ordered shot, row, col).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from fss_attr.ops import torch_twin
from fss_attr.ops.checks import check_query_support, check_similarity
from fss_attr.validation import check_grid, check_tensor


@dataclass(frozen=True)
class LevelScores:
    """A level given by its materialised affinity.

    Attributes:
        scores: [B, Q, M] floating (float32, float64, float16 or bfloat16) pre-softmax scores.
        query_hw: (hq, wq) with hq·wq = Q.
        support_hw: (hs, ws) with n_shots·hs·ws = M.
        n_shots: N, the number of support images.
    """

    scores: torch.Tensor
    query_hw: tuple[int, int]
    support_hw: tuple[int, int]
    n_shots: int

    def __post_init__(self):
        check_tensor("scores", self.scores, ndim=3, floating=True, finite=True)
        _check_layout(self.query_hw, self.support_hw, self.n_shots, self.scores.shape[1], self.scores.shape[2],
                      "scores")

    @property
    def batch_size(self) -> int:
        return self.scores.shape[0]

    @property
    def device(self) -> torch.device:
        return self.scores.device

    def materialize(self) -> "LevelScores":
        return self


@dataclass(frozen=True)
class LevelFeatures:
    """A level given by the features whose similarity is its affinity.

    The scores are ``scale·q·k`` (``similarity="dot"``) or ``scale·cos(q, k)``
    (``"cosine"``), followed by ``max(·, 0)`` when ``relu`` is set. Backends that
    stream (cpu, cuda) never materialise the [B, Q, M] score matrix.

    Attributes:
        query: [B, Q, D] floating query features.
        support: [B, M, D] support features, same dtype and device as ``query``.
        query_hw, support_hw, n_shots: as in :class:`LevelScores`.
        similarity: "dot" or "cosine".
        scale: multiplies the similarity (e.g. 1/(h·sqrt(d_k)) for DCAMA's head mean).
        relu: clamp the scores at zero.
    """

    query: torch.Tensor
    support: torch.Tensor
    query_hw: tuple[int, int]
    support_hw: tuple[int, int]
    n_shots: int
    similarity: str = "dot"
    scale: float = 1.0
    relu: bool = False

    def __post_init__(self):
        check_query_support(self.query, self.support)  # the check of backproject_features (and its C++ op)
        check_tensor("query", self.query, finite=True)
        check_tensor("support", self.support, finite=True)
        check_similarity(self.similarity)
        if not isinstance(self.scale, (int, float)) or not torch.isfinite(torch.tensor(float(self.scale))):
            raise ValueError(f"scale must be a finite number, got {self.scale!r}")
        _check_layout(self.query_hw, self.support_hw, self.n_shots, self.query.shape[1], self.support.shape[1],
                      "query/support")

    @property
    def batch_size(self) -> int:
        return self.query.shape[0]

    @property
    def device(self) -> torch.device:
        return self.query.device

    def materialize(self) -> LevelScores:
        """The same level as a :class:`LevelScores` (materialises [B, Q, M] in the accumulation dtype)."""
        acc = torch_twin.acc_dtype(self.query.dtype)
        scores = torch_twin.similarity_scores(self.query.to(acc), self.support.to(acc), self.similarity,
                                             float(self.scale), self.relu)
        return LevelScores(scores, self.query_hw, self.support_hw, self.n_shots)


Level = LevelScores | LevelFeatures


def _check_layout(query_hw, support_hw, n_shots, q, m, what):
    hq, wq = check_grid("query_hw", query_hw)
    hs, ws = check_grid("support_hw", support_hw)
    if not isinstance(n_shots, int) or isinstance(n_shots, bool) or n_shots < 1:
        raise ValueError(f"n_shots must be a positive int, got {n_shots!r}")
    if hq * wq != q:
        raise ValueError(f"{what}: Q={q} query positions do not match query_hw={query_hw} (hq·wq={hq * wq})")
    if n_shots * hs * ws != m:
        raise ValueError(f"{what}: M={m} support positions do not match n_shots·hs·ws = "
                         f"{n_shots}·{hs}·{ws} = {n_shots * hs * ws}")
