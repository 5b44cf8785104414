"""PASCAL-5i: PASCAL VOC 2012 (+ SBD augmented masks) split into 4 folds of 5 classes.

Expected layout under ``root`` (as the FSS literature uses it)::

    JPEGImages/<id>.jpg
    SegmentationClassAug/<id>.png      (or SegmentationClass/) class indices 0..20, 255 = ignore
    ImageSets/Segmentation/{train,val}.txt   (optional: which ids belong to the split)
    splits/pascal/{trn,val}/fold{k}.txt      (optional: HSNet-style lines "<id>__<class 1..20>")

Fold k's test classes are 5k+1 .. 5k+5; its training classes are the other 15.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from fss_attr.data.images import read_image, read_rgb
from fss_attr.validation import check_choice

CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
           "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")
N_FOLDS = 4
IGNORE_LABEL = 255


def fold_classes(fold: int | str, split: str = "val") -> list[int]:
    """fold "all": every class (1..20), as the AffEx paper's episodes.
    Otherwise: class ids (1..20) of a fold: its 5 test classes for split "val", the other 15 for "trn"."""
    if fold == "all":          # the AffEx paper's episodes span every class of the data set (no fold)
        return list(range(1, 21))
    if fold not in range(N_FOLDS):
        raise ValueError(f"fold must be 0..3 for PASCAL-5i, got {fold!r}")
    test = list(range(5 * fold + 1, 5 * fold + 6))
    return test if split == "val" else [c for c in range(1, 21) if c not in test]


class Pascal5i:
    """Image-class pairs and pixels of PASCAL-5i fold ``fold``, split "val" (test classes) or "trn"."""

    name = "pascal"

    def __init__(self, root: str | Path, fold: int, split: str = "val"):
        check_choice("split", split, ("val", "trn"))
        self.root = Path(root)
        self.fold, self.split = fold, split
        self.classes = fold_classes(fold, split)
        if not (self.root / "JPEGImages").is_dir():
            raise FileNotFoundError(f"PASCAL-5i root {self.root} has no JPEGImages/ folder")
        self.mask_dir = next((self.root / d for d in ("SegmentationClassAug", "SegmentationClass")
                              if (self.root / d).is_dir()), None)
        if self.mask_dir is None:
            raise FileNotFoundError(f"PASCAL-5i root {self.root} has no SegmentationClassAug/ or SegmentationClass/")
        self._pairs = None

    def class_name(self, class_id: int) -> str:
        """The PASCAL VOC name of class ``class_id`` (1..20), e.g. 1 -> "aeroplane"."""
        if isinstance(class_id, bool) or not isinstance(class_id, (int, np.integer)) or not 1 <= class_id <= 20:
            raise ValueError(f"class_id must be an int in 1..20 for PASCAL-5i, got {class_id!r}")
        return CLASSES[int(class_id) - 1]

    def _label(self, image_id: str) -> np.ndarray:
        return read_image(self.mask_dir / f"{image_id}.png")

    def image_class_pairs(self) -> list[tuple[str, int]]:
        if self._pairs is None:
            split_file = self.root / "splits" / "pascal" / self.split / f"fold{self.fold}.txt"
            if split_file.is_file():
                pairs = []
                for k, line in enumerate(split_file.read_text().split()):
                    image_id, _, cls = line.rpartition("__")
                    if not image_id or not cls.isdigit():
                        raise ValueError(f"{split_file}: entry {k + 1} is {line!r}, expected <image id>__<class>")
                    pairs.append((image_id, int(cls)))
            else:
                pairs = self._scan()
            self._pairs = [(i, c) for i, c in pairs if c in self.classes]
        return self._pairs

    def _scan(self) -> list[tuple[str, int]]:
        ids_file = self.root / "ImageSets" / "Segmentation" / ("val.txt" if self.split == "val" else "train.txt")
        ids = (ids_file.read_text().split() if ids_file.is_file()
               else sorted(p.stem for p in self.mask_dir.glob("*.png")))
        pairs = []
        for image_id in ids:
            present = set(np.unique(self._label(image_id)).tolist())
            pairs.extend((image_id, c) for c in self.classes if c in present)
        return pairs

    def load(self, image_id: str, class_id: int) -> tuple[np.ndarray, np.ndarray]:
        """(RGB [H, W, 3] uint8, class mask [H, W] bool); a file that cannot be read raises naming it."""
        path = self.root / "JPEGImages" / f"{image_id}.jpg"
        rgb, label = read_rgb(path), self._label(image_id)
        if rgb.shape[:2] != label.shape[:2]:
            raise ValueError(f"{path} is {rgb.shape[0]}×{rgb.shape[1]} but its label "
                             f"{self.mask_dir / (image_id + '.png')} is {label.shape[0]}×{label.shape[1]}")
        return rgb, label == class_id

    def load_ignore(self, image_id: str, class_id: int) -> np.ndarray:
        """bool [H, W]: the pixels labelled 255 ("ignore", the object boundary band), which every IoU leaves
        out (the PASCAL evaluators; the AffEx paper's code with ``ignore_borders``)."""
        return self._label(image_id) == IGNORE_LABEL
