"""The training constraint of gradient-based similarity attention (Zheng et al.), as a loss module.

For a triplet (anchor, positive, negative) each image x gets its triplet-form attention M ∈ [0, 1]
(:meth:`GradientAttention.triplet_raw`, relu, bilinear upsampling, min-max per map; computed in closed
form and kept differentiable), is soft-masked where the attention is high,

    x* = x ⊙ (1 − σ(α (M − β)))          α, β learnable scalars,

and re-embedded; with the attended evidence removed, the model should no longer tell the positive from the
negative, so the loss is

    L = mean_b | ‖f*_a − f*_p‖ − ‖f*_a − f*_n‖ |.

The attention is differentiable with respect to the model's parameters (the closed form needs no second
backward pass), so L trains the model, α and β. Use it beside the model's metric-learning loss: on its own it
is also minimised by a mask that removes everything (then all f* are equal).
"""
from __future__ import annotations

import torch
from torch import nn

from fss_attr.affex.interp import upsample_bilinear
from fss_attr.similarity.explainers import GradientAttention, check_model
from fss_attr.similarity.model import EmbeddingModel
from fss_attr.validation import check_tensor


class AttentionConsistencyLoss(nn.Module):
    """L(model, xa, xp, xn) of the module docstring; ``alpha`` and ``beta`` are parameters of this module.

    Args:
        alpha: initial steepness α of the soft mask (default 10).
        beta: initial threshold β of the soft mask (default 0.5).
    """

    def __init__(self, alpha: float = 10.0, beta: float = 0.5):
        super().__init__()
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))
        self.beta = nn.Parameter(torch.tensor(float(beta)))
        self._attention = GradientAttention(form="triplet")

    def attention(self, model: EmbeddingModel, xa, xp, xn) -> torch.Tensor:
        """Differentiable attention maps [B, 3, H, W] in [0, 1] (anchor, positive, negative)."""
        a = model.features(torch.cat([xa, xp, xn]))
        raw, _ = self._attention.triplet_raw(model, *a.split(xa.shape[0]))
        up = upsample_bilinear(raw.clamp_min(0), tuple(xa.shape[-2:]))
        flat = up.flatten(2)
        lo, hi = flat.amin(2, keepdim=True), flat.amax(2, keepdim=True)
        return ((flat - lo) / (hi - lo).clamp_min(1e-12)).view_as(up)  # differentiable min-max per map

    def forward(self, model: EmbeddingModel, xa: torch.Tensor, xp: torch.Tensor, xn: torch.Tensor) -> torch.Tensor:
        """xa, xp, xn [B, 3, H, W] floating -> scalar loss."""
        check_model(model)
        for name, x in (("xa", xa), ("xp", xp), ("xn", xn)):
            check_tensor(name, x, ndim=4, floating=True, finite=True)
            if x.shape != xa.shape:
                raise ValueError(f"{name} must have xa's shape {tuple(xa.shape)}, got {tuple(x.shape)}")
        m = self.attention(model, xa, xp, xn)                                   # [B, 3, H, W]
        keep = 1 - torch.sigmoid(self.alpha * (m - self.beta))
        x = torch.stack([xa, xp, xn], 1) * keep[:, :, None]                     # [B, 3, 3, H, W]
        f = model(x.flatten(0, 1)).unflatten(0, (xa.shape[0], 3))               # [B, 3, D]
        d_ap = (f[:, 0] - f[:, 1]).norm(dim=-1)
        d_an = (f[:, 0] - f[:, 2]).norm(dim=-1)
        return (d_ap - d_an).abs().mean()
