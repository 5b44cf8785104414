"""Few-shot accuracy over many test episodes, with the 95% confidence interval the literature reports."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from fss_attr.data.classification.episodes import EpisodeSampler, PoolFeatures
from fss_attr.data.classification.pool import ImagePool
from fss_attr.validation import check_positive_int


@dataclass
class Accuracy:
    """Mean episode accuracy (%) and the half-width of its 95% interval, 1.96·std/√n (%).

    Attributes:
        mean, ci95: percentages.
        episodes: n.
        per_episode: [n] float64 fraction of each episode's queries classified correctly.
    """

    mean: float
    ci95: float
    episodes: int
    per_episode: np.ndarray

    def __str__(self) -> str:
        return f"{self.mean:.2f} ± {self.ci95:.2f}"


def accuracy_summary(per_episode) -> Accuracy:
    """:class:`Accuracy` of per-episode accuracies (fractions in [0, 1])."""
    a = np.asarray(per_episode, dtype=np.float64)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"per_episode must be a non-empty 1-D sequence, got shape {a.shape}")
    ci = 1.96 * a.std(ddof=1) / math.sqrt(a.size) if a.size > 1 else float("nan")
    return Accuracy(float(100.0 * a.mean()), float(100.0 * ci), int(a.size), a)


@torch.no_grad()
def evaluate(model, pool: ImagePool, n_way: int = 5, k_shot: int = 1, n_query: int = 15, episodes: int = 600,
             seed: int = 0, features: PoolFeatures | None = None, progress: bool = True) -> Accuracy:
    """Accuracy of ``model`` (eval mode) on ``episodes`` episodes of ``pool``.

    The backbone runs once over the pool (:class:`~fss_attr.data.classification.episodes.PoolFeatures`; pass
    ``features`` to share it between shot counts); each episode then only runs the classifier head.
    """
    from tqdm import tqdm

    check_positive_int("episodes", episodes)
    sampler = EpisodeSampler(pool, n_way, k_shot, n_query, seed)
    was_training = model.training
    model.eval()
    features = features or PoolFeatures(model, pool, progress=progress)
    correct = []
    for i in tqdm(range(episodes), desc=f"{n_way}-way {k_shot}-shot", disable=not progress, leave=False):
        spec = sampler.spec(i)
        scores = model.classify_features(*features.gather(spec))
        correct.append((scores.argmax(1) == spec.query_labels).double().mean().item())
    model.train(was_training)
    return accuracy_summary(correct)
