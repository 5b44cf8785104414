"""LiteMatcher: the embedded default model, a training-free matcher on a real pretrained backbone.

A :class:`fss_attr.models.generic.FeatureMatcher` (DCAMA-style softmax matching of query and support
features, support-mask aggregation, levels averaged) on five blocks of the ImageNet-pretrained
EfficientNet-Lite0 that installs offline, with cosine similarity at temperature 0.05.
"""
from __future__ import annotations

from typing import Sequence

from fss_attr.backbones.efficientnet import LiteBackbone, efficientnet_lite0
from fss_attr.models.generic import FeatureMatcher

DEFAULT_BLOCKS = (4, 7, 10, 13, 15)  # strides 8, 16, 16, 32, 32; channels 40, 80, 112, 192, 320


class LiteMatcher(FeatureMatcher):
    """FeatureMatcher on EfficientNet-Lite0 (pretrained unless a backbone is given)."""

    def __init__(self, backbone: LiteBackbone | None = None, blocks: Sequence[int] = DEFAULT_BLOCKS,
                 temperature: float = 0.05):
        backbone = backbone if backbone is not None else efficientnet_lite0(blocks=blocks)
        super().__init__(backbone, len(backbone.blocks), "cosine", temperature)
