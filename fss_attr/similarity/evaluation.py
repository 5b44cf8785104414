"""Evaluation of similarity maps: deletion/insertion curves on the similarity score, the pointing game, and
controlled triplets whose shared object is known.

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

from fss_attr.data.imagenet import imagenet_normalize
from fss_attr.metrics.localisation import pointing_game, relevance_mass
from fss_attr.metrics.perturbation import MODES, auc, check_batch_size, chunks, moved_count, pixel_ranks
from fss_attr.similarity.explainers import GradientAttention, check_model, default_methods
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
    check_tensor("x", x, ndim=4, floating=True, finite=True)
    check_tensor("partner", partner, ndim=4, floating=True, device=x.device, finite=True)
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


TRIPLET = "gradient attention (triplet)"


def pair_maps(model, xa: torch.Tensor, xp: torch.Tensor, xn: torch.Tensor | None = None,
              similarity_kind: str = "cosine", whole_triplet: bool = False
              ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Every method's maps of the pairs (xa[b], xp[b]), xa, xp [B, 3, H, W]: the explainers of
    :func:`~fss_attr.similarity.explainers.default_methods` and, given the negatives xn, the triplet form of
    gradient attention (its anchor and positive maps).

    Returns:
        (maps: name -> [B, 2, H, W] float32 (the anchor's map, the positive's), scores: name -> [B] the explained
        score: s(xa, xp), or wᵀe_a for the triplet form). With ``whole_triplet`` the triplet form keeps all
        three: maps [B, 3, H, W] (anchor, positive, negative) and scores [B, 3] (wᵀe of each image).
    """
    maps, scores = {}, {}
    for name, method in default_methods(similarity_kind).items():
        ex = method.explain(model, xa, xp)
        maps[name], scores[name] = ex.maps, ex.scores
    if xn is not None:
        ex = GradientAttention(form="triplet").explain_triplets(model, xa, xp, xn)
        maps[TRIPLET], scores[TRIPLET] = (ex.maps, ex.scores) if whole_triplet else (ex.maps[:, :2], ex.scores[:, 0])
    return maps, scores


def pair_metrics(model, x: torch.Tensor, partner: torch.Tensor, maps: torch.Tensor, objects: torch.Tensor,
                 distractors: torch.Tensor | None = None, steps: int = 16, similarity_kind: str = "cosine",
                 internal_batch_size: int = 32) -> dict[str, torch.Tensor]:
    """Per-map scores of the maps of images x [B, 3, H, W] explained against ``partner`` [B, 3, H, W].

    Args:
        maps: [B, H, W] floating, x's maps.
        objects: [B, H, W] bool, the shared object in x (the pointing game's evidence).
        distractors: optional [B, H, W] bool, objects in x that the partner does not show.

    Returns:
        {"dauc", "iauc": area under the similarity along deletion / insertion (:func:`similarity_curves`,
        ``steps`` steps; lower DAUC and higher IAUC are better), "pointing": 1.0 where the map's maximum lies on
        the object (the share of tied maxima on it when several pixels share the maximum), "mass": the share
        of the map on the object (:mod:`fss_attr.metrics.localisation`), and with
        ``distractors`` "on_distractor": 1.0 where the maximum lies on a distractor} -> each [B] float64.
    """
    out = {}
    for key, mode in (("dauc", "deletion"), ("iauc", "insertion")):
        out[key] = auc(similarity_curves(model, x, partner, maps, mode, steps, similarity_kind, internal_batch_size))
    out["pointing"] = pointing_game(maps[:, None], objects[:, None])
    out["mass"] = relevance_mass(maps[:, None], objects[:, None])
    if distractors is not None:
        out["on_distractor"] = pointing_game(maps[:, None], distractors[:, None])
    return out


MAX_DISTRACTORS = 2  # per image: 2 objects + 3 images × 2 distractors use the 8 classes once each


