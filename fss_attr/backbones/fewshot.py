"""The two backbones of the few-shot classification literature, trained from scratch: Conv4 and ResNet-12.

Both map [B, 3, 84, 84] ImageNet-normalised images to a 5×5 feature grid (four 2× max-pools: 84 → 42 →
21 → 10 → 5); other input sizes are average-pooled to ``grid`` so the region count stays fixed. Weights and
activations are kept channels-last (about 1.5× faster convolutions on CPU); features computed under bfloat16
autocast come back as float32.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fss_attr.validation import check_grid, check_tensor

BACKBONES = ("conv4", "resnet12")


def _conv_bn(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out)]


class Conv4(nn.Module):
    """Conv4-64: four blocks of (3×3 conv, batch norm, ReLU, 2×2 max-pool), 64 channels each.

    Output [B, 64, gh, gw], non-negative (ReLU then max-pool).
    """

    def __init__(self, channels: int = 64, grid: tuple[int, int] = (5, 5)):
        super().__init__()
        layers, c_in = [], 3
        for _ in range(4):
            layers += _conv_bn(c_in, channels) + [nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c_in = channels
        self.body = nn.Sequential(*layers)
        self.out_channels = channels
        self.grid = check_grid("grid", tuple(grid))
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _to_grid(self.body(_check_images(x)), self.grid)


class ResBlock12(nn.Module):
    """A ResNet-12 block: three (3×3 conv, batch norm) with leaky ReLU between, a 1×1 conv shortcut,
    leaky ReLU after the sum, then a 2×2 max-pool."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.body = nn.Sequential(*_conv_bn(c_in, c_out), nn.LeakyReLU(0.1, inplace=True),
                                  *_conv_bn(c_out, c_out), nn.LeakyReLU(0.1, inplace=True),
                                  *_conv_bn(c_out, c_out))
        self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(F.leaky_relu(self.body(x) + self.shortcut(x), 0.1))


class ResNet12(nn.Module):
    """ResNet-12 with widths (64, 160, 320, 640). Output [B, 640, gh, gw]."""

    def __init__(self, widths: tuple[int, ...] = (64, 160, 320, 640), grid: tuple[int, int] = (5, 5)):
        super().__init__()
        blocks, c_in = [], 3
        for w in widths:
            blocks.append(ResBlock12(c_in, w))
            c_in = w
        self.body = nn.Sequential(*blocks)
        self.out_channels = widths[-1]
        self.grid = check_grid("grid", tuple(grid))
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _to_grid(self.body(_check_images(x)), self.grid)


def build_backbone(name: str, grid: tuple[int, int] = (5, 5)) -> nn.Module:
    """"conv4" or "resnet12", randomly initialised, with output grid ``grid``."""
    if name == "conv4":
        return Conv4(grid=grid)
    if name == "resnet12":
        return ResNet12(grid=grid)
    raise ValueError(f"backbone must be one of {BACKBONES}, got {name!r}")


MIN_IMAGE_SIDE = 16   # four 2× poolings leave at least one cell


def _check_images(x) -> torch.Tensor:
    check_tensor("images", x, ndim=4, floating=True, finite=True)
    if x.shape[1] != 3 or min(x.shape[-2:]) < MIN_IMAGE_SIDE:
        raise ValueError(f"images must be [B, 3, H, W] with H, W >= {MIN_IMAGE_SIDE}, got {tuple(x.shape)}")
    return x.contiguous(memory_format=torch.channels_last)


def _to_grid(f: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """[B, C, h, w] -> [B, C, gh, gw] float32, contiguous."""
    f = f if tuple(f.shape[-2:]) == grid else F.adaptive_avg_pool2d(f, grid)
    return f.float().contiguous() if f.dtype != torch.float64 else f.contiguous()
