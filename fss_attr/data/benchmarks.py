"""Loaders for the standard few-shot segmentation benchmarks (PASCAL-5i, COCO-20i) with fixed episode lists."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from fss_attr.data.episode_list import (EpisodeSpec, count_queries, episode_from_spec, iterate_episodes,
                                        load_episode_list, sample_episodes, save_episode_list)
from fss_attr.data.episode import Episode

__all__ = ["EpisodeSpec", "count_queries", "sample_episodes", "save_episode_list", "load_episode_list",
           "episode_from_spec", "iterate_episodes", "open_source", "load_episodes", "read_any_episode_list"]


def open_source(name: str, root: str | Path, fold: int | str, split: str = "val", **options):
    """The benchmark loader for ``name`` ("pascal" or "coco"); ``fold`` 0..3 or "all" (every class, as the
    AffEx paper's episodes); ``options`` go to the loader (COCO: ``remove_small_annotations``,
    ``include_crowd``)."""
    if name == "pascal":
        from fss_attr.data.pascal import Pascal5i
        if options:
            raise ValueError(f"PASCAL-5i takes no options, got {sorted(options)}")
        return Pascal5i(root, fold, split)
    if name == "coco":
        from fss_attr.data.coco import Coco20i
        return Coco20i(root, fold, split, **options)
    raise ValueError(f"dataset must be 'pascal' or 'coco', got {name!r}")


def load_episodes(name: str, root: str | Path, fold: int, n: int = 1000, seed: int = 42, shots: int = 1,
                  size: tuple[int, int] = (384, 384), episode_list: str | Path | None = None,
                  repeat: bool = False) -> Iterator[Episode]:
    """Episodes of a benchmark fold, 1-way, batch 1, resized to ``size``.

    With ``episode_list`` an existing CSV is replayed exactly (its first ``n`` episodes, which must have
    ``shots`` supports); a path that does not exist yet is written with the sampled list (seeded, so runs
    repeat), so later runs read the same episodes. ``repeat``: allow ``n`` above the fold's number of distinct
    queries (see :func:`fss_attr.data.episode_list.sample_episodes`, which otherwise refuses and says how many
    there are).
    """
    source = open_source(name, root, fold)
    if episode_list is not None and Path(episode_list).is_file():
        specs = read_any_episode_list(episode_list, name, source)
        if len(specs) < n:
            raise ValueError(f"episode_list {episode_list} holds {len(specs)} episodes, fewer than n={n}")
        specs = specs[:n]
        bad = sorted({len(s.supports) for s in specs} - {shots})
        if bad:
            raise ValueError(f"episode_list {episode_list} has episodes with {bad} supports, expected shots={shots}")
    else:
        specs = sample_episodes(source, n, shots, seed, repeat)
        if episode_list is not None:
            save_episode_list(specs, episode_list)
    return iterate_episodes(source, specs, size)


def read_any_episode_list(path: str | Path, name: str, source) -> list[EpisodeSpec]:
    """The episodes of a list in the project's format (:func:`save_episode_list`) or the AffEx paper's official
    ``data_csv`` format (:mod:`fss_attr.data.official_lists`), told apart by the header."""
    from fss_attr.data.official_lists import is_official_list, read_official_list

    if is_official_list(path):
        return read_official_list(path, name, getattr(source, "cat_ids", None))
    return load_episode_list(path)
