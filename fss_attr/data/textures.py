"""Real textures and backgrounds from scikit-image's bundled photos (no download).

Each class of the controlled data is one real photo region (a texture or a photo crop); grayscale sources
get a fixed class tint so that classes differ in colour as well as in texture.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

# class name -> (skimage.data function, crop box (top, left, bottom, right) as fractions, RGB tint or None)
CLASS_SOURCES = {
    "brick": ("brick", (0.0, 0.0, 1.0, 1.0), (1.0, 0.55, 0.4)),
    "grass": ("grass", (0.0, 0.0, 1.0, 1.0), (0.45, 1.0, 0.4)),
    "gravel": ("gravel", (0.0, 0.0, 1.0, 1.0), (0.75, 0.75, 1.0)),
    "coffee": ("coffee", (0.1, 0.2, 0.9, 0.8), None),
    "cat": ("chelsea", (0.15, 0.1, 0.75, 0.55), None),
    "rocket": ("rocket", (0.05, 0.35, 0.95, 0.65), None),
    "astronaut": ("astronaut", (0.45, 0.05, 1.0, 0.55), None),
    "coins": ("coins", (0.0, 0.0, 1.0, 1.0), (1.0, 0.85, 0.3)),
}
BACKGROUND_SOURCES = ("camera", "moon", "hubble_deep_field", "immunohistochemistry", "retina", "page", "text")


def as_rgb_float(img: np.ndarray, tint=None) -> np.ndarray:
    """A photo (uint8 or float, grey or RGB(A)) -> [H, W, 3] float32 RGB in [0, 1], times ``tint`` (3 factors) if given."""
    img = img.astype(np.float32)
    if img.max() > 1.0:
        img = img / 255.0
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = img[..., :3]
    if tint is not None:
        img = img * np.asarray(tint, dtype=np.float32)
    return np.clip(img, 0.0, 1.0)


@lru_cache(maxsize=None)
def class_texture(name: str) -> np.ndarray:
    """The texture of class ``name``: float32 [h, w, 3] in [0, 1]."""
    import skimage.data

    if name not in CLASS_SOURCES:
        raise ValueError(f"unknown class {name!r}; classes: {tuple(CLASS_SOURCES)}")
    source, (t, l, b, r), tint = CLASS_SOURCES[name]
    img = getattr(skimage.data, source)()
    h, w = img.shape[:2]
    img = img[int(t * h): int(b * h), int(l * w): int(r * w)]
    return as_rgb_float(img, tint)


@lru_cache(maxsize=None)
def background(name: str) -> np.ndarray:
    """A background photo: float32 [h, w, 3] in [0, 1] (dimmed so that objects stand out a little)."""
    import skimage.data

    if name not in BACKGROUND_SOURCES:
        raise ValueError(f"unknown background {name!r}; backgrounds: {BACKGROUND_SOURCES}")
    return 0.8 * as_rgb_float(getattr(skimage.data, name)())


def random_crop(img: np.ndarray, size: tuple[int, int], rng: np.random.Generator,
                scale: tuple[float, float] = (0.3, 0.8)) -> np.ndarray:
    """A random crop of ``img`` covering a fraction ``scale`` of its shorter side, resized to ``size``."""
    from skimage.transform import resize

    h, w = img.shape[:2]
    side = int(min(h, w) * rng.uniform(*scale))
    ch = min(h, max(8, side))
    cw = min(w, max(8, int(side * size[1] / max(size[0], 1))))
    top = int(rng.integers(0, h - ch + 1))
    left = int(rng.integers(0, w - cw + 1))
    crop = img[top: top + ch, left: left + cw]
    return resize(crop, size, order=1, anti_aliasing=True, preserve_range=True).astype(np.float32)
