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


def label_table(names) -> tuple[tuple[str, ...], torch.Tensor, torch.Tensor]:
    """A name table -> (segment names in order of first label, keys [K] int64 the named labels in ascending
    order, segment [K] int64 the segment index of each key). Memory is O(K), whatever the label values.

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
        if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not 0 <= label < 2 ** 63:
            raise ValueError(f"names: labels must be ints >= 0 (and < 2**63), got {label!r}")
        if not isinstance(name, str):
            raise TypeError(f"names: segment names must be str, got {name!r} for label {label}")
    items.sort(key=lambda kv: int(kv[0]))
    order: dict[str, int] = {}
    for _, name in items:
        order.setdefault(name, len(order))
    keys = torch.tensor([int(label) for label, _ in items], dtype=torch.int64)
    segment = torch.tensor([order[name] for _, name in items], dtype=torch.int64)
    return tuple(order), keys, segment


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


def rle_string_counts(counts: str | bytes, name: str = "segmentation") -> list[int]:
    """The run lengths of a compressed COCO RLE string (the format of pycocotools' maskApi ``rleFrString``:
    6-bit digits offset by 48, 5 value bits, a continuation bit, a sign bit on the last digit, and runs
    from the third on coded as the difference with the run two before). Raises ValueError on a malformed
    string, naming ``name``."""
    data = counts.encode("ascii") if isinstance(counts, str) else bytes(counts)
    runs: list[int] = []
    p = 0
    while p < len(data):
        x, k, more = 0, 0, True
        while more:
            if p >= len(data):
                raise ValueError(f"{name}: the compressed RLE counts end inside a number")
            c = data[p] - 48
            if not 0 <= c < 64:
                raise ValueError(f"{name}: the compressed RLE counts hold the character {chr(data[p])!r}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        runs.append(x)
    return runs


def check_rle_counts(runs, height: int, width: int, name: str = "segmentation") -> None:
    """Run lengths must be ints >= 0 that cover the height·width pixels exactly: pycocotools' decoder
    trusts them and leaves the pixels after a short run list uninitialised (and writes past a long one)."""
    if any(isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < 0 for r in runs):
        raise ValueError(f"{name}: RLE counts must be ints >= 0")
    total = sum(int(r) for r in runs)
    if total != height * width:
        raise ValueError(f"{name}: the RLE runs cover {total} pixels, its size {height}×{width} has "
                         f"{height * width}")


def decode_segmentation(segmentation, height: int, width: int, name: str = "segmentation") -> np.ndarray:
    """One COCO "segmentation" -> [H, W] bool, with pycocotools.

    Accepts a polygon list [[x0, y0, x1, y1, ...], ...], an uncompressed RLE {"size": [h, w], "counts": [int]}
    or a compressed RLE {"size", "counts": str/bytes}. As the COCO tools (Detectron) do, polygons with fewer
    than 3 points have no area and are dropped beside valid ones; an empty polygon list is an empty mask.
    Raises ValueError, naming ``name``, when the RLE's size is not (height, width), its runs do not cover
    height·width pixels exactly (pycocotools would read uninitialised memory), a polygon has an odd number
    of coordinates, or no polygon has 3 points (:class:`fss_attr.data.coco.Coco20i` skips such instances,
    as Detectron does).
    """
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, dict):
        if "counts" not in segmentation or "size" not in segmentation:
            raise ValueError(f"{name}: an RLE segmentation needs the keys 'size' and 'counts'")
        if list(segmentation["size"]) != [height, width]:
            raise ValueError(f"{name}: RLE size {list(segmentation['size'])} does not match the image "
                             f"({height}, {width})")
        counts = segmentation["counts"]
        if isinstance(counts, list):
            check_rle_counts(counts, height, width, name)
            rle = mask_utils.frPyObjects({"size": [height, width], "counts": [int(c) for c in counts]},
                                         height, width)
        elif isinstance(counts, (str, bytes)):
            check_rle_counts(rle_string_counts(counts, name), height, width, name)
            rle = {"size": [height, width], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
        else:
            raise ValueError(f"{name}: RLE counts must be a list of ints or a string, got {type(counts).__name__}")
    elif isinstance(segmentation, list):
        try:
            polys = [list(map(float, p)) for p in segmentation]
        except (TypeError, ValueError):
            raise ValueError(f"{name}: a polygon list must hold lists of numbers [x0, y0, x1, y1, ...]") from None
        if any(len(p) % 2 for p in polys):
            raise ValueError(f"{name}: a polygon must list (x, y) pairs, got an odd number of coordinates")
        if not polys:
            return np.zeros((height, width), dtype=bool)
        polys = [p for p in polys if len(p) >= 6]          # fewer than 3 points: no area (dropped, as Detectron)
        if not polys:
            raise ValueError(f"{name}: no polygon lists at least 3 (x, y) points; a segmentation needs at least "
                             "3 points")
        rle = mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
    else:
        raise TypeError(f"{name}: segmentation must be a polygon list or an RLE dict, got "
                        f"{type(segmentation).__name__}")
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
            out[index[name]] |= decode_segmentation(ann["segmentation"], height, width, f"annotations[{k}]")
    return torch.from_numpy(out)
