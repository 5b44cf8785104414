"""LiteMatcher: a training-free matching few-shot segmentation model on a real pretrained backbone.

DCAMA-style, without training: for each level (an EfficientNet-Lite0 block output), every query position
takes a softmax over all support positions of all shots of ``cos(q, k) / temperature``, and its
foreground probability is the softmax-weighted mean of the support mask (area-downsampled to the level
grid). The levels' probabilities are upsampled bilinearly to the image size and averaged; the logits are
``log(1 − p), log(p)``. The matching is exposed to AffEx as ``LevelFeatures(similarity="cosine",
scale=1/temperature)``, which is exactly the affinity the model softmaxes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from fss_attr.backbones import LiteBackbone, efficientnet_lite0
from fss_attr.episode import Episode
from fss_attr.levels import LevelFeatures
from fss_attr.models.base import MatchingAdapter
from fss_attr.torch_ops import similarity_scores

DEFAULT_BLOCKS = (4, 7, 10, 13, 15)  # strides 8, 16, 16, 32, 32; channels 40, 80, 112, 192, 320


@dataclass
class _Level:
    query: torch.Tensor    # [B, Q, C]
    support: torch.Tensor  # [B, M, C]
    mask: torch.Tensor     # [B, M] support-mask fraction per support position
    hw: tuple[int, int]


@dataclass
class LiteState:
    levels: list[_Level]
    n_shots: int
    image_size: tuple[int, int]


class LiteMatcher(MatchingAdapter):
    """Training-free matcher (see the module docstring).

    Args:
        backbone: a LiteBackbone; default: the pretrained EfficientNet-Lite0 with ``blocks``.
        blocks: EfficientNet-Lite0 blocks used as levels.
        temperature: softmax temperature of the cosine similarities.
    """

    def __init__(self, backbone: LiteBackbone | None = None, blocks: Sequence[int] = DEFAULT_BLOCKS,
                 temperature: float = 0.05):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        self.backbone = backbone if backbone is not None else efficientnet_lite0(blocks=blocks)
        self.temperature = float(temperature)

    @property
    def n_levels(self) -> int:
        return len(self.backbone.blocks)

    @torch.no_grad()
    def encode(self, episode: Episode) -> LiteState:
        b, n = episode.batch_size, episode.n_shots
        images = torch.cat([episode.query, episode.support_images.flatten(0, 1)])
        levels = []
        for f in self.backbone(images):
            c, h, w = f.shape[1:]
            q = f[:b].flatten(2).transpose(1, 2)                                             # [B, Q, C]
            s = f[b:].view(b, n, c, h * w).permute(0, 1, 3, 2).reshape(b, n * h * w, c)       # [B, M, C]
            m = F.interpolate(episode.support_masks.flatten(0, 1)[:, None].float(), size=(h, w), mode="area")
            levels.append(_Level(q.contiguous(), s.contiguous(), m.view(b, n * h * w), (h, w)))
        return LiteState(levels, n, episode.image_size)

    def levels(self, state: LiteState) -> list[LevelFeatures]:
        return [LevelFeatures(lv.query, lv.support, lv.hw, lv.hw, state.n_shots, "cosine", 1.0 / self.temperature)
                for lv in state.levels]

    def affinities(self, state: LiteState) -> list[torch.Tensor]:
        """The pre-softmax scores [B, Q, M] of each level, as the model computes them."""
        return [similarity_scores(lv.query, lv.support, "cosine", 1.0 / self.temperature) for lv in state.levels]

    @torch.no_grad()
    def decode(self, state: LiteState, ablate_level: int | None = None) -> torch.Tensor:
        probs = []
        for i, (lv, scores) in enumerate(zip(state.levels, self.affinities(state))):
            fg = torch.softmax(scores, dim=-1) @ lv.mask[..., None]                          # [B, Q, 1]
            fg = fg.view(-1, 1, *lv.hw)
            if i == ablate_level:
                fg = torch.zeros_like(fg)
            probs.append(F.interpolate(fg, size=state.image_size, mode="bilinear", align_corners=False))
        p = torch.stack(probs).mean(0).clamp(1e-6, 1 - 1e-6)                                 # [B, 1, H, W]
        return torch.cat([torch.log1p(-p), torch.log(p)], dim=1)
