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


def load_episode_list(path: str | Path) -> list[EpisodeSpec]:
    """Read a CSV written by :func:`save_episode_list`."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    specs = []
    for row in rows:
        supports = tuple(row[k] for k in sorted((k for k in row if k.startswith("support_")),
                                                 key=lambda k: int(k.split("_")[1])))
        specs.append(EpisodeSpec(int(row["class_id"]), row["query"], supports))
    return specs


def to_tensors(rgb: np.ndarray, mask: np.ndarray, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """RGB uint8 [H, W, 3] and bool [H, W] -> ImageNet-normalised [3, h, w] float32 and bool [h, w]
    (bilinear for the image, nearest for the mask)."""
    img = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div(255.0)[None]
    img = torch.nn.functional.interpolate(img, size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    m = torch.from_numpy(np.ascontiguousarray(mask)).float()[None, None]
    m = torch.nn.functional.interpolate(m, size=size, mode="nearest")[0, 0] > 0.5
    return imagenet_normalize(img), m


def episode_from_spec(source: SegmentationSource, spec: EpisodeSpec, size: tuple[int, int]) -> Episode:
    """Load one episode (batch of 1) at image size ``size``; its ``meta`` holds "dataset", "class_id",
    "class_name" (the source's name of the class), "query" and "supports" (image ids)."""
    q_img, q_mask = to_tensors(*source.load(spec.query, spec.class_id), size)
    sup = [to_tensors(*source.load(s, spec.class_id), size) for s in spec.supports]
    return Episode(q_img[None], torch.stack([s[0] for s in sup])[None], torch.stack([s[1] for s in sup])[None],
                   query_mask=q_mask[None],
                   meta={"dataset": source.name, "class_id": spec.class_id,
                         "class_name": source.class_name(spec.class_id), "query": spec.query,
                         "supports": list(spec.supports)})


def iterate_episodes(source: SegmentationSource, specs: Sequence[EpisodeSpec],
                     size: tuple[int, int]) -> Iterator[Episode]:
    for spec in specs:
        yield episode_from_spec(source, spec, size)
