"""Controlled few-shot episodes from real photos, with exact masks and known evidence.

An object of a class is a random smooth shape filled with a crop of the class's real texture
(fss_attr.data.textures), pasted on a real photo background with distractor objects of other classes.
Support objects additionally carry an *occluder*: a patch of another class's texture inside the object
mask (like a sticker on the object). Its pixels belong to the support mask but do not match the query
object, so the *evidence* of a support image is its object mask minus the occluder: the pixels an
explanation of the query prediction should point to. Everything is deterministic from the seed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from fss_attr.data.imagenet import imagenet_normalize
from fss_attr.data.textures import BACKGROUND_SOURCES, CLASS_SOURCES, background, class_texture, random_crop
from fss_attr.data.episode import Episode
from fss_attr.validation import check_choice, check_positive_int

CLASSES = tuple(CLASS_SOURCES)
CUES = ("watermark", "frame")


@dataclass
class ControlledImage:
    """One rendered image.

    Attributes:
        image: [3, H, W] float32 RGB in [0, 1].
        object_mask: [H, W] bool, the object of ``class_name`` (occluder included).
        distractor_mask: [H, W] bool, objects of other classes.
        cue_mask: [H, W] bool, the planted cue (empty without one).
        occluder_mask: [H, W] bool, the other-class patch inside the object (empty without one).
        class_name: the object's class.
    """

    image: torch.Tensor
    object_mask: torch.Tensor
    distractor_mask: torch.Tensor
    cue_mask: torch.Tensor
    occluder_mask: torch.Tensor
    class_name: str

    @property
    def evidence_mask(self) -> torch.Tensor:
        """Object pixels that show the class's texture (the object minus the occluder)."""
        return self.object_mask & ~self.occluder_mask


def blob_mask(size: tuple[int, int], rng: np.random.Generator, radius: tuple[float, float] = (0.18, 0.3),
              center=None) -> np.ndarray:
    """A random smooth star-shaped blob [H, W] bool: r(θ) = r0·(1 + Σ_k a_k cos(kθ + φ_k)), k = 2..4."""
    h, w = size
    r0 = rng.uniform(*radius) * min(h, w)
    if center is None:
        cy = rng.uniform(r0 * 1.1, h - r0 * 1.1)
        cx = rng.uniform(r0 * 1.1, w - r0 * 1.1)
    else:
        cy, cx = center
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    theta = np.arctan2(yy - cy, xx - cx)
    radius_at = np.ones_like(theta)
    for k in (2, 3, 4):
        radius_at += rng.uniform(0.0, 0.25 / k * 2) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return np.hypot(yy - cy, xx - cx) <= r0 * radius_at


def _paste(canvas: np.ndarray, mask: np.ndarray, texture: np.ndarray) -> None:
    canvas[mask] = texture[mask]


