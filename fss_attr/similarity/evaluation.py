"""Evaluation of similarity maps: deletion/insertion curves on the similarity score, and controlled pairs
with a known shared object for the pointing game.

Deletion/insertion: the pixels of one image x of a pair (x, partner) are ranked by x's map (descending,
stable: :func:`fss_attr.metrics.perturbation.pixel_ranks`); at step t of T = steps + 1 states,
k_t = round(t/steps · H·W) ranked pixels have moved (:func:`~fss_attr.metrics.perturbation.moved_count`)
between x and the zero substrate (the mean colour of normalised images): deletion sets them to zero,
insertion keeps only them. The score of a state is s(embed(x_state), embed(partner)); the partner never
changes. AUC by :func:`fss_attr.metrics.perturbation.auc` (trapezoid on x ∈ [0, 1]). States are embedded
``internal_batch_size`` per forward pass (``loop=True``: one per pass, the reference).
"""
from __future__ import annotations

import numpy as np
import torch

from fss_attr.backbones import imagenet_normalize
from fss_attr.metrics.perturbation import MODES, check_batch_size, chunks, moved_count, pixel_ranks
from fss_attr.similarity.explainers import check_model
from fss_attr.similarity.measures import similarity
from fss_attr.validation import check_tensor


@torch.no_grad()
def similarity_curves(model, x: torch.Tensor, partner: torch.Tensor, maps: torch.Tensor, mode: str = "deletion",
                      steps: int = 20, similarity_kind: str = "cosine", internal_batch_size: int = 32,
                      loop: bool = False) -> torch.Tensor:
    """Similarity along the deletion or insertion path of each pair (module docstring).

    Args:
        model: an :class:`~fss_attr.similarity.EmbeddingModel`.
        x: [B, 3, H, W] the images that are perturbed.
        partner: [B, 3, H, W] their partners (fixed).
        maps: [B, H, W] floating, x's maps (the ranking's source).
        mode: "deletion" or "insertion".
        steps: T − 1, the number of steps; internal_batch_size: states per forward pass.

    Returns:
        [B, steps + 1] float64.
    """
    check_model(model)
    check_tensor("x", x, ndim=4, floating=True)
    check_tensor("partner", partner, ndim=4, floating=True, device=x.device)
    check_tensor("maps", maps, ndim=3, floating=True, finite=True, device=x.device)
    if partner.shape[0] != x.shape[0] or tuple(maps.shape) != (x.shape[0], *x.shape[-2:]):
        raise ValueError(f"partner must be [B, 3, H', W'] and maps [B, H, W] for x {tuple(x.shape)}, got "
                         f"{tuple(partner.shape)} and {tuple(maps.shape)}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    size = 1 if loop else check_batch_size(internal_batch_size)
    b, _, h, w = x.shape
    ks = [moved_count(t, steps, 1.0, h * w) for t in range(steps + 1)]
    ranks = pixel_ranks(maps[:, None])[:, 0]                                   # [B, H, W]
    e_r = model(partner)
    items = [(i, k) for i in range(b) for k in ks]
    out = []
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    for chunk in chunks(len(items), size):
        idx = torch.tensor([items[i][0] for i in chunk], device=x.device)
        k = torch.tensor([items[i][1] for i in chunk], device=x.device).view(-1, 1, 1)
        moved = ranks[idx] < k
        keep = moved if mode == "insertion" else ~moved
        states = torch.where(keep[:, None], x[idx], zero)
        out.append(similarity(model(states), e_r[idx], similarity_kind).to(torch.float64))
    return torch.cat(out).view(b, steps + 1)


def background_index(seed: int) -> int:
    """Index into BACKGROUND_SOURCES of the background photo ``render_image(..., seed)`` draws (its first
    random draw; tests/test_similarity.py checks this against the rendered pixels)."""
    from fss_attr.data.textures import BACKGROUND_SOURCES

    return int(np.random.default_rng(seed).integers(len(BACKGROUND_SOURCES)))


def controlled_triplets(n: int, size: int = 128, seed: int = 0, n_distractors: int = 2,
                        distinct_backgrounds: bool = True) -> dict:
    """``n`` controlled triplets rendered by :func:`fss_attr.data.controlled.render_image`: an anchor and a
    positive showing an object of the same class (the shared object, its place known), and a negative whose
    object is of another class. With ``distinct_backgrounds`` the three images of a triplet have different
    background photos (image seeds are redrawn until they do), so the object is what the pair shares by
    construction; distractors of other classes are random, so one can still share a class with the other
    image of the pair.

    Returns:
        {"anchor", "positive", "negative": [n, 3, size, size] float32 ImageNet-normalised,
         "anchor_mask", "positive_mask": [n, size, size] bool object masks, "classes": list of n class names,
         "seeds": list of n (anchor, positive, negative) image seeds}.
    """
    from fss_attr.data.controlled import CLASSES, render_image

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    rng = np.random.default_rng(seed)
    out = {k: [] for k in ("anchor", "positive", "negative", "anchor_mask", "positive_mask", "classes", "seeds")}
    for _ in range(n):
        cls, other = (CLASSES[i] for i in rng.choice(len(CLASSES), size=2, replace=False))
        seeds = [int(s) for s in rng.integers(0, 2**31 - 1, size=3)]
        while distinct_backgrounds and len({background_index(s) for s in seeds}) < 3:
            seeds = [int(s) for s in rng.integers(0, 2**31 - 1, size=3)]
        imgs = [render_image(c, s, (size, size), n_distractors) for c, s in zip((cls, cls, other), seeds)]
        for key, im in zip(("anchor", "positive", "negative"), imgs):
            out[key].append(imagenet_normalize(im.image))
        out["anchor_mask"].append(imgs[0].object_mask)
        out["positive_mask"].append(imgs[1].object_mask)
        out["classes"].append(cls)
        out["seeds"].append(tuple(seeds))
    return {k: v if k in ("classes", "seeds") else torch.stack(v) for k, v in out.items()}
