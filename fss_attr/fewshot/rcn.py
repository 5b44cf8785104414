"""The Region Comparison Network (RCN; Xue, Duan, Li, Chen and Luo, 2020), written from the paper.

Every image of an episode is embedded into a grid of R = h·w regions (a 5×5 grid at 84×84 with Conv4 or
ResNet-12). For a query q and a support image s:

- region comparison: s_r = max over query cells p of cos(f_s[r], f_q[p]), the best match in the query of
  support region r; computed for every (query, support) pair of the episode by one call of
  :func:`fss_attr.ops.correlation`, the queries stacked along the grid's height;
- region weights: a meta-learner of 1×1 convolutions on the channel concatenation [f_s[r]; f_q[r]] of the
  support and query features *at the same cell* r gives g_r, and w_r = sigmoid(g_r) ∈ (0, 1);
- the pair's score y = Σ_r w_r·s_r, and the score of a class is the mean of y over its K shots.

Each weight may reach 1, so a few well-matched regions can carry a score of 1 alone: the regression target
does not force every region to contribute (a weight capped at 1/R would, and RAM would then be flat). The
last convolution's bias starts at −ln(R − 1), so the initial weights are about 1/R and the initial scores
about the mean of s_r.

Training is episodic: mean squared error between the class scores and the one-hot labels, with Adam
(:mod:`fss_attr.fewshot.train`). The intermediate s_r, w_r and the matched query cells are what Region
Activation Mapping shows (:mod:`fss_attr.fewshot.ram`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fss_attr import ops
from fss_attr.fewshot.classifier import FewShotClassifier, check_episode_features, check_labels
from fss_attr.backbones.fewshot import build_backbone
from fss_attr.validation import check_tensor


@dataclass
class RegionComparison:
    """The comparison of every query with every support image of an episode (R = h·w regions).

    Attributes:
        correlation: [Qn, h, w, S, h, w] cosine of every query cell with every support cell.
        similarity: [Qn, S, R] s_r, the best cosine of support region r (row-major) over the query's cells.
        match: [Qn, S, R] int64, the query cell (row-major) that attains s_r.
    """

    correlation: torch.Tensor
    similarity: torch.Tensor
    match: torch.Tensor


def compare_regions(query: torch.Tensor, support: torch.Tensor, backend: str = "auto") -> RegionComparison:
    """Region comparison of query features [Qn, C, h, w] against support features [S, C, hs, ws].

    One :func:`fss_attr.ops.correlation` call covers all Qn·S pairs: the Qn query grids are stacked along
    the height into one [1, C, Qn·h, w] map, matched against the S support grids [1, S, C, hs, ws].
    """
    check_tensor("query features", query, ndim=4, floating=True, finite=True)
    check_tensor("support features", support, ndim=4, floating=True, dtype=query.dtype, device=query.device,
                 finite=True)
    if support.shape[1] != query.shape[1]:
        raise ValueError(f"query [Qn, C, h, w] and support [S, C, h, w] features must share C, got "
                         f"{tuple(query.shape)} and {tuple(support.shape)}")
    qn, c, h, w = query.shape
    s, _, hs, ws = support.shape
    stacked = query.transpose(0, 1).reshape(1, c, qn * h, w)
    corr = ops.correlation(stacked, support[None], "cosine", backend=backend).reshape(qn, h, w, s, hs, ws)
    similarity, match = corr.reshape(qn, h * w, s, hs * ws).max(dim=1)
    return RegionComparison(corr, similarity, match)


class RegionWeightNet(nn.Module):
    """The meta-learner: g = conv1×1(hidden→1)(ReLU(conv1×1(2C→hidden)([f_s; f_q]))) at every cell,
    w = sigmoid(g). ``regions`` (R) sets the initial bias of the last convolution to −ln(R − 1).

    The first convolution is linear in the concatenation, so it is applied to the S support and Qn query
    maps separately and the halves are summed per pair: exactly the convolution of each pair's
    concatenation, without building Qn·S concatenated maps.
    """

    def __init__(self, channels: int, hidden: int = 64, regions: int = 25):
        super().__init__()
        self.channels = channels
        self.conv1 = nn.Conv2d(2 * channels, hidden, 1)
        self.conv2 = nn.Conv2d(hidden, 1, 1)
        nn.init.constant_(self.conv2.bias, -math.log(max(regions - 1, 1)))

    def logits(self, query: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
        """g [Qn, S, h, w] for query [Qn, C, h, w] and support [S, C, h, w] features (same grid)."""
        if query.shape[1:] != support.shape[1:] or query.shape[1] != self.channels:
            raise ValueError(f"query [Qn, C, h, w] and support [S, C, h, w] must share C = {self.channels} and "
                             f"the grid, got {tuple(query.shape)} and {tuple(support.shape)}")
        c = self.channels
        w1 = self.conv1.weight[:, :, 0, 0]                                      # [hidden, 2C]: support, query
        from_support = torch.einsum("kc,schw->skhw", w1[:, :c], support)
        from_query = torch.einsum("kc,qchw->qkhw", w1[:, c:], query) + self.conv1.bias.view(1, -1, 1, 1)
        hidden = F.relu(from_support[None] + from_query[:, None])              # [Qn, S, hidden, h, w]
        return torch.einsum("k,qskhw->qshw", self.conv2.weight[0, :, 0, 0], hidden) + self.conv2.bias

    def forward(self, query: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
        """w [Qn, S, R] in (0, 1), R = h·w (row-major)."""
        return torch.sigmoid(self.logits(query, support).flatten(2))


@dataclass
class RCNOutput:
    """Everything RCN computes for an episode (n_way classes, K shots, Qn queries, R regions).

    Attributes:
        scores: [Qn, n_way] class scores, the mean over shots of ``pair_scores``.
        pair_scores: [Qn, n_way, K] y = Σ_r w_r·s_r per (query, support image).
        weights: [Qn, n_way, K, R] w_r.
        similarity: [Qn, n_way, K, R] s_r.
        match: [Qn, n_way, K, R] the query cell matched by each support region.
        correlation: [Qn, h, w, n_way·K, h, w] the cosines (supports ordered class, shot).
        grid: (h, w).
    """

    scores: torch.Tensor
    pair_scores: torch.Tensor
    weights: torch.Tensor
    similarity: torch.Tensor
    match: torch.Tensor
    correlation: torch.Tensor
    grid: tuple[int, int]


class RegionComparisonNetwork(FewShotClassifier):
    """RCN (module docstring).

    Args:
        backbone: "conv4" or "resnet12".
        hidden: channels of the meta-learner's hidden 1×1 convolution.
        grid: the feature grid (h, w); R = h·w regions.
        backend: the backend of :func:`fss_attr.ops.correlation` ("auto", "torch", "cpu", "cuda").
    """

    method = "rcn"

    def __init__(self, backbone: str = "conv4", hidden: int = 64, grid: tuple[int, int] = (5, 5),
                 backend: str = "auto"):
        super().__init__()
        self.config = {"backbone": backbone, "hidden": hidden, "grid": tuple(grid)}
        self.backbone = build_backbone(backbone, grid)
        self.weight_net = RegionWeightNet(self.backbone.out_channels, hidden, grid[0] * grid[1])
        self.backend = backend

    def explain_features(self, support: torch.Tensor, query: torch.Tensor) -> RCNOutput:
        """All intermediate quantities for support [n_way, K, C, h, w] and query [Qn, C, h, w] features."""
        check_episode_features(support, query)
        n_way, k = support.shape[:2]
        flat = support.flatten(0, 1)                                            # [S, C, h, w], S = n_way·K
        comparison = compare_regions(query, flat, self.backend)
        weights = self.weight_net(query, flat)                                  # [Qn, S, R]
        pair = (weights * comparison.similarity).sum(-1)                        # [Qn, S]
        shape = (query.shape[0], n_way, k)
        return RCNOutput(pair.reshape(shape).mean(-1), pair.reshape(shape), weights.unflatten(1, (n_way, k)),
                         comparison.similarity.unflatten(1, (n_way, k)), comparison.match.unflatten(1, (n_way, k)),
                         comparison.correlation, tuple(query.shape[-2:]))

    def classify_features(self, support: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        return self.explain_features(support, query).scores

    def loss(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean squared error between the class scores [Qn, n_way] and the one-hot labels [Qn]."""
        target = F.one_hot(check_labels(scores, labels), scores.shape[1]).to(scores.dtype)
        return F.mse_loss(scores, target)