def render_image(class_name: str, seed: int, size: tuple[int, int] = (192, 192), n_distractors: int = 2,
                 cue: str | None = None, occluder: bool = False) -> ControlledImage:
    """Render one image holding an object of ``class_name`` (see the module docstring).

    Args:
        class_name: one of :data:`CLASSES`.
        seed: everything random comes from ``np.random.default_rng(seed)``.
        size: (H, W).
        n_distractors: objects of other classes (placed where they overlap the object least).
        cue: None, "watermark" (a high-contrast mark in a corner) or "frame" (a coloured border).
        occluder: put a patch of another class's texture inside the object.
    """
    check_choice("class_name", class_name, CLASSES)
    check_choice("cue", cue, (None,) + CUES)
    rng = np.random.default_rng(seed)
    h, w = size
    canvas = random_crop(background(BACKGROUND_SOURCES[int(rng.integers(len(BACKGROUND_SOURCES)))]), size, rng,
                         scale=(0.5, 1.0))
    others = [c for c in CLASSES if c != class_name]
    distractors = np.zeros(size, dtype=bool)
    obj = blob_mask(size, rng)
    for _ in range(n_distractors):
        best = min((blob_mask(size, rng, radius=(0.1, 0.18)) for _ in range(4)), key=lambda m: (m & obj).sum())
        other = others[int(rng.integers(len(others)))]
        _paste(canvas, best, random_crop(class_texture(other), size, rng))
        distractors |= best
    _paste(canvas, obj, random_crop(class_texture(class_name), size, rng))
    distractors &= ~obj
    occ = np.zeros(size, dtype=bool)
    if occluder:
        ys, xs = np.nonzero(obj)
        k = int(rng.integers(len(ys)))
        patch = blob_mask(size, rng, radius=(0.07, 0.11), center=(float(ys[k]), float(xs[k]))) & obj
        other = others[int(rng.integers(len(others)))]
        _paste(canvas, patch, random_crop(class_texture(other), size, rng))
        occ = patch
    cue_mask = np.zeros(size, dtype=bool)
    if cue == "watermark":
        s = max(6, min(h, w) // 8)
        cue_mask[2: 2 + s, w - 2 - s: w - 2] = True
        yy, xx = np.mgrid[0:s, 0:s]
        canvas[2: 2 + s, w - 2 - s: w - 2] = np.where(((yy // 2 + xx // 2) % 2 == 0)[..., None], 1.0, 0.0)
    elif cue == "frame":
        b = max(2, min(h, w) // 32)
        cue_mask[:b], cue_mask[-b:], cue_mask[:, :b], cue_mask[:, -b:] = True, True, True, True
        canvas[cue_mask] = np.array([1.0, 0.0, 1.0], dtype=np.float32)
        for m in (obj, distractors, occ):
            m &= ~cue_mask
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    return ControlledImage(t(canvas).permute(2, 0, 1).contiguous().float(), t(obj), t(distractors), t(cue_mask),
                           t(occ), class_name)


def make_episode(seed: int, n_shots: int = 1, size: tuple[int, int] = (192, 192), n_distractors: int = 2,
                 class_name: str | None = None) -> Episode:
    """One 1-way episode (B = 1): a query and ``n_shots`` supports of the same class, ImageNet-normalized.

    The query has no occluder; each support has one, and ``support_evidence`` marks its object pixels that
    show the class (object minus occluder). ``meta`` holds the class, the seeds and the un-normalized images.
    """
    check_positive_int("n_shots", n_shots)
    rng = np.random.default_rng(seed)
    cls = class_name or CLASSES[int(rng.integers(len(CLASSES)))]
    seeds = [int(s) for s in rng.integers(0, 2**31 - 1, size=n_shots + 1)]
    query = render_image(cls, seeds[0], size, n_distractors)
    supports = [render_image(cls, s, size, n_distractors, occluder=True) for s in seeds[1:]]
    imgs = torch.stack([s.image for s in supports])
    return Episode(
        imagenet_normalize(query.image)[None], imagenet_normalize(imgs)[None],
        torch.stack([s.object_mask for s in supports])[None], query_mask=query.object_mask[None],
        support_evidence=torch.stack([s.evidence_mask for s in supports])[None],
        meta={"class_name": cls, "seed": seed, "image_seeds": seeds, "query_rgb": query.image[None],
              "support_rgb": imgs[None]})


def make_episodes(n: int, seed: int = 42, n_shots: int = 1, size: tuple[int, int] = (192, 192),
                  batch_size: int = 1) -> Iterator[Episode]:
    """``n`` episodes (seeds derived from ``seed``), yielded in batches of ``batch_size``."""
    seeds = np.random.default_rng(seed).integers(0, 2**31 - 1, size=n)
    for i in range(0, n, batch_size):
        eps = [make_episode(int(s), n_shots, size) for s in seeds[i: i + batch_size]]
        yield eps[0] if len(eps) == 1 else collate(eps)


def collate(episodes: list[Episode]) -> Episode:
    """Stack episodes of equal shape into one batch."""
    cat = lambda name: (None if getattr(episodes[0], name) is None  # noqa: E731
                        else torch.cat([getattr(e, name) for e in episodes]))
    meta = {"class_name": [e.meta.get("class_name") for e in episodes], "seed": [e.meta.get("seed") for e in episodes]}
    return Episode(cat("query"), cat("support_images"), cat("support_masks"), cat("query_mask"),
                   cat("support_evidence"), meta, cat("query_ignore"))
