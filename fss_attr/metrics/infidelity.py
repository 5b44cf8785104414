"""Infidelity (Yeh et al. 2019, as in captum's ``infidelity``) adapted to support-set attributions.

Perturbations I_j, j = 1..J, are Gaussian noise N(0, σ²) on the support RGB values ([N, 3, H, W] per
episode; the support masks and the query stay as they are). With f = mean softmax foreground probability
over the query region R and a = the attribution map [N, H, W] broadcast over the 3 RGB channels:

    Ia_j = Σ_{n,c,y,x} I_j[n,c,y,x] · a[n,y,x]        Δf_j = f(x) − f(x − I_j)
    infidelity      = mean_j (Ia_j − Δf_j)²
    infidelity_norm = mean_j (β·Ia_j − Δf_j)²,  β = Σ_j Ia_j·Δf_j / Σ_j Ia_j²  (β = 0 if every Ia_j = 0)

β is the scalar that best fits the attribution to the output changes, so the normalized form does not
change when the attribution is multiplied by a constant. Lower is better for both. Perturbations are
evaluated ``internal_batch_size`` per forward pass; the noise of perturbation j of episode e comes from its
own generator seeded with seed + e·J + j − 1, so batched and looped evaluation see the same noise. A call
uses the seeds seed … seed + B·J − 1: callers that evaluate batch after batch advance ``seed`` by B·J to keep
every draw independent (``fss-attr evaluate`` does).
"""
from __future__ import annotations

import torch

from fss_attr.data.episode import Episode
from fss_attr.metrics.perturbation import ORIGINAL, check_attributions, forward_supports, scorer
from fss_attr.validation import check_mask, check_positive, check_positive_int


def infidelity(adapter, episode: Episode, attributions: torch.Tensor, region: torch.Tensor,
               n_perturbations: int = 16, sigma: float = 0.1, seed: int = 0, internal_batch_size: int = 16,
               loop: bool = False, cache: dict | None = None, reuse_query: bool = True) -> dict[str, torch.Tensor]:
    """Infidelity and normalized infidelity of support attributions, per episode.

    Args:
        adapter: the model, ``adapter(episode) -> logits [B, 2, H, W]``.
        episode: B episodes.
        attributions: [B, N, H, W] floating.
        region: [B, H, W] bool query region R of f (non-empty).
        n_perturbations: J, noise draws per episode.
        sigma: noise standard deviation, in the units of the (normalized) support images.
        seed: base seed of the noise.
        internal_batch_size: perturbed support sets per forward pass; loop: one per forward pass.
        cache: optional dict shared by calls on the same episode batch and model (one per episode over many
            explainers): the perturbed supports do not depend on the attributions, so their logits are
            computed once (see :func:`fss_attr.metrics.perturbation.forward_supports`).
        reuse_query: the query encoded once for all the perturbed supports (same function).

    Returns:
        {"infidelity": [B], "infidelity_norm": [B]} float64.
    """
    attributions = check_attributions(attributions, episode)
    b = episode.batch_size
    region = check_mask("region", region, (b, *episode.image_size), episode.device)
    check_positive_int("n_perturbations", n_perturbations)
    check_positive("sigma", sigma)
    j_count = n_perturbations + 1          # item 0 of each episode: the original support (f(x))
    a64 = attributions.to(torch.float64)

    def noise_seed(e, j):
        return int(seed) + e * n_perturbations + j - 1

    def noise(e, j):
        """I_j of episode e, [N, 3, H, W] in the support images' dtype."""
        g = torch.Generator().manual_seed(noise_seed(e, j))
        images = episode.support_images[e]
        return (float(sigma) * torch.randn(images.shape, generator=g, dtype=torch.float64)).to(images)

    ia = torch.stack([torch.stack([(noise(e, j).to(torch.float64) * a64[e].unsqueeze(1)).sum().cpu()
                                   for j in range(1, j_count)]) for e in range(b)])

    def build(i):
        e, j = divmod(i, j_count)
        images = episode.support_images[e]
        return e, (images if j == 0 else images - noise(e, j)), episode.support_masks[e]

    def key(i):
        e, j = divmod(i, j_count)
        return ("state", ORIGINAL, e) if j == 0 else ("noise", noise_seed(e, j), float(sigma), e)

    f = forward_supports(adapter, episode, b * j_count, build, scorer(["confidence"], episode, region),
                         internal_batch_size, loop, key, cache, reuse_query)["confidence"].view(b, j_count).cpu()
    delta = f[:, :1] - f[:, 1:]
    infid = ((ia - delta) ** 2).mean(1)
    den = (ia ** 2).sum(1)
    beta = torch.where(den > 0, (ia * delta).sum(1) / den.clamp_min(1e-300), torch.zeros_like(den))
    infid_norm = ((beta[:, None] * ia - delta) ** 2).mean(1)
    dev = episode.device
    return {"infidelity": infid.to(dev), "infidelity_norm": infid_norm.to(dev)}
