"""Fixed few-shot episode lists (one CSV row per episode) and turning them into Episode batches."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol, Sequence

import numpy as np
import torch

from fss_attr.data.episode import Episode
from fss_attr.data.imagenet import imagenet_normalize



class SegmentationSource(Protocol):
    """What a benchmark loader provides: (image id, class id) pairs, the pixels of each, and class names."""

    name: str

    def image_class_pairs(self) -> Sequence[tuple[str, int]]: ...

    def class_name(self, class_id: int) -> str:
        """The class's name (e.g. "aeroplane"); an episode's ``meta["class_name"]``."""

    def load(self, image_id: str, class_id: int) -> tuple[np.ndarray, np.ndarray]:
        """(RGB uint8 [H, W, 3], foreground bool [H, W]) of class_id in image image_id."""


@dataclass(frozen=True)
class EpisodeSpec:
    """One 1-way episode: a class, a query image and the support images."""

    class_id: int
    query: str
    supports: tuple[str, ...]


def count_queries(source: SegmentationSource, shots: int) -> int:
    """How many distinct episodes ``source`` holds for ``shots`` supports: the (image, class) pairs whose class
    has at least ``shots`` other images (each can be a query once)."""
    by_class: dict[int, int] = {}
    pairs = list(source.image_class_pairs())
    for _, class_id in pairs:
        by_class[class_id] = by_class.get(class_id, 0) + 1
    return sum(1 for _, c in pairs if by_class[c] > shots)


def sample_episodes(source: SegmentationSource, n: int, shots: int, seed: int = 42,
                    repeat: bool = False) -> list[EpisodeSpec]:
    """n episodes: queries taken in turn from a seeded shuffle of the (image, class) pairs, supports drawn
    from other images of the same class (HSNet-style). Classes with fewer than shots + 1 images are skipped.

    Args:
        n: episodes wanted (>= 1).
        shots: supports per episode (>= 1).
        seed: the shuffle's and the support draws' seed.
        repeat: allow n above the number of distinct queries (:func:`count_queries`): queries then come round
            again in the same order, each time with freshly drawn supports (as HSNet's 1000-episode test of a
            small fold does). Without it such an n is refused.

    Raises:
        ValueError: n or shots not a positive int; no class with shots + 1 images; or n larger than the
            number of distinct queries without ``repeat`` (the message gives that number).
    """
    for name, v in (("n", n), ("shots", shots)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    pairs = list(source.image_class_pairs())
    by_class: dict[int, list[str]] = {}
    for image_id, class_id in pairs:
        by_class.setdefault(class_id, []).append(image_id)
    usable = [(i, c) for i, c in pairs if len(by_class[c]) > shots]
    if not usable:
        raise ValueError(f"no class of {source.name} has {shots + 1} or more images: "
                         f"cannot build {shots}-shot episodes")
    if n > len(usable) and not repeat:
        raise ValueError(f"{source.name} holds {len(usable)} distinct {shots}-shot episodes (queries whose class has "
                         f"{shots + 1} or more images), fewer than the {n} asked: ask for at most {len(usable)}, or "
                         "allow repeated queries (repeat=True; each repeat draws new supports)")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(usable))
    specs = []
    for e in range(n):
        image_id, class_id = usable[order[e % len(usable)]]
        others = [i for i in by_class[class_id] if i != image_id]
        chosen = rng.choice(len(others), size=shots, replace=False)
        specs.append(EpisodeSpec(class_id, image_id, tuple(others[j] for j in sorted(chosen))))
    return specs


def save_episode_list(specs: Sequence[EpisodeSpec], path: str | Path) -> None:
    """Write episodes as CSV: episode, class_id, query, support_1..support_N."""
    shots = len(specs[0].supports) if specs else 0
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["episode", "class_id", "query"] + [f"support_{i + 1}" for i in range(shots)])
        for e, s in enumerate(specs):
            w.writerow([e, s.class_id, s.query, *s.supports])


def load_episode_list(path: str | Path, classes: Sequence[int] | None = None,
                      shots: int | None = None) -> list[EpisodeSpec]:
    """Read a CSV written by :func:`save_episode_list` (columns episode, class_id, query, support_1..support_N).

    ``classes`` (e.g. a source's fold classes) and ``shots``, when given, are what every row must use.
    Raises FileNotFoundError, or ValueError naming the file (and the row, counted from 2 as in a spreadsheet)
    for a missing column, a class id that is not an int or not in ``classes``, an empty class or query cell,
    more cells than columns, or (with ``shots``) a row with another number of supports. Without ``shots`` a
    short row's missing supports are left out of its spec (never None), for the caller to check.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"episode list {path} does not exist")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in ("class_id", "query") if c not in header]
        support_cols = [k for k in header if k.startswith("support_")]
        if not missing and not support_cols:
            missing = ["support_1"]
        if missing:
            raise ValueError(f"episode list {path}: missing column(s) {missing}; expected episode, class_id, "
                             f"query, support_1..support_N (got {header})")
        try:
            support_cols.sort(key=lambda k: int(k.split("_", 1)[1]))
        except ValueError:
            raise ValueError(f"episode list {path}: support columns must be named support_1..support_N, "
                             f"got {support_cols}") from None
        if shots is not None and len(support_cols) != shots:
            raise ValueError(f"episode list {path} has {len(support_cols)} support columns, expected {shots} "
                             "(--shots)")
        allowed = None if classes is None else {int(c) for c in classes}
        specs = []
        for line, row in enumerate(reader, start=2):
            where = f"episode list {path}, row {line}"
            if None in row:
                raise ValueError(f"{where}: more cells than columns")
            if any(row[k] is None or not row[k].strip() for k in ("class_id", "query")):
                raise ValueError(f"{where}: the class_id or query cell is empty or missing")
            supports = tuple(row[k].strip() for k in support_cols if row[k] is not None and row[k].strip())
            if shots is not None and len(supports) != shots:
                raise ValueError(f"{where}: {len(supports)} support images, expected {shots}")
            try:
                class_id = int(row["class_id"])
            except ValueError:
                raise ValueError(f"{where}: class_id {row['class_id']!r} is not an int") from None
            if allowed is not None and class_id not in allowed:
                raise ValueError(f"{where}: class {class_id} is not one of this fold's classes "
                                 f"{sorted(allowed)}")
            specs.append(EpisodeSpec(class_id, row["query"].strip(), supports))
    return specs


def to_tensors(rgb: np.ndarray, mask: np.ndarray, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """RGB uint8 [H, W, 3] and bool [H, W] -> ImageNet-normalized [3, h, w] float32 and bool [h, w]
    (bilinear, align_corners=False, for the image; "nearest-exact" for the mask: both sample at pixel centres,
    whereas "nearest" would shift the mask up to half an output pixel against the image)."""
    img = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div(255.0)[None]
    img = torch.nn.functional.interpolate(img, size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    m = torch.from_numpy(np.ascontiguousarray(mask)).float()[None, None]
    m = torch.nn.functional.interpolate(m, size=size, mode="nearest-exact")[0, 0] > 0.5
    return imagenet_normalize(img), m


def episode_from_spec(source: SegmentationSource, spec: EpisodeSpec, size: tuple[int, int]) -> Episode:
    """Load one episode (batch of 1) at image size ``size``; its ``meta`` holds "dataset", "class_id",
    "class_name" (the source's name of the class), "query" and "supports" (image ids). A class the source
    does not hold (a class of another fold: its masks would all be empty) raises ValueError. A source with
    ``load_ignore(image_id, class_id)`` (PASCAL: label 255) gives the query's ignore pixels
    (``Episode.query_ignore``), resized by nearest neighbour like the masks."""
    classes = getattr(source, "classes", None)
    if classes is not None and spec.class_id not in classes:
        raise ValueError(f"episode class {spec.class_id} is not one of {source.name}'s classes {list(classes)}")
    q_rgb, q_fg = source.load(spec.query, spec.class_id)
    q_img, q_mask = to_tensors(q_rgb, q_fg, size)
    q_ignore = None
    if hasattr(source, "load_ignore"):
        q_ignore = to_tensors(q_rgb, source.load_ignore(spec.query, spec.class_id), size)[1][None]
    sup = [to_tensors(*source.load(s, spec.class_id), size) for s in spec.supports]
    return Episode(q_img[None], torch.stack([s[0] for s in sup])[None], torch.stack([s[1] for s in sup])[None],
                   query_mask=q_mask[None], query_ignore=q_ignore,
                   meta={"dataset": source.name, "class_id": spec.class_id,
                         "class_name": source.class_name(spec.class_id), "query": spec.query,
                         "supports": list(spec.supports)})


def iterate_episodes(source: SegmentationSource, specs: Sequence[EpisodeSpec],
                     size: tuple[int, int]) -> Iterator[Episode]:
    for spec in specs:
        yield episode_from_spec(source, spec, size)
