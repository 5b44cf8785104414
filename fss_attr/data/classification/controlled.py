"""Offline few-shot classification classes from scikit-image's bundled photos.

fss_attr.data has 8 texture/photo-crop classes (``fss_attr.data.textures.CLASS_SOURCES``); 5-way episodes
on disjoint train/val/test class splits need at least 15. So more classes are *derived* here, honestly: a
class is one rectangular crop of one bundled photo (the 8 sources keep their crops and tints), and distinct
crops of the same photo are distinct classes (an astronaut's face, flag, helmet, suit, the shuttle). The
splits are disjoint by **photo**, not only by class: no photo gives classes to two splits, so a test class is
never another crop of a photo seen in training.

An image of a class is a random smooth blob filled with a random crop of the class's photo region, pasted
on a random crop of a grayscale background photo (camera, moon, page, text: none of them a class source),
flipped left-right at random. Its object mask is kept, so explanations can be checked against it.
"""
from __future__ import annotations

import hashlib
import os
import warnings
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from fss_attr.data.controlled import blob_mask
from fss_attr.data.textures import CLASS_SOURCES, as_rgb_float, background, random_crop
from fss_attr.data.classification.pool import ArrayPool
from fss_attr.validation import check_grid

SPLITS = ("train", "val", "test")
BACKGROUNDS = ("camera", "moon", "page", "text")


@dataclass(frozen=True)
class PhotoClass:
    """One class: a crop of a bundled photo.

    Attributes:
        name: the class name.
        photo: the ``skimage.data`` function giving the photo (the class's group for the splits).
        box: (top, left, bottom, right) of the crop, as fractions of the photo's height and width.
        tint: RGB multiplier for grayscale photos (so classes also differ in colour), or None.
        split: "train", "val" or "test".
    """

    name: str
    photo: str
    box: tuple[float, float, float, float]
    tint: tuple[float, float, float] | None
    split: str


def _source(name: str, split: str) -> PhotoClass:
    photo, box, tint = CLASS_SOURCES[name]
    return PhotoClass(name, photo, box, tint, split)


CATALOGUE: tuple[PhotoClass, ...] = (
    # train: astronaut, rocket, stereo_motorcycle, logo, hubble_deep_field, cell, microaneurysms
    _source("astronaut", "train"),
    PhotoClass("astronaut_face", "astronaut", (0.08, 0.33, 0.42, 0.62), None, "train"),
    PhotoClass("astronaut_flag", "astronaut", (0.0, 0.0, 0.5, 0.15), None, "train"),
    PhotoClass("astronaut_helmet", "astronaut", (0.62, 0.6, 1.0, 0.95), None, "train"),
    PhotoClass("astronaut_shuttle", "astronaut", (0.0, 0.78, 0.55, 1.0), None, "train"),
    _source("rocket", "train"),
    PhotoClass("rocket_sky", "rocket", (0.0, 0.0, 0.45, 0.3), None, "train"),
    PhotoClass("rocket_lights", "rocket", (0.8, 0.0, 1.0, 1.0), None, "train"),
    PhotoClass("motorcycle", "stereo_motorcycle", (0.35, 0.1, 0.95, 0.9), None, "train"),
    PhotoClass("workshop_shelves", "stereo_motorcycle", (0.0, 0.55, 0.35, 1.0), None, "train"),
    PhotoClass("logo_green", "logo", (0.2, 0.1, 0.4, 0.3), None, "train"),
    PhotoClass("logo_orange", "logo", (0.4, 0.7, 0.65, 0.95), None, "train"),
    PhotoClass("deep_field", "hubble_deep_field", (0.0, 0.0, 1.0, 1.0), None, "train"),
    PhotoClass("cell", "cell", (0.0, 0.0, 1.0, 1.0), (0.6, 0.9, 1.0), "train"),
    PhotoClass("microaneurysms", "microaneurysms", (0.0, 0.0, 1.0, 1.0), (1.0, 0.7, 0.7), "train"),
    # val: coffee, clock, immunohistochemistry, retina
    _source("coffee", "val"),
    PhotoClass("coffee_table", "coffee", (0.0, 0.0, 0.3, 1.0), None, "val"),
    PhotoClass("clock", "clock", (0.3, 0.3, 0.75, 0.7), (0.8, 0.8, 1.0), "val"),
    PhotoClass("tissue", "immunohistochemistry", (0.0, 0.0, 1.0, 1.0), None, "val"),
    PhotoClass("retina", "retina", (0.25, 0.25, 0.75, 0.75), None, "val"),
    # test: brick, grass, gravel, coins, chelsea
    _source("brick", "test"),
    _source("grass", "test"),
    _source("gravel", "test"),
    _source("coins", "test"),
    _source("cat", "test"),
    PhotoClass("cat_right_eye", "chelsea", (0.1, 0.6, 0.6, 0.95), None, "test"),
)


