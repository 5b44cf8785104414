"""The generic adapter: any backbone that returns per-level feature maps becomes a matching FSS model.

You give the backbone (``backbone(images [K, 3, H, W]) -> list of [K, C_l, h_l, w_l]``) and say how
levels are matched (similarity "cosine" or "dot", a temperature); fss_attr supplies the rest. For each
level, every query position takes a softmax over all support positions of all shots of
``sim(q, k) / temperature``, and its foreground probability is the softmax-weighted mean of the support
mask (area-downsampled to the level grid). The levels' probabilities are upsampled bilinearly to the
image size and averaged (``level_weights`` to weight them); the logits are ``log(1 − p), log(p)``. The
matching is exposed to AffEx as ``LevelFeatures(similarity, scale=1/temperature)``: exactly the affinity
the model softmaxes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F

from torch import nn

from fss_attr.data.episode import Episode
from fss_attr.affex.levels import LevelFeatures
from fss_attr.models.base import MatchingAdapter
from fss_attr.ops.torch_twin import similarity_scores

@dataclass
class _Level:
    query: torch.Tensor    # [B, Q, C]
    support: torch.Tensor  # [B, M, C]
    mask: torch.Tensor     # [B, M] support-mask fraction per support position
    hw: tuple[int, int]


@dataclass
class MatcherState:
    levels: list[_Level]
    n_shots: int
    image_size: tuple[int, int]


def backbone_feature_maps(out, k: int) -> list[torch.Tensor]:
    """A backbone's output as a list of [K, C, h, w] feature maps: a dict's values in insertion order, a list or
    tuple as is, one tensor as one level. Raises TypeError saying what was returned otherwise."""
    if isinstance(out, torch.Tensor):
        maps, what = [out], "a tensor"
    elif isinstance(out, Mapping):
        maps, what = list(out.values()), f"a dict with keys {list(out)}"
    elif isinstance(out, (list, tuple)):
        maps, what = list(out), f"a {type(out).__name__} of {len(out)} items"
    else:
        raise TypeError(f"the backbone returned {type(out).__name__}; expected a list/tuple or dict of "
                        f"[K, C, h, w] feature maps, or one such tensor")
    for i, f in enumerate(maps):
        if not isinstance(f, torch.Tensor) or f.dim() != 4 or f.shape[0] != k:
            got = tuple(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
            raise TypeError(f"the backbone returned {what}; item {i} is {got}, expected a [K={k}, C, h, w] tensor")
    return maps


class FeatureMatcher(MatchingAdapter):
    """Matching FSS model around any feature backbone (see the module docstring).

    Args:
        backbone: nn.Module mapping images [K, 3, H, W] to L feature maps [K, C_l, h_l, w_l]: a list or tuple
            (e.g. timm's ``features_only``), a dict (e.g. torchvision's ``create_feature_extractor``; its values
            in insertion order), or one tensor (one level).
        n_levels: L (how many maps the backbone returns).
        similarity: "cosine" or "dot".
        temperature: softmax temperature (the affinity is sim / temperature).
        level_weights: optional L non-negative weights for fusing the levels (default: mean).
    """

    def __init__(self, backbone: nn.Module, n_levels: int, similarity: str = "cosine", temperature: float = 0.05,
                 level_weights: Sequence[float] | None = None):
        super().__init__()
        if similarity not in ("cosine", "dot"):
            raise ValueError(f"similarity must be 'cosine' or 'dot', got {similarity!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        if not isinstance(n_levels, int) or n_levels < 1:
            raise ValueError(f"n_levels must be a positive int, got {n_levels!r}")
        w = torch.full((n_levels,), 1.0 / n_levels) if level_weights is None else torch.as_tensor(
            level_weights, dtype=torch.float32)
        if w.shape != (n_levels,) or bool((w < 0).any()) or not float(w.sum()) > 0:
            raise ValueError(f"level_weights must be {n_levels} non-negative numbers with a positive sum")
        self.backbone = backbone
        self.similarity = similarity
        self.temperature = float(temperature)
        self._n_levels = n_levels
        self.register_buffer("fuse_weights", w / w.sum(), persistent=False)

    @property
    def n_levels(self) -> int:
        return self._n_levels

    def encode(self, episode: Episode) -> MatcherState:
        b, n = episode.batch_size, episode.n_shots
        images = torch.cat([episode.query, episode.support_images.flatten(0, 1)])
        levels = []
        feats = backbone_feature_maps(self.backbone(images), images.shape[0])
        if len(feats) != self.n_levels:
            raise ValueError(f"the backbone returned {len(feats)} feature maps, expected n_levels={self.n_levels}")
        for f in feats:
            c, h, w = f.shape[1:]
            q = f[:b].flatten(2).transpose(1, 2)                                             # [B, Q, C]
            s = f[b:].view(b, n, c, h * w).permute(0, 1, 3, 2).reshape(b, n * h * w, c)       # [B, M, C]
            m = F.interpolate(episode.support_masks.flatten(0, 1)[:, None].float(), size=(h, w), mode="area")
            levels.append(_Level(q.contiguous(), s.contiguous(), m.view(b, n * h * w), (h, w)))
        return MatcherState(levels, n, episode.image_size)

    def levels(self, state: MatcherState) -> list[LevelFeatures]:
        return [LevelFeatures(lv.query, lv.support, lv.hw, lv.hw, state.n_shots, self.similarity,
                              1.0 / self.temperature) for lv in state.levels]

    def affinities(self, state: MatcherState) -> list[torch.Tensor]:
        """The pre-softmax scores [B, Q, M] of each level, as the model computes them."""
        return [similarity_scores(lv.query, lv.support, self.similarity, 1.0 / self.temperature)
                for lv in state.levels]

    def decode(self, state: MatcherState, ablate_level: int | None = None) -> torch.Tensor:
        probs = []
        for i, (lv, scores) in enumerate(zip(state.levels, self.affinities(state))):
            fg = torch.softmax(scores, dim=-1) @ lv.mask[..., None]                          # [B, Q, 1]
            fg = fg.view(-1, 1, *lv.hw)
            if i == ablate_level:
                fg = torch.zeros_like(fg)
            probs.append(F.interpolate(fg, size=state.image_size, mode="bilinear", align_corners=False))
        w = self.fuse_weights.to(probs[0].dtype).view(-1, 1, 1, 1, 1)
        p = (torch.stack(probs) * w).sum(0).clamp(1e-6, 1 - 1e-6)                           # [B, 1, H, W]
        return torch.cat([torch.log1p(-p), torch.log(p)], dim=1)