def compose_image(class_name: str, background_name: str, distractor_classes, size: tuple[int, int],
                  rng: np.random.Generator):
    """An object of ``class_name`` (shape and texture crop from :func:`fss_attr.data.controlled.render_image`)
    on a crop of the photo ``background_name``, with one distractor object per class of ``distractor_classes``
    placed where it overlaps the object least.

    Returns:
        (image [3, H, W] float32 RGB in [0, 1], object mask [H, W] bool, distractor mask [H, W] bool).
    """
    from fss_attr.data.controlled import blob_mask, render_image
    from fss_attr.data.textures import background, class_texture, random_crop

    rendered = render_image(class_name, int(rng.integers(2**31 - 1)), size, n_distractors=0)
    obj = rendered.object_mask.numpy()
    canvas = random_crop(background(background_name), size, rng, scale=(0.5, 1.0))
    distractors = np.zeros(size, dtype=bool)
    for name in distractor_classes:
        blob = min((blob_mask(size, rng, radius=(0.1, 0.18)) for _ in range(4)), key=lambda m: int((m & obj).sum()))
        blob &= ~obj
        canvas[blob] = random_crop(class_texture(name), size, rng)[blob]
        distractors |= blob
    canvas[obj] = rendered.image.permute(1, 2, 0).numpy()[obj]
    return torch.from_numpy(canvas).permute(2, 0, 1).contiguous(), rendered.object_mask, torch.from_numpy(distractors)


ROLES = ("anchor", "positive", "negative")


def controlled_triplets(n: int, size: int = 128, seed: int = 0, n_distractors: int = MAX_DISTRACTORS) -> dict:
    """``n`` controlled triplets built from the controlled episodes' objects (:func:`compose_image`).

    The anchor and the positive show an object of the same class (the shared object, its place known); the
    negative shows an object of another class. Within a triplet the three background photos differ and every
    distractor has a class of its own (no other image of the triplet shows it, and none is the shared class),
    so the object is the only content the anchor and the positive share. Deterministic from ``seed``.

    Returns:
        {"anchor", "positive", "negative": [n, 3, size, size] float32 ImageNet-normalised,
         "anchor_mask", "positive_mask", "negative_mask": [n, size, size] bool object masks,
         "anchor_distractors", "positive_distractors", "negative_distractors": [n, size, size] bool,
         "classes": list of n (shared class, negative's class), "distractor_classes": list of n triples (one
         tuple of classes per image), "backgrounds": list of n triples of background photo names}.
    """
    from fss_attr.data.controlled import CLASSES
    from fss_attr.data.textures import BACKGROUND_SOURCES

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 16:
        raise ValueError(f"size must be an int >= 16, got {size!r}")
    if isinstance(n_distractors, bool) or not isinstance(n_distractors, int) \
            or not 0 <= n_distractors <= MAX_DISTRACTORS:
        raise ValueError(f"n_distractors must be an int in 0..{MAX_DISTRACTORS}, got {n_distractors!r}")
    rng = np.random.default_rng(seed)
    out = {k: [] for r in ROLES for k in (r, f"{r}_mask", f"{r}_distractors")}
    out.update(classes=[], distractor_classes=[], backgrounds=[])
    for _ in range(n):
        classes = [CLASSES[i] for i in rng.permutation(len(CLASSES))]
        backgrounds = [BACKGROUND_SOURCES[i] for i in rng.choice(len(BACKGROUND_SOURCES), size=3, replace=False)]
        distractor_classes = tuple(tuple(classes[2 + k * MAX_DISTRACTORS:][:n_distractors]) for k in range(3))
        for role, name, bg, others in zip(ROLES, (classes[0], classes[0], classes[1]), backgrounds,
                                          distractor_classes):
            image, obj, dis = compose_image(name, bg, others, (size, size), rng)
            out[role].append(imagenet_normalize(image))
            out[f"{role}_mask"].append(obj)
            out[f"{role}_distractors"].append(dis)
        out["classes"].append((classes[0], classes[1]))
        out["distractor_classes"].append(distractor_classes)
        out["backgrounds"].append(tuple(backgrounds))
    lists = ("classes", "distractor_classes", "backgrounds")
    return {k: v if k in lists else torch.stack(v) for k, v in out.items()}
