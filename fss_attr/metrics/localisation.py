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
    """1.0 where the most attributed support pixel lies inside the evidence, else 0.0, per episode.

    The most attributed pixel is the first maximum in (n, y, x) index order, i.e. rank 0 of the stable
    descending ranking the perturbation metrics use.

    Returns:
        [B] float64 of 0.0 / 1.0.
    """
    ev = _check(attributions, evidence)
    top = attributions.flatten(1).argmax(1)
    return ev.flatten(1).gather(1, top[:, None])[:, 0].to(torch.float64)
