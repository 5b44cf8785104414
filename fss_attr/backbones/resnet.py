"""Per-bottleneck features of a torchvision ResNet, as the HSNet family of FSS models reads them.

HSNet, DMTNet and DCAMA (ResNet backbones) match query and support at every bottleneck block, not only at
stage ends. Each block's feature is its output *before* the block's final ReLU (residual added, not yet
rectified); the next block receives the rectified value, so the network's own computation is unchanged.
"""
from __future__ import annotations

import torch
from torch import nn

STAGES = ("layer1", "layer2", "layer3", "layer4")


def bottleneck_count(backbone: nn.Module) -> tuple[int, ...]:
    """Number of residual blocks in each of the four stages (ResNet-50: (3, 4, 6, 3))."""
    return tuple(len(getattr(backbone, s)) for s in STAGES)


def _block_pre_relu(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A torchvision Bottleneck (or BasicBlock) applied to x, without its last ReLU."""
    out = block.relu(block.bn1(block.conv1(x)))
    if hasattr(block, "conv3"):
        out = block.relu(block.bn2(block.conv2(out)))
        out = block.bn3(block.conv3(out))
    else:
        out = block.bn2(block.conv2(out))
    identity = x if block.downsample is None else block.downsample(x)
    return out + identity


def bottleneck_features(backbone: nn.Module, images: torch.Tensor, first: int = 0) -> list[torch.Tensor]:
    """Pre-ReLU outputs of the residual blocks of a torchvision ResNet, from block index ``first`` on.

    Args:
        backbone: a torchvision ``ResNet`` (its fc/avgpool are not used).
        images: [K, 3, H, W] normalized images.
        first: 0-based index, over all stages, of the first block to return. ResNet-50 has 16 blocks
            (3, 4, 6, 3); ``first=3`` returns the 13 blocks of layer2–layer4, the ones HSNet and DCAMA match.

    Returns:
        One [K, C, h, w] tensor per returned block, in network order.
    """
    x = backbone.maxpool(backbone.relu(backbone.bn1(backbone.conv1(images))))
    feats, index = [], 0
    for stage in STAGES:
        for block in getattr(backbone, stage):
            pre = _block_pre_relu(block, x)
            if index >= first:
                feats.append(pre)
            x = torch.relu(pre)
            index += 1
    return feats
