"""Named segments in the three forms a Segment Attribution Table accepts, and conversions between them.

- Label maps: [B, H, W] integer labels with a *name table* (a sequence, label i -> names[i], or a mapping
  {label: name}; several labels may share a name; labels absent from the table are ignored, e.g. 255).
  Label maps cannot overlap.
- Binary masks: [B, S, H, W] bool (or 0/1), mask s is the segment ``names[s]``; masks may overlap, and an
  all-zero mask means the segment is missing from that image.
- COCO annotations: per image a list of dicts whose "segmentation" is a polygon list or an RLE (compressed or
  not), named by "name", or by "category_id" through ``categories``; decoded with pycocotools into binary
  masks (annotations with the same name are united).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch


def label_table(names) -> tuple[tuple[str, ...], torch.Tensor]:
    """A name table -> (segment names in order of first label, lookup [max_label + 2] int64: label -> segment
    index, or S (a discard bin) for labels without a name; the last entry catches labels above max_label).

    ``names``: a sequence of str (label i is names[i]) or a mapping {int label >= 0: str}.
    """
    if isinstance(names, Mapping):
        items = list(names.items())
    elif isinstance(names, Sequence) and not isinstance(names, str):
        items = list(enumerate(names))
    else:
        raise TypeError(f"names must be a sequence of str or a mapping {{label: name}}, got {type(names).__name__}")
    if not items:
        raise ValueError("names must name at least one label")
    for label, name in items:
        if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or label < 0:
            raise ValueError(f"names: labels must be ints >= 0, got {label!r}")
        if not isinstance(name, str):
            raise TypeError(f"names: segment names must be str, got {name!r} for label {label}")
    items.sort(key=lambda kv: int(kv[0]))
    order: dict[str, int] = {}
    for _, name in items:
        order.setdefault(name, len(order))
    top = int(items[-1][0])
    lut = torch.full((top + 2,), len(order), dtype=torch.int64)
    for label, name in items:
        lut[int(label)] = order[name]
    return tuple(order), lut


def check_names(names, s: int | None = None) -> tuple[str, ...]:
    """Segment names of binary masks: distinct str, ``s`` of them when given."""
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise TypeError(f"names must be a sequence of str, got {type(names).__name__}")
    names = tuple(names)
    if not all(isinstance(n, str) for n in names):
        raise TypeError(f"names must hold str only, got {names!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"names must be distinct, got {names!r}")
    if s is not None and len(names) != s:
        raise ValueError(f"names has {len(names)} entries but the masks hold {s} segments")
    return names


def decode_segmentation(segmentation, height: int, width: int) -> np.ndarray:
    """One COCO "segmentation" (polygon list [[x0, y0, x1, y1, ...], ...], uncompressed RLE {"size", "counts":
    list}, or compressed RLE {"size", "counts": str/bytes}) -> [H, W] bool, with pycocotools."""
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, dict):
        if "counts" not in segmentation or "size" not in segmentation:
            raise ValueError("an RLE segmentation needs the keys 'size' and 'counts'")
        if list(segmentation["size"]) != [height, width]:
            raise ValueError(f"RLE size {list(segmentation['size'])} does not match the image ({height}, {width})")
        rle = segmentation
        if isinstance(rle["counts"], list):
            rle = mask_utils.frPyObjects(rle, height, width)
        elif isinstance(rle["counts"], str):
            rle = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
    elif isinstance(segmentation, list):
        if not segmentation:
            return np.zeros((height, width), dtype=bool)
        polys = [list(map(float, p)) for p in segmentation]
        if any(len(p) < 6 or len(p) % 2 for p in polys):
            raise ValueError("a polygon must list at least 3 (x, y) points as [x0, y0, x1, y1, ...]")
        rle = mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
    else:
        raise TypeError(f"segmentation must be a polygon list or an RLE dict, got {type(segmentation).__name__}")
    return mask_utils.decode(rle).astype(bool)


def coco_masks(annotations: Sequence[Mapping], names: Sequence[str], height: int, width: int,
               categories: Mapping[int, str] | None = None) -> torch.Tensor:
    """One image's COCO annotations -> [S, H, W] bool masks in the order of ``names`` (a name without an
    annotation gives an all-zero mask: the segment is missing). Annotations whose name is not in ``names`` are
    ignored. Each annotation is named by its "name", else by ``categories[ann["category_id"]]``."""
    names = check_names(names)
    index = {n: i for i, n in enumerate(names)}
    out = np.zeros((len(names), height, width), dtype=bool)
    for k, ann in enumerate(annotations):
        if "segmentation" not in ann:
            raise ValueError(f"annotations[{k}] has no 'segmentation'")
        if "name" in ann:
            name = ann["name"]
        elif categories is not None and "category_id" in ann:
            if ann["category_id"] not in categories:
                raise ValueError(f"annotations[{k}]: category_id {ann['category_id']!r} is not in categories")
            name = categories[ann["category_id"]]
        else:
            raise ValueError(f"annotations[{k}] needs a 'name', or a 'category_id' with categories given")
        if name in index:
            out[index[name]] |= decode_segmentation(ann["segmentation"], height, width)
    return torch.from_numpy(out)
