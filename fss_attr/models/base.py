"""The model-adapter protocol: what fss_attr needs from a matching-based few-shot segmentation model.

An adapter splits the model into ``encode`` (backbone and matching, once per episode) and ``decode`` (the
part after the matching, cheap to re-run), and exposes each level's matching as a LevelScores or
LevelFeatures. The paper's level weights (docs/affex.md) then come from re-running ``decode`` with one
level's contribution zeroed.
"""
from __future__ import annotations

import abc
from typing import Any, Sequence

import torch
from torch import nn

from fss_attr.data.episode import Episode
from fss_attr.affex.levels import LevelFeatures, LevelScores


class MatchingAdapter(nn.Module, abc.ABC):
    """Base class of model adapters.

    Subclasses implement ``encode``, ``decode`` and ``levels``. ``decode`` must give the model's own logits
    when ``ablate_level`` is None: capturing the levels must not change the model's outputs.
    """

    @property
    @abc.abstractmethod
    def n_levels(self) -> int:
        """L, the number of matching levels the adapter exposes."""

    @abc.abstractmethod
    def encode(self, episode: Episode) -> Any:
        """Run the backbone and the matching; returns a state object that ``decode`` and ``levels`` read."""

    @abc.abstractmethod
    def decode(self, state: Any, ablate_level: int | None = None) -> torch.Tensor:
        """Logits [B, 2, H, W] (background, foreground) at the episode's image size.

        With ``ablate_level = l``, level l's contribution (its coarse-mask channel) is zeroed first.
        """

    @abc.abstractmethod
    def levels(self, state: Any) -> Sequence[LevelScores | LevelFeatures]:
        """The L levels of matching of the encoded episode, in the order of ``ablate_level``."""

    def forward(self, episode: Episode) -> torch.Tensor:
        """Logits [B, 2, H, W] of the episode."""
        return self.decode(self.encode(episode))

    @torch.no_grad()
    def level_weights(self, state: Any, region: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor:
        """The paper's layer-ablation weights [B, L] float64: |Δ mean foreground logit over R| per level, summing to 1.

        Episodes where no ablation changes the logit get uniform weights.
        """
        logits = self.decode(state) if logits is None else logits
        r = region.to(torch.float64)
        size = r.flatten(1).sum(1).clamp_min(1)

        def fg_mean(lg):
            return (lg[:, 1].double() * r).flatten(1).sum(1) / size

        base = fg_mean(logits)
        deltas = torch.stack([(fg_mean(self.decode(state, ablate_level=l)) - base).abs()
                              for l in range(self.n_levels)], dim=1)
        total = deltas.sum(1, keepdim=True)
        uniform = torch.full_like(deltas, 1.0 / self.n_levels)
        return torch.where(total > 0, deltas / total.clamp_min(1e-30), uniform)
