"""miniImageNet and CIFAR-FS in their standard folder layouts, as :class:`~fss_attr.data.classification.pool.FolderPool`.

miniImageNet (Vinyals et al.; the Ravi & Larochelle split), either::

    <root>/images/<file>.jpg  and  <root>/{train,val,test}.csv   (header "filename,label")

or one folder per split and class::

    <root>/{train,val,test}/<class>/<image>.{jpg,jpeg,png}

CIFAR-FS (Bertinetto et al.), either::

    <root>/data/<class>/<image>.png  and  <root>/splits/bertinetto/{train,val,test}.txt   (one class a line)

or the per-split folders above. Classes are sorted by name; images by file name. Images are resized to
``size`` (84×84 by default, the RCN paper's input).
"""
from __future__ import annotations

import csv
from pathlib import Path

from fss_attr.data.classification.pool import FolderPool

SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
DATASETS = ("miniimagenet", "cifarfs")


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def split_folders(root: str | Path, split: str, size=(84, 84)) -> FolderPool:
    """The layout ``<root>/<split>/<class>/<image>``."""
    _check_split(split)
    base = Path(root) / split
    if not base.is_dir():
        raise FileNotFoundError(f"no folder {base} (expected <root>/{split}/<class>/<image>)")
    classes = sorted(p.name for p in base.iterdir() if p.is_dir())
    if not classes:
        raise FileNotFoundError(f"{base} holds no class folders")
    return FolderPool([_images_in(base / c) for c in classes], classes, size)


def mini_imagenet(root: str | Path, split: str, size=(84, 84)) -> FolderPool:
    """miniImageNet split ``split`` from the CSV layout, or from per-split folders (module docstring)."""
    _check_split(split)
    root = Path(root)
    table = root / f"{split}.csv"
    if not (table.is_file() and (root / "images").is_dir()):
        return split_folders(root, split, size)
    by_class: dict[str, list[Path]] = {}
    with table.open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"filename", "label"} <= set(reader.fieldnames):
            raise ValueError(f"{table} must have the header 'filename,label', got {reader.fieldnames}")
        for line, row in enumerate(reader, start=2):
            if None in row or not row["filename"] or not row["label"]:
                raise ValueError(f"{table}, row {line}: expected 'filename,label' with both cells filled, got "
                                 f"{list(row.values())}")
            by_class.setdefault(row["label"], []).append(root / "images" / row["filename"])
    missing = [p for files in by_class.values() for p in files if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} images listed in {table} are missing, e.g. {missing[0]}")
    classes = sorted(by_class)
    return FolderPool([sorted(by_class[c]) for c in classes], classes, size)


def cifar_fs(root: str | Path, split: str, size=(84, 84)) -> FolderPool:
    """CIFAR-FS split ``split`` from the Bertinetto layout, or from per-split folders (module docstring)."""
    _check_split(split)
    root = Path(root)
    listing = root / "splits" / "bertinetto" / f"{split}.txt"
    if not (listing.is_file() and (root / "data").is_dir()):
        return split_folders(root, split, size)
    classes = sorted(line.strip() for line in listing.read_text().splitlines() if line.strip())
    absent = [c for c in classes if not (root / "data" / c).is_dir()]
    if absent:
        raise FileNotFoundError(f"classes listed in {listing} have no folder under {root / 'data'}: {absent}")
    return FolderPool([_images_in(root / "data" / c) for c in classes], classes, size)


def open_folder_dataset(name: str, root: str | Path, split: str, size=(84, 84)) -> FolderPool:
    """``name`` "miniimagenet" or "cifarfs"."""
    if name == "miniimagenet":
        return mini_imagenet(root, split, size)
    if name == "cifarfs":
        return cifar_fs(root, split, size)
    raise ValueError(f"dataset must be one of {DATASETS}, got {name!r}")
