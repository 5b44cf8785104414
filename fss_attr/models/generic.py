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
from fss_attr.validation import check_choice, check_positive, check_positive_int

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
        check_choice("similarity", similarity, ("cosine", "dot"))
        check_positive("temperature", temperature)
        check_positive_int("n_levels", n_levels)
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
        self.check_episode(episode, parameters=False)      # any backbone: it may cast its input
        images = torch.cat([episode.query, episode.support_images.flatten(0, 1)])
        feats = self._check_feats(backbone_feature_maps(self.backbone(images), images.shape[0]))
        b = episode.batch_size
        return self._state(episode, [f[:b] for f in feats], [f[b:] for f in feats])

    def _check_feats(self, feats):
        if len(feats) != self.n_levels:
            raise ValueError(f"the backbone returned {len(feats)} feature maps, expected n_levels={self.n_levels}")
        return feats

    def _state(self, episode: Episode, query_feats, support_feats) -> MatcherState:
        """The state from per-level query [B, C, h, w] and support [B·N, C, h, w] feature maps."""
        b, n = episode.batch_size, episode.n_shots
        levels = []
        for fq, fs in zip(query_feats, support_feats):
            c, h, w = fs.shape[1:]
            q = fq.flatten(2).transpose(1, 2)                                                # [B, Q, C]
            s = fs.reshape(b, n, c, h * w).permute(0, 1, 3, 2).reshape(b, n * h * w, c)       # [B, M, C]
            m = F.interpolate(episode.support_masks.flatten(0, 1)[:, None].to(fs.dtype), size=(h, w), mode="area")
            levels.append(_Level(q.contiguous(), s.contiguous(), m.view(b, n * h * w), (h, w)))
        return MatcherState(levels, n, episode.image_size)

    def query_features(self, query: torch.Tensor) -> list[torch.Tensor]:
        """The backbone's L feature maps [B, C_l, h_l, w_l] of the query images [B, 3, H, W]."""
        return list(self._check_feats(backbone_feature_maps(self.backbone(query), query.shape[0])))

    def forward_with_query(self, episode: Episode, features, index: torch.Tensor) -> torch.Tensor:
        """Logits of ``episode``, the backbone run on its support images only (query features reused)."""
        self.check_episode(episode, parameters=False)      # any backbone: it may cast its input
        images = episode.support_images.flatten(0, 1)
        support = self._check_feats(backbone_feature_maps(self.backbone(images), images.shape[0]))
        return self.decode(self._state(episode, [f[index] for f in features], support))

    def levels(self, state: MatcherState) -> list[LevelFeatures]:
        return [LevelFeatures(lv.query, lv.support, lv.hw, lv.hw, state.n_shots, self.similarity,
                              1.0 / self.temperature) for lv in state.levels]

    def affinities(self, state: MatcherState) -> list[torch.Tensor]:
        """The pre-softmax scores [B, Q, M] of each level, as the model computes them."""
        return [similarity_scores(lv.query, lv.support, self.similarity, 1.0 / self.temperature)
                for lv in state.levels]

    def _level_probs(self, state: MatcherState) -> list[torch.Tensor]:
        """Each level's foreground probability upsampled to the image size, [B, 1, H, W]."""
        probs = []
        for lv, scores in zip(state.levels, self.affinities(state)):
            fg = (torch.softmax(scores, dim=-1) @ lv.mask[..., None]).view(-1, 1, *lv.hw)     # [B, 1, h, w]
            probs.append(F.interpolate(fg, size=state.image_size, mode="bilinear", align_corners=False))
        return probs

    def _logits(self, weighted: torch.Tensor) -> torch.Tensor:
        p = weighted.sum(0).clamp(1e-6, 1 - 1e-6)                                           # [B, 1, H, W]
        return torch.cat([torch.log1p(-p), torch.log(p)], dim=1)

    def decode(self, state: MatcherState, ablate_level: int | None = None) -> torch.Tensor:
        probs = self._level_probs(state)
        if ablate_level is not None:
            probs[ablate_level] = torch.zeros_like(probs[ablate_level])
        w = self.fuse_weights.to(probs[0].dtype).view(-1, 1, 1, 1, 1)
        return self._logits(torch.stack(probs) * w)

    def iter_ablations(self, state: MatcherState, levels=None, batch_size: int | None = None):
        """The ablated logits from one pass of the matching: ablation l only zeroes level l's upsampled
        probability in the fused sum, so the softmaxes run once (not L + 1 times) and each ablation is the
        same sum with term l set to zero (the same numbers as ``decode(state, l)``)."""
        levels = list(range(self.n_levels)) if levels is None else [int(l) for l in levels]
        weighted = torch.stack(self._level_probs(state))
        weighted = weighted * self.fuse_weights.to(weighted.dtype).view(-1, 1, 1, 1, 1)         # [L, B, 1, H, W]
        zero = torch.zeros_like(weighted[0])
        for l in levels:
            terms = weighted.clone()
            terms[l] = zero
            yield [l], self._logits(terms)[None]
