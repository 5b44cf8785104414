"""Few-shot image classifiers: the shared interface, and the prototypical-network baseline.

A classifier embeds every image of an episode with its backbone (``features``: [B, 3, H, W] ->
[B, C, h, w]) and scores each query against each class from the features (``classify_features``:
support [n_way, K, C, h, w], query [Qn, C, h, w] -> [Qn, n_way], higher = more likely). ``loss`` is the
training loss of those scores; the prediction is their argmax.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fss_attr.backbones.fewshot import build_backbone
from fss_attr.validation import check_tensor


class FewShotClassifier(nn.Module):
    """Base class. Subclasses set ``self.backbone`` and ``self.config`` (the constructor's keyword
    arguments, for checkpoints) and implement ``classify_features`` and ``loss``."""

    method: str = ""

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] normalised images -> [B, C, h, w] features."""
        return self.backbone(images)

    def classify_features(self, support: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def episode_features(self, support: torch.Tensor, query: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features of an episode's images in one backbone pass: (support [n_way, K, C, h, w], query [Qn, C, h, w])."""
        check_episode_images(support, query)
        n_way, k = support.shape[:2]
        f = self.features(torch.cat([support.flatten(0, 1), query]))
        return f[: n_way * k].unflatten(0, (n_way, k)), f[n_way * k:]

    def forward(self, support: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """Scores [Qn, n_way] of query images [Qn, 3, H, W] against support images [n_way, K, 3, H, W]."""
        return self.classify_features(*self.episode_features(support, query))


def check_episode_images(support, query) -> None:
    check_tensor("support", support, ndim=5, floating=True, finite=True)
    check_tensor("query", query, ndim=4, floating=True, dtype=support.dtype, device=support.device, finite=True)
    if support.shape[2] != 3 or query.shape[1] != 3 or support.shape[-2:] != query.shape[-2:]:
        raise ValueError(f"support must be [n_way, K, 3, H, W] and query [Qn, 3, H, W] of one size, got "
                         f"{tuple(support.shape)} and {tuple(query.shape)}")


def check_episode_features(support, query) -> None:
    """support [n_way, K, C, h, w] and query [Qn, C, h, w] with the same C, h, w, dtype and device."""
    check_tensor("support features", support, ndim=5, floating=True, finite=True)
    check_tensor("query features", query, ndim=4, floating=True, dtype=support.dtype, device=support.device,
                 finite=True)
    if support.shape[2:] != query.shape[1:]:
        raise ValueError(f"support features [n_way, K, C, h, w] and query features [Qn, C, h, w] must share "
                         f"C, h, w: got {tuple(support.shape)} and {tuple(query.shape)}")
    if support.shape[0] < 2:
        raise ValueError(f"an episode needs n_way >= 2 classes, got support {tuple(support.shape)}")


def check_labels(scores: torch.Tensor, labels) -> torch.Tensor:
    check_tensor("labels", labels, ndim=1, device=scores.device)
    if labels.dtype != torch.int64 or labels.shape[0] != scores.shape[0]:
        raise ValueError(f"labels must be int64 [Qn] with Qn = {scores.shape[0]}, got {labels.dtype} "
                         f"{tuple(labels.shape)}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= scores.shape[1]):
        raise ValueError(f"labels must lie in 0..{scores.shape[1] - 1}")
    return labels


class PrototypicalNetwork(FewShotClassifier):
    """Prototypical network (Snell et al., 2017): a class's prototype is the mean of its support features
    (flattened C·h·w); the score of a query is minus its squared Euclidean distance to the prototype; the
    loss is the cross-entropy of those scores."""

    method = "protonet"

    def __init__(self, backbone: str = "conv4", grid: tuple[int, int] = (5, 5)):
        super().__init__()
        self.config = {"backbone": backbone, "grid": tuple(grid)}
        self.backbone = build_backbone(backbone, grid)

    def classify_features(self, support: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        check_episode_features(support, query)
        prototypes = support.flatten(2).mean(1)                       # [n_way, D]
        return -torch.cdist(query.flatten(1), prototypes).pow(2)     # [Qn, n_way]

    def loss(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(scores, check_labels(scores, labels))
