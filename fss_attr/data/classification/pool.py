"""Labelled image pools for few-shot classification: the classes of one split and their images.

A pool answers ``classes``, ``count(c)``, ``image(c, i)`` (float32 [3, H, W] RGB in [0, 1]) and ``mask(c, i)``
(bool [H, W] object mask, or None when the source has none). :class:`ArrayPool` keeps rendered images in
memory (the controlled classes); :class:`FolderPool` reads image files on demand (miniImageNet, CIFAR-FS).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from fss_attr.validation import check_grid, check_tensor


class ImagePool:
    """Base class: classes and images of one split (module docstring)."""

    classes: tuple[str, ...]
    image_size: tuple[int, int]

    def count(self, c: int) -> int:
        raise NotImplementedError

    def image(self, c: int, i: int) -> torch.Tensor:
        raise NotImplementedError

    def mask(self, c: int, i: int) -> torch.Tensor | None:
        return None

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def counts(self) -> list[int]:
        return [self.count(c) for c in range(self.n_classes)]

    def _check_index(self, c: int, i: int) -> None:
        if not 0 <= c < self.n_classes:
            raise IndexError(f"class index {c} out of range for a pool of {self.n_classes} classes")
        if not 0 <= i < self.count(c):
            raise IndexError(f"image index {i} out of range for class {self.classes[c]!r} "
                             f"({self.count(c)} images)")


class ArrayPool(ImagePool):
    """Images held in memory.

    Args:
        images: [C, n, 3, H, W] uint8 (0..255) or float (0..1) RGB, n images per class.
        classes: C class names.
        masks: optional [C, n, H, W] bool object masks.
    """

    def __init__(self, images: torch.Tensor, classes: Sequence[str], masks: torch.Tensor | None = None):
        check_tensor("images", images, ndim=5, finite=True)
        if images.shape[2] != 3:
            raise ValueError(f"images must be [C, n, 3, H, W], got {tuple(images.shape)}")
        if images.dtype != torch.uint8 and not images.is_floating_point():
            raise TypeError(f"images must be uint8 or floating, got {images.dtype}")
        if len(classes) != images.shape[0]:
            raise ValueError(f"classes has {len(classes)} names, images hold {images.shape[0]}")
        if masks is not None:
            check_tensor("masks", masks, dtype=torch.bool)
            if tuple(masks.shape) != tuple(images.shape[:2]) + tuple(images.shape[3:]):
                raise ValueError(f"masks must be [C, n, H, W] = {tuple(images.shape[:2]) + tuple(images.shape[3:])}, "
                                 f"got {tuple(masks.shape)}")
        self.images, self.masks = images, masks
        self.classes = tuple(classes)
        self.image_size = tuple(images.shape[-2:])

    def count(self, c: int) -> int:
        return self.images.shape[1]

    def image(self, c: int, i: int) -> torch.Tensor:
        self._check_index(c, i)
        x = self.images[c, i]
        return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()

    def mask(self, c: int, i: int) -> torch.Tensor | None:
        self._check_index(c, i)
        return None if self.masks is None else self.masks[c, i]


class FolderPool(ImagePool):
    """Images read from files (RGB, resized bilinearly to ``size`` with antialiasing) when asked for.

    Args:
        files: per class, the list of its image files.
        classes: the class names (same order).
        size: (H, W) of the returned images.
    """

    def __init__(self, files: Sequence[Sequence[Path]], classes: Sequence[str], size: tuple[int, int] = (84, 84)):
        if len(files) != len(classes):
            raise ValueError(f"files lists {len(files)} classes, classes names {len(classes)}")
        empty = [name for name, f in zip(classes, files) if not f]
        if empty:
            raise ValueError(f"classes without images: {empty}")
        self.files = [list(map(Path, f)) for f in files]
        self.classes = tuple(classes)
        self.image_size = check_grid("size", tuple(size))

    def count(self, c: int) -> int:
        return len(self.files[c])

    def image(self, c: int, i: int) -> torch.Tensor:
        from PIL import Image

        self._check_index(c, i)
        from fss_attr.data.images import read_rgb

        im = Image.fromarray(read_rgb(self.files[c][i])).resize(self.image_size[::-1], Image.BILINEAR)
        arr = np.asarray(im, dtype=np.float32) / 255.0
        return torch.from_numpy(arr).permute(2, 0, 1).contiguous()
