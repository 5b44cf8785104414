"""One entry point for the image pools: the offline controlled classes, or a benchmark on disk."""
from __future__ import annotations

from pathlib import Path

from fss_attr.data.classification.pool import ImagePool
from fss_attr.validation import check_choice

SOURCES = ("controlled", "miniimagenet", "cifarfs")


def open_pool(source: str, split: str, root: str | Path | None = None, size=(84, 84), images_per_class: int = 600,
              seed: int = 0, cache_dir: str | Path | None = None, progress: bool = True) -> ImagePool:
    """The pool of ``split`` ("train", "val", "test") of ``source``.

    "controlled" renders its classes offline (``images_per_class``, ``seed``, ``cache_dir``:
    :func:`fss_attr.data.classification.controlled.controlled_pool`); "miniimagenet" and "cifarfs" read ``root``
    (:mod:`fss_attr.data.classification.folders`).
    """
    check_choice("source", source, SOURCES)
    if source == "controlled":
        from fss_attr.data.classification.controlled import controlled_pool
        return controlled_pool(split, images_per_class, size, seed, cache_dir, progress)
    from fss_attr.data.classification.folders import open_folder_dataset
    if root is None:
        raise ValueError(f"source {source!r} needs root, the data set's folder")
    return open_folder_dataset(source, root, split, size)
