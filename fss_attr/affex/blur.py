"""The Gaussian blur of the support masks used by the masked and signed AffEx variants.

A separable blur with reflect padding is linear along each axis, so it is applied as two matrix products,
``B_h X B_wᵀ``, with ``B`` [size, size] the 1-D blur of the identity (reflect padding folded in).
"""
from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from fss_attr.validation import check_blur


def gaussian_kernel1d(kernel_size: int, sigma: float, dtype=torch.float64, device=None) -> torch.Tensor:
    """Normalized 1-D Gaussian weights [kernel_size] centred on the middle tap."""
    x = torch.arange(kernel_size, dtype=torch.float64, device=device) - (kernel_size - 1) / 2
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return (g / g.sum()).to(dtype)


@lru_cache(maxsize=32)
def _blur_matrix_cpu(size: int, kernel_size: int, sigma: float) -> torch.Tensor:
    pad = kernel_size // 2
    eye = torch.eye(size, dtype=torch.float64).unsqueeze(1)                      # [size, 1, size]
    padded = F.pad(eye, (pad, pad), mode="reflect")
    cols = F.conv1d(padded, gaussian_kernel1d(kernel_size, sigma).view(1, 1, -1))  # [size(in), 1, size(out)]
    return cols[:, 0].T.contiguous()                                              # [out, in]


def blur_matrix(size: int, kernel_size: int, sigma: float, dtype=torch.float32, device=None) -> torch.Tensor:
    """[size, size] matrix of the 1-D Gaussian blur with reflect padding (rows: output positions)."""
    return _blur_matrix_cpu(size, kernel_size, float(sigma)).to(dtype=dtype, device=device)


def gaussian_blur(masks: torch.Tensor, kernel_size: int = 31, sigma: float = 50.0) -> torch.Tensor:
    """Blur [..., H, W] with a separable Gaussian, reflect padding; returns the same shape, float
    (float32 for bool/int inputs, else the input dtype).

    Raises ValueError when kernel_size is not a positive odd int or H, W are not larger than
    kernel_size // 2 (reflect padding needs that).
    """
    h, w = masks.shape[-2:]
    check_blur(kernel_size, sigma, (h, w))
    x = masks if masks.is_floating_point() else masks.to(torch.float32)
    bh = blur_matrix(h, kernel_size, sigma, x.dtype, x.device)
    bw = blur_matrix(w, kernel_size, sigma, x.dtype, x.device)
    return bh @ x @ bw.T
