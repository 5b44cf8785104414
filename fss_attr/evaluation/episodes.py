"""Episode sources an evaluation can index: ``len(source)``, ``source[i]`` -> a batch-1 Episode, and a
fingerprint of the episode list (recorded with a run, so a resumed run is known to see the same episodes).

Any process can build episode ``i`` alone, which is what lets ranks of a job take any share of the episodes.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np


class EpisodeLoadError(ValueError):
    """An episode's files cannot be read (the message names the episode and its images)."""


class ControlledEpisodes:
    """The controlled episodes of :func:`fss_attr.data.controlled.make_episodes` (same seeds, same episodes),
    by index."""

    def __init__(self, n: int, seed: int = 42, n_shots: int = 1, size: tuple[int, int] = (192, 192)):
        self.seeds = [int(s) for s in np.random.default_rng(seed).integers(0, 2**31 - 1, size=n)]
        self.n_shots, self.size = n_shots, tuple(size)

    def __len__(self) -> int:
        return len(self.seeds)

    def __getitem__(self, i: int):
        from fss_attr.data.controlled import make_episode

        return make_episode(self.seeds[i], self.n_shots, self.size)

    def fingerprint(self) -> str:
        return _digest({"controlled": self.seeds, "shots": self.n_shots, "size": list(self.size)})


class BenchmarkEpisodes:
    """Episodes of a benchmark fold from their specs (:class:`fss_attr.data.episode_list.EpisodeSpec`)."""

    def __init__(self, source, specs: Sequence, size: tuple[int, int]):
        self.source, self.specs, self.size = source, list(specs), tuple(size)

    def __len__(self) -> int:
        return len(self.specs)

    def __getitem__(self, i: int):
        from fss_attr.data.episode_list import episode_from_spec

        spec = self.specs[i]
        try:
            return episode_from_spec(self.source, spec, self.size)
        except (OSError, ValueError, SyntaxError) as e:   # PIL raises SyntaxError on some corrupt headers
            raise EpisodeLoadError(f"episode {i} (class {spec.class_id}, query {spec.query}, supports "
                                   f"{', '.join(spec.supports)}): cannot load it: {e}") from e

    def fingerprint(self) -> str:
        return _digest({"dataset": self.source.name, "size": list(self.size),
                        "specs": [[s.class_id, s.query, list(s.supports)] for s in self.specs]})


def benchmark_episodes(name: str, root: str | Path, fold: int | str, n: int, seed: int, shots: int,
                       size: tuple[int, int], episode_list: str | Path | None = None,
                       source_options: dict | None = None):
    """(:class:`BenchmarkEpisodes`, the specs to save at ``episode_list`` or None): an existing list is read and
    checked (its first ``n`` episodes, ``shots`` supports each, classes of the fold; the project's CSV or the
    AffEx paper's official ``data_csv`` format); otherwise episodes are sampled and, with ``episode_list``, returned for the caller to save once the run starts. Reads only.

    Raises:
        ValueError / FileNotFoundError: naming the file or the option at fault.
    """
    from fss_attr.data.benchmarks import open_source, read_any_episode_list, sample_episodes

    source = open_source(name, root, fold, **(source_options or {}))
    to_save = None
    if episode_list is not None and Path(episode_list).is_file():
        try:
            specs = read_any_episode_list(episode_list, name, source)
        except (KeyError, ValueError, IndexError, TypeError) as e:
            raise ValueError(f"--episode-list {episode_list}: not an episode list (episode, class_id, query, "
                             f"support_1..support_N; or the AffEx paper's image_ids, classes): "
                             f"{type(e).__name__}: {e}") from None
        if len(specs) < n:
            raise ValueError(f"--episode-list {episode_list} holds {len(specs)} episodes, fewer than --episodes {n}")
        specs = specs[:n]
        for e, s in enumerate(specs):
            if len(s.supports) != shots or any(not x for x in s.supports) or not s.query:
                raise ValueError(f"--episode-list {episode_list}: episode {e} has supports "
                                 f"{[x for x in s.supports if x]} and query {s.query!r}, expected a query and "
                                 f"--shots {shots} support images")
            classes = getattr(source, "classes", None)
            if classes is not None and s.class_id not in classes:
                raise ValueError(f"--episode-list {episode_list}: episode {e} has class {s.class_id}, not a class of "
                                 f"{name} fold {fold} ({sorted(classes)})")
    else:
        specs = sample_episodes(source, n, shots, seed)
        to_save = specs if episode_list is not None else None
    return BenchmarkEpisodes(source, specs, size), to_save


def _digest(obj) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()
