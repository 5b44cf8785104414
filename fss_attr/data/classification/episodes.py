"""N-way K-shot classification episodes sampled from an :class:`~fss_attr.data.classification.pool.ImagePool`.

Episode ``index`` of a sampler with seed ``seed`` is drawn by ``np.random.default_rng([seed, index])``: the
same (seed, index) always gives the same episode, whatever was sampled before. Within an episode the
n_way classes are distinct and each class's K support and n_query query images are distinct.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fss_attr.data.imagenet import imagenet_normalize
from fss_attr.data.classification.pool import ImagePool
from fss_attr.validation import check_positive_int


@dataclass(frozen=True)
class ClassificationEpisodeSpec:
    """Which pool images an episode holds.

    Attributes:
        classes: n_way pool class indices; label l is pool class ``classes[l]``.
        support: per label, the K pool image indices of its support images.
        query: per label, the n_query pool image indices of its query images.
    """

    classes: tuple[int, ...]
    support: tuple[tuple[int, ...], ...]
    query: tuple[tuple[int, ...], ...]

    @property
    def n_way(self) -> int:
        return len(self.classes)

    @property
    def k_shot(self) -> int:
        return len(self.support[0])

    @property
    def query_labels(self) -> torch.Tensor:
        """[n_way·n_query] int64, label-major (all queries of label 0 first)."""
        return torch.tensor([label for label, q in enumerate(self.query) for _ in q], dtype=torch.int64)


@dataclass
class ClassificationEpisode:
    """One materialised episode.

    Attributes:
        support: [n_way, K, 3, H, W] float32 ImageNet-normalized support images.
        query: [Qn, 3, H, W] float32 ImageNet-normalized query images (Qn = n_way·n_query, label-major).
        query_labels: [Qn] int64 labels in 0..n_way-1.
        class_names: the n_way class names in label order.
        spec: the pool indices (:class:`ClassificationEpisodeSpec`).
        support_masks: [n_way, K, H, W] bool object masks, or None when the pool has none.
        query_masks: [Qn, H, W] bool, or None.
    """

    support: torch.Tensor
    query: torch.Tensor
    query_labels: torch.Tensor
    class_names: tuple[str, ...]
    spec: ClassificationEpisodeSpec
    support_masks: torch.Tensor | None = None
    query_masks: torch.Tensor | None = None

    @property
    def n_way(self) -> int:
        return self.support.shape[0]

    @property
    def k_shot(self) -> int:
        return self.support.shape[1]

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.query.shape[-2:])


class EpisodeSampler:
    """Deterministic n_way-way k_shot-shot episodes with n_query queries per class (module docstring).

    Raises ValueError when the pool has fewer than ``n_way`` classes or a class has fewer than
    ``k_shot + n_query`` images.
    """

    def __init__(self, pool: ImagePool, n_way: int = 5, k_shot: int = 1, n_query: int = 15, seed: int = 0):
        if not isinstance(pool, ImagePool):
            raise TypeError(f"pool must be an ImagePool, got {type(pool).__name__}")
        self.pool = pool
        self.n_way = check_positive_int("n_way", n_way, 2)
        self.k_shot = check_positive_int("k_shot", k_shot)
        self.n_query = check_positive_int("n_query", n_query)
        self.seed = check_positive_int("seed", seed, 0)
        if pool.n_classes < self.n_way:
            raise ValueError(f"n_way={self.n_way} needs at least {self.n_way} classes; the pool has "
                             f"{pool.n_classes}: {pool.classes}")
        need = self.k_shot + self.n_query
        short = [(name, n) for name, n in zip(pool.classes, pool.counts()) if n < need]
        if short:
            raise ValueError(f"k_shot + n_query = {need} images per class are needed; classes with fewer: {short}")

    def spec(self, index: int) -> ClassificationEpisodeSpec:
        """The pool indices of episode ``index`` (deterministic in (seed, index))."""
        index = check_positive_int("index", index, 0)
        rng = np.random.default_rng([self.seed, index])
        classes = rng.choice(self.pool.n_classes, size=self.n_way, replace=False)
        support, query = [], []
        for c in classes:
            picks = rng.choice(self.pool.count(int(c)), size=self.k_shot + self.n_query, replace=False)
            support.append(tuple(int(i) for i in picks[: self.k_shot]))
            query.append(tuple(int(i) for i in picks[self.k_shot:]))
        return ClassificationEpisodeSpec(tuple(int(c) for c in classes), tuple(support), tuple(query))

    def episode(self, index: int) -> ClassificationEpisode:
        return materialize(self.pool, self.spec(index))

    __getitem__ = episode


def materialize(pool: ImagePool, spec: ClassificationEpisodeSpec) -> ClassificationEpisode:
    """The images (ImageNet-normalized), labels and masks of ``spec``."""
    support = torch.stack([torch.stack([pool.image(c, i) for i in ids]) for c, ids in zip(spec.classes, spec.support)])
    query = torch.stack([pool.image(c, i) for c, ids in zip(spec.classes, spec.query) for i in ids])
    s_masks = [[pool.mask(c, i) for i in ids] for c, ids in zip(spec.classes, spec.support)]
    q_masks = [pool.mask(c, i) for c, ids in zip(spec.classes, spec.query) for i in ids]
    has_masks = all(m is not None for m in q_masks) and all(m is not None for row in s_masks for m in row)
    return ClassificationEpisode(
        imagenet_normalize(support), imagenet_normalize(query), spec.query_labels,
        tuple(pool.classes[c] for c in spec.classes), spec,
        torch.stack([torch.stack(row) for row in s_masks]) if has_masks else None,
        torch.stack(q_masks) if has_masks else None)


class PoolFeatures:
    """Backbone features of every image of a pool, computed once (eval mode, no grad), for evaluation.

    An episode's features are then gathered by index: the same numbers as running the backbone on the
    episode's images, at a fraction of the cost when many episodes share a pool.
    """

    def __init__(self, model, pool: ImagePool, batch_size: int = 64, progress: bool = True):
        from tqdm import tqdm

        items = [(c, i) for c in range(pool.n_classes) for i in range(pool.count(c))]
        self.offsets = np.cumsum([0] + pool.counts())
        was_training = model.training
        model.eval()
        chunks = []
        with torch.no_grad():
            for start in tqdm(range(0, len(items), batch_size), desc="pool features", disable=not progress,
                              leave=False):
                batch = torch.stack([pool.image(c, i) for c, i in items[start: start + batch_size]])
                chunks.append(model.features(imagenet_normalize(batch)))
        model.train(was_training)
        self.features = torch.cat(chunks)          # [total, C, h, w]

    def gather(self, spec: ClassificationEpisodeSpec) -> tuple[torch.Tensor, torch.Tensor]:
        """(support [n_way, K, C, h, w], query [Qn, C, h, w]) features of ``spec``."""
        s = torch.tensor([[self.offsets[c] + i for i in ids] for c, ids in zip(spec.classes, spec.support)])
        q = torch.tensor([self.offsets[c] + i for c, ids in zip(spec.classes, spec.query) for i in ids])
        return self.features[s], self.features[q]
