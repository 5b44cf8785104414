"""A linear probe on a frozen backbone's feature map: the small classifier of the cue study.

:class:`LinearProbe` average-pools a feature map, standardises the pooled features with the training set's mean
and standard deviation, and applies a linear layer; it is fitted as L2-regularised multinomial logistic
regression (a convex problem) by full-batch L-BFGS from zero weights, so a fit is deterministic.
:class:`ProbedClassifier` puts it on top of a backbone: RGB images in [0, 1] -> logits.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from fss_attr.validation import check_nonnegative, check_tensor


class LinearProbe(nn.Module):
    """features [B, C, h, w] -> logits [B, K]: global average pool, standardise, linear.

    Attributes (buffers and layer): ``mean`` [C], ``std`` [C] (the training features' statistics, std floored
    at 1e-6), ``linear`` (C -> K).
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, linear: nn.Linear):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.linear = linear

    def logits_from_pooled(self, pooled: torch.Tensor) -> torch.Tensor:
        """[B, C] pooled features -> [B, K]."""
        return self.linear((pooled - self.mean) / self.std)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.logits_from_pooled(features.mean((2, 3)))

    @classmethod
    def fit(cls, pooled: torch.Tensor, labels: torch.Tensor, n_classes: int, weight_decay: float = 1e-3,
            max_iter: int = 300) -> "LinearProbe":
        """Fit on pooled features [N, C] float and labels [N] int64 in 0..n_classes-1.

        Minimises mean cross-entropy + ``weight_decay`` · ||W||² (the bias is not penalised).
        """
        check_tensor("pooled", pooled, ndim=2, floating=True, finite=True)
        check_tensor("labels", labels, ndim=1, dtype=torch.int64)
        if labels.shape[0] != pooled.shape[0] or pooled.shape[0] < 2:
            raise ValueError(f"pooled [N, C] and labels [N] need the same N >= 2, got {tuple(pooled.shape)} and "
                             f"{tuple(labels.shape)}")
        if int(labels.min()) < 0 or int(labels.max()) >= n_classes:
            raise ValueError(f"labels must lie in 0..{n_classes - 1}")
        check_nonnegative("weight_decay", weight_decay)
        pooled = pooled.detach()
        linear = nn.Linear(pooled.shape[1], n_classes, dtype=pooled.dtype, device=pooled.device)
        nn.init.zeros_(linear.weight)
        nn.init.zeros_(linear.bias)
        probe = cls(pooled.mean(0), pooled.std(0).clamp_min(1e-6), linear)
        opt = torch.optim.LBFGS(linear.parameters(), max_iter=max_iter, tolerance_grad=1e-9,
                                tolerance_change=1e-12, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = probe.loss(pooled, labels, weight_decay)
            loss.backward()
            return loss

        threads = torch.get_num_threads()
        if pooled.device.type == "cpu":
            torch.set_num_threads(1)     # a tiny problem: thread hand-offs would cost more than the arithmetic
        try:
            with torch.enable_grad():
                opt.step(closure)
        finally:
            torch.set_num_threads(threads)
        return probe

    def loss(self, pooled: torch.Tensor, labels: torch.Tensor, weight_decay: float) -> torch.Tensor:
        """The fitted objective: mean cross-entropy + weight_decay · ||W||²."""
        penalty = weight_decay * self.linear.weight.square().sum()
        return F.cross_entropy(self.logits_from_pooled(pooled), labels) + penalty


class ProbedClassifier(nn.Module):
    """RGB images [B, 3, H, W] in [0, 1] -> logits [B, K]: ``head(features(images))``.

    Args:
        features: images -> feature map [B, C, h, w] (e.g. a frozen backbone block, input normalization inside).
        head: a :class:`LinearProbe` (or any feature map -> logits module).
    """

    def __init__(self, features: Callable[[torch.Tensor], torch.Tensor], head: nn.Module):
        super().__init__()
        self.features = features
        self.head = head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))
