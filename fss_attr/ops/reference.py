"""The literal AffEx of docs/affex.md, steps 1–4, one upsampled map per support position.

This is the test oracle: slow and memory-hungry by design (it upsamples every
column of P to the output size), kept independent of the fast paths. Only the
chunking over support positions (to bound memory) departs from the text, and it
does not change a single value.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def literal_probabilities(scores: torch.Tensor, softmax: bool, top_k: int) -> torch.Tensor:
    """Step 1: P [B, Q, M], softmax over all M jointly; with top_k > 0 only scores >= the k-th largest count."""
    m = scores.shape[-1]
    if 0 < top_k < m:
        kth = scores.sort(dim=-1, descending=True).values[..., top_k - 1: top_k]
        kept = scores >= kth
    else:
        kept = torch.ones_like(scores, dtype=torch.bool)
    if not softmax:
        return torch.where(kept, scores, torch.zeros_like(scores))
    shifted = scores - torch.where(kept, scores, torch.full_like(scores, -torch.inf)).amax(-1, keepdim=True)
    e = torch.where(kept, shifted.exp(), torch.zeros_like(scores))
    return e / e.sum(-1, keepdim=True)


def literal_support_attribution(scores: torch.Tensor, query_hw: tuple[int, int], region: torch.Tensor,
                                softmax: bool = True, top_k: int = 0, maps_per_chunk: int = 64) -> torch.Tensor:
    """Steps 1–4: a [B, M], the mean over R of each support position's normalised upsampled map.

    Args:
        scores: [B, Q, M] pre-softmax scores.
        query_hw: (hq, wq) with hq·wq = Q.
        region: [B, H, W] bool query region R.
        maps_per_chunk: how many of the M upsampled H×W maps exist at once.
    """
    b, q, m = scores.shape
    hq, wq = query_hw
    h, w = region.shape[-2:]
    p = literal_probabilities(scores, softmax, top_k)
    rf = region.to(p.dtype)
    out = torch.empty((b, m), dtype=p.dtype, device=p.device)
    for j0 in range(0, m, maps_per_chunk):
        pj = p[:, :, j0:j0 + maps_per_chunk].permute(0, 2, 1)                     # [B, mc, Q]
        mc = pj.shape[1]
        u = F.interpolate(pj.reshape(b * mc, 1, hq, wq), size=(h, w), mode="bilinear",
                          align_corners=False).reshape(b, mc, h, w)                # step 2: U_j
        u_norm = u / (u.sum(dim=(-2, -1), keepdim=True) + 1e-6)                     # step 3
        out[:, j0:j0 + mc] = (u_norm * rf[:, None]).sum(dim=(-2, -1)) / rf.sum(dim=(-2, -1))[:, None]  # step 4
    return out
