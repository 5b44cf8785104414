"""Bilinear interpolation as matrices, and the row weights of docs/affex.md (the identity).

``F.interpolate(x, size, mode="bilinear", align_corners=False)`` without
antialiasing is separable: ``up(x) = W_h x W_wᵀ`` with ``W_h`` [H, h] and
``W_w`` [W, w] the 1-D linear interpolation matrices built here.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def linear_interp_matrix(out_size: int, in_size: int, dtype=torch.float64, device=None) -> torch.Tensor:
    """The [out_size, in_size] matrix of 1-D linear upsampling (align_corners=False)."""
    eye = torch.eye(in_size, dtype=dtype, device=device).unsqueeze(0)  # [1, C=in, L=in]
    cols = F.interpolate(eye, size=out_size, mode="linear", align_corners=False)  # [1, in, out]
    return cols[0].transpose(0, 1).contiguous()


def row_weights(region: torch.Tensor, query_hw: tuple[int, int], dtype=torch.float32) -> torch.Tensor:
    """Row weights [B, 2, Q] for the two column sums of docs/affex.md (the identity).

    Args:
        region: [B, H, W] bool or {0,1} float, the query region R (non-empty per episode).
        query_hw: (hq, wq), the level's query grid; Q = hq * wq, row-major.
        dtype: dtype of the result.

    Returns:
        [B, 2, Q]: row 0 is ``vec(W_hᵀ R W_w) / |R|`` (so that its dot product with a
        column of P is the mean of the upsampled map over R), row 1 is
        ``vec(W_hᵀ 1 1ᵀ W_w)`` (the sum of the upsampled map over all pixels).
    """
    b, h, w = region.shape
    hq, wq = query_hw
    wh = linear_interp_matrix(h, hq, device=region.device)  # [H, hq]
    ww = linear_interp_matrix(w, wq, device=region.device)  # [W, wq]
    r = region.to(torch.float64)
    size = r.flatten(1).sum(1).clamp_min(1.0)  # empty regions are rejected by the caller
    r_w = (wh.T @ (r @ ww)).reshape(b, hq * wq) / size[:, None]
    c_w = torch.outer(wh.sum(0), ww.sum(0)).reshape(1, hq * wq).expand(b, -1)
    return torch.stack([r_w, c_w], dim=1).to(dtype).contiguous()


def upsample_bilinear(x: torch.Tensor, out_size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling (align_corners=False, no antialias) of [..., h, w] to [..., H, W]."""
    lead = x.shape[:-2]
    y = F.interpolate(x.reshape(-1, 1, *x.shape[-2:]), size=tuple(out_size), mode="bilinear", align_corners=False)
    return y.reshape(*lead, *out_size)
