"""The Gaussian blur of the support masks used by the masked and signed AffEx variants."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def gaussian_kernel1d(kernel_size: int, sigma: float, dtype=torch.float32, device=None) -> torch.Tensor:
    """Normalised 1-D Gaussian weights [kernel_size] centred on the middle tap."""
    x = torch.arange(kernel_size, dtype=torch.float64, device=device) - (kernel_size - 1) / 2
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return (g / g.sum()).to(dtype)


def gaussian_blur(masks: torch.Tensor, kernel_size: int = 31, sigma: float = 50.0) -> torch.Tensor:
    """Blur [..., H, W] with a separable Gaussian, reflect padding; returns the same shape, float.

    Raises ValueError when kernel_size is not a positive odd int or H, W are not larger than
    kernel_size // 2 (reflect padding needs that).
    """
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"blur_kernel must be a positive odd int, got {kernel_size!r}")
    if not sigma > 0:
        raise ValueError(f"blur_sigma must be > 0, got {sigma!r}")
    h, w = masks.shape[-2:]
    pad = kernel_size // 2
    if pad >= h or pad >= w:
        raise ValueError(f"blur_kernel={kernel_size} needs support masks larger than {pad}x{pad} "
                         f"for reflect padding, got {h}x{w}; choose a smaller blur_kernel")
    x = masks.reshape(-1, 1, h, w).to(torch.float32 if not masks.is_floating_point() else masks.dtype)
    g = gaussian_kernel1d(kernel_size, sigma, x.dtype, x.device)
    x = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    x = F.conv2d(x, g.view(1, 1, 1, -1))
    x = F.conv2d(x, g.view(1, 1, -1, 1))
    return x.reshape(masks.shape)
