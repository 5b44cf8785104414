"""The AffEx paper's episode lists (``data_csv/val_{pascal5i,coco20i}_N1K{1,5}.csv`` of the official
AffinityExplainer repository), read into :class:`fss_attr.data.episode_list.EpisodeSpec`.

Format (learned from the official loader, ``affex/data/__init__.py`` and ``affex/data/{pascal5i,coco20i}.py``):
a CSV with the columns ``image_ids`` and ``classes``, one row per batch of episodes (the paper's lists: batch 1).
Each cell is a Python literal (the official code reads it with ``eval``; here with :func:`ast.literal_eval`,
which evaluates literals only):

- ``image_ids``: ``[[q, s_1, …, s_N]]`` per episode of the batch: the first entry is the query, the others the
  supports (the official code puts the query at ``images[:, 0]``). PASCAL entries are tuples
  ``('2008_006554', '/SegmentationClass/2008_006554.png')`` (the image name is the first element); COCO entries
  are integer COCO image ids.
- ``classes``: ``[[[c], [c], …]]``, one list of classes per image, 1-way: the same single class everywhere.
  PASCAL: the VOC label value 1..20 (fss_attr's numbering too). COCO: the COCO category id (1..90 with gaps),
  mapped here to fss_attr's index 0..79 in the order of the ids (:class:`fss_attr.data.coco.Coco20i`).

The paper's episodes span all classes of a data set (no fold): replay them with ``--fold all``.
"""
from __future__ import annotations

import ast
import csv
from pathlib import Path
from typing import Sequence

from fss_attr.data.episode_list import EpisodeSpec

COLUMNS = ("image_ids", "classes")


def is_official_list(path: str | Path) -> bool:
    """Whether the CSV's header is exactly the official ``image_ids,classes``."""
    with open(path, newline="") as f:
        header = next(csv.reader(f), None)
    return header is not None and tuple(h.strip() for h in header) == COLUMNS


def _literal(path, row: int, column: str, text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as e:
        raise ValueError(f"{path}: row {row}, column {column}: not a Python literal ({type(e).__name__}: {e})") from None


def _image_name(path, row: int, entry) -> str:
    if isinstance(entry, tuple) and entry and isinstance(entry[0], str):
        return entry[0]
    if isinstance(entry, (str, int)) and not isinstance(entry, bool):
        return str(entry)
    raise ValueError(f"{path}: row {row}: image entry {entry!r} is neither a name, an id nor a (name, mask path) tuple")


def read_official_list(path: str | Path, dataset: str, coco_category_ids: Sequence[int] | None = None
                       ) -> list[EpisodeSpec]:
    """The episodes of an official ``data_csv`` file, in file order (a row of B episodes gives B specs).

    Args:
        path: the CSV.
        dataset: "pascal" (classes are VOC labels 1..20) or "coco" (COCO category ids).
        coco_category_ids: for "coco", the 80 COCO category ids in ascending order (``Coco20i.cat_ids``); the
            class of an episode becomes the index of its id there.

    Returns:
        [EpisodeSpec(class_id, query, supports)].

    Raises:
        ValueError: naming the file and row: a wrong header, a cell that is not a literal of the format, not
            1-way, or a class that the data set does not have. FileNotFoundError: no such file.
    """
    if dataset not in ("pascal", "coco"):
        raise ValueError(f"dataset must be 'pascal' or 'coco', got {dataset!r}")
    if dataset == "coco" and coco_category_ids is None:
        raise ValueError("coco_category_ids is needed to read a COCO list (Coco20i.cat_ids)")
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != COLUMNS:
            raise ValueError(f"{path}: not an official episode list (header must be image_ids,classes, got {header})")
        specs = []
        for r, cells in enumerate(reader, start=2):
            if not cells:
                continue
            if len(cells) != 2:
                raise ValueError(f"{path}: row {r} has {len(cells)} cells, expected 2 (image_ids, classes)")
            images = _literal(path, r, "image_ids", cells[0])
            classes = _literal(path, r, "classes", cells[1])
            if (not isinstance(images, list) or not isinstance(classes, list) or len(images) != len(classes)
                    or not images):
                raise ValueError(f"{path}: row {r}: image_ids and classes must be lists of the same length "
                                 f"(one entry per episode of the batch)")
            for ep_images, ep_classes in zip(images, classes):
                specs.append(_spec(path, r, dataset, ep_images, ep_classes, coco_category_ids))
    return specs


def _spec(path, r, dataset, images, classes, cat_ids) -> EpisodeSpec:
    if not isinstance(images, (list, tuple)) or len(images) < 2:
        raise ValueError(f"{path}: row {r}: an episode needs a query and at least one support, got {images!r}")
    if not isinstance(classes, (list, tuple)) or len(classes) != len(images):
        raise ValueError(f"{path}: row {r}: classes must give one list per image ({len(images)}), got {classes!r}")
    flat = set()
    for c in classes:
        if not isinstance(c, (list, tuple)) or len(c) != 1 or isinstance(c[0], bool) or not isinstance(c[0], int):
            raise ValueError(f"{path}: row {r}: each image's classes must be a one-element list of an int "
                             f"(1-way episodes), got {c!r}")
        flat.add(c[0])
    if len(flat) != 1:
        raise ValueError(f"{path}: row {r}: a 1-way episode has one class, got {sorted(flat)}")
    cls = flat.pop()
    if dataset == "pascal":
        if cls not in range(1, 21):
            raise ValueError(f"{path}: row {r}: PASCAL class {cls} is not a VOC label 1..20")
        class_id = cls
    else:
        if cls not in cat_ids:
            raise ValueError(f"{path}: row {r}: COCO category id {cls} is not in the annotation file")
        class_id = list(cat_ids).index(cls)
    names = [_image_name(path, r, e) for e in images]
    return EpisodeSpec(class_id, names[0], tuple(names[1:]))


def write_official_list(specs: Sequence[EpisodeSpec], path: str | Path, dataset: str,
                        coco_category_ids: Sequence[int] | None = None) -> None:
    """Write episodes in the official format (one episode per row; PASCAL entries as (name, mask path) tuples
    like the paper's files, COCO entries as integer ids with COCO category ids)."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for s in specs:
            ids = [s.query, *s.supports]
            if dataset == "pascal":
                images = [[(i, f"/SegmentationClass/{i}.png") for i in ids]]
                cls = s.class_id
            else:
                images = [[int(i) for i in ids]]
                cls = list(coco_category_ids)[s.class_id]
            w.writerow([repr(images), repr([[[cls] for _ in ids]])])
