"""COCO-20i: COCO 2014 instance annotations split into 4 folds of 20 classes (read with pycocotools).

Expected layout under ``root``::

    annotations/instances_{train,val}2014.json
    {train,val}2014/<file_name>

Categories are numbered 0..79 in the order of their COCO ids; fold k's test classes are those with
index ≡ k (mod 4) (the interleaved split of the FSS literature). Split "val" reads val2014 and the test
classes, "trn" reads train2014 and the other 60. A class mask is the union of the class's instances.
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
from fss_attr.validation import check_choice

N_FOLDS = 4
SMALL_AREA = 2 * 32 * 32     # the AffEx paper's small-annotation threshold (COCO "area", pixels)


def fold_classes(fold: int | str, split: str = "val") -> list[int]:
    """fold "all": every class (0..79), as the AffEx paper's episodes.
    Otherwise: class indices (0..79) of a fold: 20 test classes for "val", the other 60 for "trn"."""
    if fold == "all":          # the AffEx paper's episodes span every class of the data set (no fold)
        return list(range(80))
    if fold not in range(N_FOLDS):
        raise ValueError(f"fold must be 0..3 for COCO-20i, got {fold!r}")
    test = [fold + N_FOLDS * v for v in range(20)]
    return test if split == "val" else [c for c in range(80) if c not in test]


class Coco20i:
    """Image-class pairs and pixels of COCO-20i fold ``fold``, split "val" or "trn"."""

    name = "coco"

    def __init__(self, root: str | Path, fold: int, split: str = "val", remove_small_annotations: bool = False,
                 include_crowd: bool = True):
        """Args:
            root, fold, split: as in the module docstring.
            remove_small_annotations: leave out instances whose COCO "area" is under 2·32·32 = 2048 pixels
                (the AffEx paper's ``_remove_small_annotations``; default False as that class's default, the
                paper's COCO runs set it True, and so does ``--preset paper``). An image whose every instance
                of a class is left out is not an (image, class) pair.
            include_crowd: whether crowd instances (``iscrowd`` 1) are part of the class mask (default True,
                as before); the paper's code skips them (``--preset paper``: False); they then count as
                background, not as ignore, as in the paper's code.
        """
        from pycocotools.coco import COCO

        self.remove_small_annotations = bool(remove_small_annotations)
        self.include_crowd = bool(include_crowd)
        check_choice("split", split, ("val", "trn"))
        self.root = Path(root)
        self.fold, self.split = fold, split
        self.year_split = "val2014" if split == "val" else "train2014"
        ann = self.root / "annotations" / f"instances_{self.year_split}.json"
        if not ann.is_file():
            raise FileNotFoundError(f"COCO-20i root {self.root} has no {ann.relative_to(self.root)}")
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                self.coco = COCO(str(ann))
        except (ValueError, KeyError, TypeError, AssertionError) as e:     # JSONDecodeError is a ValueError
            raise ValueError(f"{ann} is not a COCO annotation file ({type(e).__name__}: {e})") from e
        self.cat_ids = sorted(self.coco.getCatIds())
        if len(self.cat_ids) != 80:
            raise ValueError(f"{ann} has {len(self.cat_ids)} categories; COCO-20i needs the 80 COCO categories")
        self.classes = fold_classes(fold, split)

    def _annotations(self, image_id: int, class_id: int) -> list[dict]:
        """The class's instances in an image that make its mask (crowd / small ones left out as configured)."""
        anns = self.coco.loadAnns(self.coco.getAnnIds(imgIds=image_id, catIds=[self.cat_ids[class_id]],
                                                      iscrowd=None))
        return [a for a in anns
                if (self.include_crowd or not a.get("iscrowd", 0))
                and not (self.remove_small_annotations and a.get("area", 0) < SMALL_AREA)]

    def class_name(self, class_id: int) -> str:
        """The COCO category name of class index ``class_id`` (0..79, in the order of the COCO ids)."""
        if isinstance(class_id, bool) or not isinstance(class_id, (int, np.integer)) or not 0 <= class_id < 80:
            raise ValueError(f"class_id must be an int in 0..79 for COCO-20i, got {class_id!r}")
        return self.coco.loadCats(self.cat_ids[int(class_id)])[0]["name"]

    def image_class_pairs(self) -> list[tuple[str, int]]:
        pairs = []
        filtered = self.remove_small_annotations or not self.include_crowd
        for c in self.classes:
            for image_id in sorted(self.coco.getImgIds(catIds=[self.cat_ids[c]])):
                if not filtered or self._annotations(image_id, c):
                    pairs.append((str(image_id), c))
        return pairs

    def load(self, image_id: str, class_id: int) -> tuple[np.ndarray, np.ndarray]:
        """(RGB [H, W, 3] uint8, class mask [H, W] bool). Segmentations are decoded by
        :func:`fss_attr.sat.segments.decode_segmentation` (degenerate polygons dropped, an empty one adds
        nothing, a malformed RLE raises ValueError naming the annotation file and id)."""
        from fss_attr.data.images import read_rgb
        from fss_attr.sat.segments import decode_segmentation

        info = self.coco.loadImgs(int(image_id))[0]
        rgb = read_rgb(self.root / self.year_split / info["file_name"])
        h, w = info["height"], info["width"]
        if rgb.shape[:2] != (h, w):
            raise ValueError(f"{self.root / self.year_split / info['file_name']}: the image is "
                             f"{rgb.shape[0]}×{rgb.shape[1]}, the annotations say {h}×{w}")
        mask = np.zeros((h, w), dtype=bool)
        ann_file = self.root / "annotations" / f"instances_{self.year_split}.json"
        for ann in self._annotations(int(image_id), class_id):
            seg = ann.get("segmentation", [])
            if isinstance(seg, list) and seg and all(isinstance(p, list) and len(p) < 6 for p in seg):
                continue                   # no polygon with 3 points: no area; skipped, as Detectron does
            mask |= decode_segmentation(seg, h, w, f"{ann_file}: annotation id {ann.get('id')}")
        return rgb, mask
