"""Episodic training of a few-shot classifier (RCN: MSE against one-hot; prototypical network: cross-entropy)
with Adam, optionally keeping the weights that score best on a validation split."""
from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fss_attr.data.classification.episodes import EpisodeSampler, PoolFeatures
from fss_attr.fewshot.evaluate import evaluate
from fss_attr.data.classification.pool import ImagePool


@dataclass
class TrainConfig:
    """Episodic training settings.

    Attributes:
        n_way: classes per episode.
        shots: support images per class; training episode i has ``shots[i % len(shots)]``.
        n_query: query images per class.
        episodes: number of training episodes (one Adam step each).
        lr: Adam's learning rate; it is halved after 50% and again after 75% of the episodes.
        seed: episode sampling seed.
        val_every: validate every this many episodes (0: never); the best validation weights are kept.
        val_episodes: validation episodes per shot count (15 queries per class).
        bf16: run the backbone under bfloat16 autocast (CPU; about 2× faster there); the classifier head and
            the optimiser stay float32.
    """

    n_way: int = 5
    shots: tuple[int, ...] = (1,)
    n_query: int = 6
    episodes: int = 1000
    lr: float = 1e-3
    seed: int = 0
    val_every: int = 0
    val_episodes: int = 200
    bf16: bool = False

    def __post_init__(self):
        self.shots = tuple(int(k) for k in self.shots)
        if not self.shots or min(self.shots) < 1:
            raise ValueError(f"shots must hold positive ints, got {self.shots!r}")
        for name in ("episodes", "n_query"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")


@dataclass
class TrainResult:
    """Per-episode losses and accuracies (fractions), validation accuracies (% per shot count, keyed by the
    episode after which they were measured), the kept episode, the wall time and this process's CPU time."""

    losses: list[float] = field(default_factory=list)
    accuracies: list[float] = field(default_factory=list)
    validation: dict[int, dict[int, float]] = field(default_factory=dict)
    best_episode: int | None = None
    seconds: float = 0.0
    cpu_seconds: float = 0.0


def train_episodic(model, pool: ImagePool, config: TrainConfig, val_pool: ImagePool | None = None,
                   progress: bool = True) -> TrainResult:
    """Train ``model`` in place on episodes of ``pool`` (see :class:`TrainConfig`); returns the history and
    writes nothing (:func:`write_training` saves the model and the history). ``progress``: a tqdm bar and the
    validation accuracies on stderr/stdout; ``False`` is silent.

    With ``val_pool`` and ``config.val_every``, the model ends with the weights of the best mean validation
    accuracy over ``config.shots`` (the final weights when no validation ran).
    """
    from tqdm import tqdm

    samplers = {k: EpisodeSampler(pool, config.n_way, k, config.n_query, config.seed) for k in set(config.shots)}
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    milestones = [config.episodes // 2, (3 * config.episodes) // 4]
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.5)
    result, best = TrainResult(), (-1.0, None)
    start, cpu_start = time.perf_counter(), time.process_time()
    bar = tqdm(range(config.episodes), desc=f"train {model.method}", disable=not progress)
    for i in bar:
        model.train()
        episode = samplers[config.shots[i % len(config.shots)]].episode(i)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
            support, query = model.episode_features(episode.support, episode.query)
        scores = model.classify_features(support.float(), query.float())
        loss = model.loss(scores, episode.query_labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        result.losses.append(loss.item())
        result.accuracies.append((scores.argmax(1) == episode.query_labels).double().mean().item())
        if i % 20 == 19:
            window = slice(-100, None)
            bar.set_postfix(loss=f"{sum(result.losses[window]) / len(result.losses[window]):.4f}",
                            acc=f"{100 * sum(result.accuracies[window]) / len(result.accuracies[window]):.1f}")
        done = i + 1
        if val_pool is not None and config.val_every and (done % config.val_every == 0 or done == config.episodes):
            features = PoolFeatures(model, val_pool, progress=False)       # the backbone once for every k
            accs = {k: evaluate(model, val_pool, config.n_way, k, 15, config.val_episodes, seed=config.seed,
                                features=features, progress=False).mean for k in sorted(set(config.shots))}
            result.validation[done] = accs
            mean = sum(accs.values()) / len(accs)
            if mean > best[0]:
                best = (mean, copy.deepcopy(model.state_dict()))
                result.best_episode = done
            if progress:
                bar.write(f"episode {done}: validation accuracy {accs} (best after episode {result.best_episode})")
    if best[1] is not None:
        model.load_state_dict(best[1])
    model.eval()
    result.seconds = time.perf_counter() - start
    result.cpu_seconds = time.process_time() - cpu_start
    return result


def training_report(result: TrainResult, config: TrainConfig, **context) -> dict:
    """The JSON-ready record of a training run: ``context`` (plain values, e.g. the data source and its
    classes), the configuration, wall and CPU seconds, the kept episode, the validation accuracies (% by
    episode, then by shot count, keys as strings) and the per-episode "losses" and "accuracies" (fractions)."""
    return {**context, "config": vars(config) | {"shots": list(config.shots)}, "seconds": result.seconds,
            "cpu_seconds": result.cpu_seconds, "best_episode": result.best_episode,
            "validation": {str(k): {str(s): a for s, a in v.items()} for k, v in result.validation.items()},
            "losses": list(result.losses), "accuracies": list(result.accuracies)}


def write_training(model, result: TrainResult, config: TrainConfig, path: str | Path, **context) -> tuple[Path, Path]:
    """Save a trained model and its record: the checkpoint at ``path``
    (:func:`fss_attr.fewshot.checkpoint.save_checkpoint`, its info the record without the per-episode lists)
    and :func:`training_report` as JSON beside it (same name, ``.json``). Folders are created.

    Returns:
        (checkpoint path, JSON path).
    """
    from fss_attr.fewshot.checkpoint import save_checkpoint

    report = training_report(result, config, **context)
    info = {k: v for k, v in report.items() if k not in ("losses", "accuracies")}
    checkpoint = save_checkpoint(model, path, **info)
    record = Path(checkpoint).with_suffix(".json")
    record.write_text(json.dumps(report, indent=1))
    return checkpoint, record
