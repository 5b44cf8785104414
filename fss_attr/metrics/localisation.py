"""Localisation of support attributions against known evidence (the controlled episodes'
``support_evidence``: the support pixels known to match the query object)."""
from __future__ import annotations

import torch

from fss_attr.validation import check_mask, check_tensor


def _check(attributions, evidence):
    check_tensor("attributions", attributions, ndim=4, floating=True, finite=True)
    return check_mask("evidence", evidence, tuple(attributions.shape), attributions.device)


def relevance_mass(attributions: torch.Tensor, evidence: torch.Tensor) -> torch.Tensor:
    """Share of the positive relevance that lies inside the evidence, per episode.

    mass = Σ_{evidence} a⁺ / Σ a⁺ with a⁺ = max(a, 0) (negative values carry no relevance). A map with no
    positive value counts as uniform: mass = |evidence| / (N·H·W). Higher is better, 1 at most.

    Args:
        attributions: [B, N, H, W] floating.
        evidence: [B, N, H, W] bool (or 0/1).

    Returns:
        [B] float64.
    """
    ev = _check(attributions, evidence)
    a = attributions.to(torch.float64).clamp_min(0).flatten(1)
    e = ev.flatten(1)
    total = a.sum(1)
    uniform = e.sum(1).to(torch.float64) / e.shape[1]
    return torch.where(total > 0, (a * e).sum(1) / total.clamp_min(1e-300), uniform)


def pointing_game(attributions: torch.Tensor, evidence: torch.Tensor) -> torch.Tensor:
    """The share of the most attributed support pixels that lie inside the evidence, per episode.

    Without ties this is the classic pointing game (Zhang et al., 2016): 1.0 when the maximum lies inside the
    evidence, else 0.0. When several pixels share the maximum (LIME's superpixel plateaus, an all-zero masked
    map, min-max saturation) the score is the fraction of the tied maxima inside the evidence, so it does not
    depend on the pixels' order (the resolution Quantus adopted, understandable-machine-intelligence-lab/
    Quantus#43); an all-zero map scores |evidence| / (N·H·W). Ties are exact equality with the maximum.

    Returns:
        [B] float64 in [0, 1].
    """
    ev = _check(attributions, evidence)
    flat = attributions.flatten(1)
    if flat.shape[1] == 0:
        return torch.zeros(flat.shape[0], dtype=torch.float64, device=flat.device)
    top = flat == flat.amax(1, keepdim=True)
    return (top & ev.flatten(1)).sum(1).to(torch.float64) / top.sum(1).to(torch.float64)
