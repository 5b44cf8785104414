"""Center-pivot 4D convolution (HSNet, Min et al. ICCV 2021) of a correlation tensor.

A 4D correlation x [B, C, ha, wa, hb, wb] (query grid ha×wa, support grid hb×wb) is convolved with a 4D kernel
that is non-zero only on its two "center-pivot" planes: a ka×ka kernel over the query dimensions at the centre
support offset, plus a kb×kb kernel over the support dimensions at the centre query offset. That is the sum of
two 2D convolutions:

    y[:, :, i, j, k, l] = conv1(x[:, :, :, :, s·k, s·l])[i, j] + conv2(x[:, :, i, j, :, :])[k, l]

with zero padding k//2 on every dimension, stride 1 over the query dimensions and stride s over the support
dimensions (conv1 reads the support positions 0, s, 2s, ...). Parameter names (``conv1``, ``conv2``) follow
the official implementation so that its checkpoints load.
"""
from __future__ import annotations

import torch
from fss_attr.validation import check_positive_int
from torch import nn


class CenterPivotConv4d(nn.Module):
    """Center-pivot 4D convolution [B, C_in, ha, wa, hb, wb] -> [B, C_out, ha, wa, ceil(hb/s), ceil(wb/s)].

    Args:
        in_channels, out_channels: C_in, C_out.
        kernel_size: odd k, the side of both 2D kernels (padding k // 2).
        support_stride: s, the stride over the support dimensions (the query dimensions keep stride 1).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, support_stride: int = 1):
        super().__init__()
        check_positive_int("kernel_size", kernel_size, odd=True)
        check_positive_int("support_stride", support_stride)
        pad = kernel_size // 2
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size, stride=1, padding=pad)
        self.conv2 = nn.Conv2d(in_channels, out_channels, kernel_size, stride=support_stride, padding=pad)
        self.support_stride = support_stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 6:
            raise ValueError(f"CenterPivotConv4d expects [B, C, ha, wa, hb, wb], got shape {tuple(x.shape)}")
        b, c, ha, wa, hb, wb = x.shape
        s = self.support_stride
        pivots = x[..., ::s, ::s]                                  # the support positions conv1 is evaluated at
        ph, pw = pivots.shape[-2:]
        y1 = self.conv1(pivots.permute(0, 4, 5, 1, 2, 3).reshape(b * ph * pw, c, ha, wa))
        y1 = y1.view(b, ph, pw, -1, ha, wa).permute(0, 3, 4, 5, 1, 2)
        y2 = self.conv2(x.permute(0, 2, 3, 1, 4, 5).reshape(b * ha * wa, c, hb, wb))
        y2 = y2.view(b, ha, wa, -1, ph, pw).permute(0, 3, 1, 2, 4, 5)
        return (y1 + y2).contiguous()