def split_classes(split: str) -> tuple[PhotoClass, ...]:
    """The classes of ``split`` ("train", "val" or "test"), in catalogue order."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return tuple(c for c in CATALOGUE if c.split == split)


def class_by_name(name: str) -> PhotoClass:
    for c in CATALOGUE:
        if c.name == name:
            return c
    raise ValueError(f"unknown controlled class {name!r}; classes: {tuple(c.name for c in CATALOGUE)}")


@lru_cache(maxsize=None)
def class_region(name: str) -> np.ndarray:
    """The photo region of class ``name``: float32 [h, w, 3] in [0, 1]."""
    import skimage.data

    cls = class_by_name(name)
    img = getattr(skimage.data, cls.photo)()
    if isinstance(img, tuple):  # stereo_motorcycle: (left, right, disparity)
        img = img[0]
    h, w = img.shape[:2]
    t, l, b, r = cls.box
    return as_rgb_float(img[int(t * h): int(b * h), int(l * w): int(r * w)], cls.tint)


def render_class_image(name: str, seed: int, size: tuple[int, int] = (84, 84)) -> tuple[np.ndarray, np.ndarray]:
    """One image of class ``name`` (module docstring): (float32 [H, W, 3] in [0, 1], bool [H, W] object mask).

    Deterministic in ``seed``.
    """
    rng = np.random.default_rng(seed)
    canvas = random_crop(background(BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]), size, rng, scale=(0.5, 1.0))
    obj = blob_mask(size, rng, radius=(0.25, 0.38))
    texture = random_crop(class_region(name), size, rng)
    canvas[obj] = texture[obj]
    if rng.random() < 0.5:
        canvas, obj = canvas[:, ::-1], obj[:, ::-1]
    return np.ascontiguousarray(canvas), np.ascontiguousarray(obj)


CACHE_ENV = "FSS_ATTR_CACHE"


def default_cache_dir() -> Path:
    """The documented cache folder of rendered controlled pools: ``$FSS_ATTR_CACHE/controlled_pools`` when that
    variable is set, else ``$XDG_CACHE_HOME/fss_attr/controlled_pools`` (``~/.cache/fss_attr/controlled_pools``
    when XDG_CACHE_HOME is unset). Nothing is created here; :func:`controlled_pool` creates it when it writes."""
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root).expanduser() / "controlled_pools"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "fss_attr" / "controlled_pools"


def controlled_pool(split: str, images_per_class: int = 300, size: tuple[int, int] = (84, 84), seed: int = 0,
                    cache_dir: str | Path | None = None, progress: bool = True) -> ArrayPool:
    """An :class:`~fss_attr.data.classification.pool.ArrayPool` of the classes of ``split``, ``images_per_class`` each.

    Image i of the class at catalogue position p has seed ``default_rng([seed, p]).integers(2**31 - 1, size=n)[i]``.
    With ``cache_dir`` the rendered pool is stored there as .npz (uint8 images, bool masks) and read back on the
    next call with the same arguments.
    """
    from tqdm import tqdm

    classes = split_classes(split)
    n = int(images_per_class)
    if n < 1:
        raise ValueError(f"images_per_class must be >= 1, got {images_per_class!r}")
    size = check_grid("size", tuple(size))
    names = tuple(c.name for c in classes)
    key = hashlib.sha1(repr((classes, BACKGROUNDS, n, size, seed)).encode()).hexdigest()[:12]
    path = None if cache_dir is None else Path(cache_dir) / f"controlled_{split}_{n}x{size[0]}x{size[1]}_{key}.npz"
    if path is not None and path.is_file():
        want = (len(classes), n, 3, *size)
        try:
            with np.load(path) as data:
                images, masks = data["images"], data["masks"]
            if images.shape != want or images.dtype != np.uint8 or masks.shape != want[:2] + want[3:]:
                raise ValueError(f"holds images {images.shape} {images.dtype}, masks {masks.shape}; expected {want}")
            return ArrayPool(torch.from_numpy(images), names, torch.from_numpy(masks))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            warnings.warn(f"controlled pool cache {path} is unreadable ({type(e).__name__}: {e}); rendering it again",
                          stacklevel=2)
    images = np.empty((len(classes), n, 3, *size), dtype=np.uint8)
    masks = np.empty((len(classes), n, *size), dtype=bool)
    bar = tqdm(total=len(classes) * n, desc=f"render {split} classes", disable=not progress, leave=False)
    for k, cls in enumerate(classes):
        position = CATALOGUE.index(cls)
        for i, s in enumerate(np.random.default_rng([seed, position]).integers(0, 2**31 - 1, size=n)):
            img, obj = render_class_image(cls.name, int(s), size)
            images[k, i] = np.round(img.transpose(2, 0, 1) * 255.0).astype(np.uint8)
            masks[k, i] = obj
            bar.update()
    bar.close()
    if path is not None:  # written under a temporary name, then renamed: concurrent writers cannot interleave
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, images=images, masks=masks)
        os.replace(tmp, path)
    return ArrayPool(torch.from_numpy(images), names, torch.from_numpy(masks))
