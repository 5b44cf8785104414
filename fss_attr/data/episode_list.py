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
    """What a benchmark loader provides: (image id, class id) pairs and the pixels of each."""

    name: str

    def image_class_pairs(self) -> Sequence[tuple[str, int]]: ...

    def load(self, image_id: str, class_id: int) -> tuple[np.ndarray, np.ndarray]:
        """(RGB uint8 [H, W, 3], foreground bool [H, W]) of class_id in image image_id."""


@dataclass(frozen=True)
class EpisodeSpec:
    """One 1-way episode: a class, a query image and the support images."""

    class_id: int
    query: str
    supports: tuple[str, ...]


def sample_episodes(source: SegmentationSource, n: int, shots: int, seed: int = 42) -> list[EpisodeSpec]:
    """n episodes: queries taken in turn from a seeded shuffle of the (image, class) pairs, supports drawn
    from other images of the same class (HSNet-style). Classes with fewer than shots + 1 images are skipped."""
    pairs = list(source.image_class_pairs())
    by_class: dict[int, list[str]] = {}
    for image_id, class_id in pairs:
        by_class.setdefault(class_id, []).append(image_id)
    usable = [(i, c) for i, c in pairs if len(by_class[c]) > shots]
    if not usable:
        raise ValueError(f"no class of {source.name} has {shots + 1} or more images: "
                         f"cannot build {shots}-shot episodes")
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
    """Load one episode (batch of 1) at image size ``size``. A source with ``load_ignore(image_id, class_id)``
    (PASCAL: label 255) gives the query's ignore pixels, resized by nearest neighbour like the masks."""
    q_rgb, q_fg = source.load(spec.query, spec.class_id)
    q_img, q_mask = to_tensors(q_rgb, q_fg, size)
    q_ignore = None
    if hasattr(source, "load_ignore"):
        q_ignore = to_tensors(q_rgb, source.load_ignore(spec.query, spec.class_id), size)[1][None]
    sup = [to_tensors(*source.load(s, spec.class_id), size) for s in spec.supports]
    return Episode(q_img[None], torch.stack([s[0] for s in sup])[None], torch.stack([s[1] for s in sup])[None],
                   query_mask=q_mask[None], query_ignore=q_ignore,
                   meta={"dataset": source.name, "class_id": spec.class_id, "query": spec.query,
                         "supports": list(spec.supports)})


def iterate_episodes(source: SegmentationSource, specs: Sequence[EpisodeSpec],
                     size: tuple[int, int]) -> Iterator[Episode]:
    for spec in specs:
        yield episode_from_spec(source, spec, size)
