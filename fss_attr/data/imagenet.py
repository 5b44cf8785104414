"""ImageNet colour statistics: the normalization every image of an episode carries (zero is the mean colour)."""
from __future__ import annotations

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_normalize(x: torch.Tensor) -> torch.Tensor:
    """[..., 3, H, W] RGB in [0, 1] -> ImageNet-normalized (same shape and dtype)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (x - mean) / std


def imagenet_denormalize(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`imagenet_normalize`: ImageNet-normalized [..., 3, H, W] -> RGB (about [0, 1])."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return x * std + mean
