"""The model-adapter protocol: what fss_attr needs from a matching-based few-shot segmentation model.

An adapter splits the model into ``encode`` (backbone and matching, once per episode) and ``decode`` (the
part after the matching, cheap to re-run), and exposes each level's matching as a LevelScores or
LevelFeatures. The paper's level weights (docs/affex.md) then come from re-running ``decode`` with one
level's contribution zeroed.

Speed (optional parts of the protocol, each with a default that is always right):

- ``iter_ablations`` / ``decode_ablations``: the L ablated decodes. The default joins the ablated states of
  :meth:`MatchingAdapter.ablated_state` (when an adapter implements it) along the batch and decodes them in
  chunks of ``ablation_batch_size`` batch elements; without that hook it runs one ``decode(state, l)`` per
  level. DCAMA, HSNet/DMTNet and FeatureMatcher override it with exact fast paths (what the ablation does not
  change is computed once; the first layer after the matching is linear in the zeroed channel).
  ``level_weights`` reads it; ``sequential_level_weights`` is the per-level reference.
- ``query_features`` / ``forward_with_query``: the query's part of the encode, computed once and reused for
  many support sets (the perturbation metrics change only the support).
"""
from __future__ import annotations

import abc
import dataclasses
from typing import Any, Sequence

import torch
from torch import nn

from fss_attr.data.episode import Episode
from fss_attr.affex.levels import LevelFeatures, LevelScores


class MatchingAdapter(nn.Module, abc.ABC):
    """Base class of model adapters.

    Subclasses implement ``encode``, ``decode`` and ``levels``. ``decode`` must give the model's own logits
    when ``ablate_level`` is None: capturing the levels must not change the model's outputs.
    """

    @property
    @abc.abstractmethod
    def n_levels(self) -> int:
        """L, the number of matching levels the adapter exposes."""

    @abc.abstractmethod
    def encode(self, episode: Episode) -> Any:
        """Run the backbone and the matching; returns a state object that ``decode`` and ``levels`` read."""

    @abc.abstractmethod
    def decode(self, state: Any, ablate_level: int | None = None) -> torch.Tensor:
        """Logits [B, 2, H, W] (background, foreground) at the episode's image size.

        With ``ablate_level = l``, level l's contribution (its coarse-mask channel) is zeroed first.
        """

    @abc.abstractmethod
    def levels(self, state: Any) -> Sequence[LevelScores | LevelFeatures]:
        """The L levels of matching of the encoded episode, in the order of ``ablate_level``."""

    def check_episode(self, episode, parameters: bool = True) -> None:
        """The one check that an input can run through this model: an :class:`Episode` whose images have the
        dtype and device of the model's floating-point parameters (models without any accept every episode;
        ``parameters=False`` checks the type only, for models whose modules may cast their input, such as a
        bring-your-own backbone).

        Raises:
            TypeError: not an Episode, or a dtype or device that differs from the model's, naming both.
        """
        if not isinstance(episode, Episode):
            raise TypeError(f"episode must be a fss_attr.data.episode.Episode, got {type(episode).__name__}")
        if not parameters:
            return
        p = next((t for t in self.parameters() if t.is_floating_point()), None)
        if p is not None and (episode.query.dtype != p.dtype or episode.device != p.device):
            raise TypeError(f"the episode is {episode.query.dtype} on {episode.device}, {type(self).__name__} is "
                            f"{p.dtype} on {p.device}: move one to the other (e.g. model.to({episode.query.dtype}))")

    def forward(self, episode: Episode) -> torch.Tensor:
        """Logits [B, 2, H, W] of the episode."""
        return self.decode(self.encode(episode))

    # ---- ablation decodes, batched --------------------------------------------------------------------------

    #: batch elements (levels × episodes) per batched ablation decode: the memory knob of :meth:`iter_ablations`
    ablation_batch_size: int = 8

    def ablated_state(self, state: Any, level: int) -> Any:
        """Optional hook: a state whose ``decode(·)`` equals ``decode(state, ablate_level=level)``.

        Adapters that implement it (and whose states :func:`concat_states` can join) get batched ablation
        decodes from :meth:`iter_ablations` without writing their own.
        """
        raise NotImplementedError

    def iter_ablations(self, state: Any, levels: Sequence[int] | None = None, batch_size: int | None = None):
        """Yields (level indices, logits [k, B, 2, H, W]): ``decode(state, ablate_level=l)`` for every l in
        ``levels`` (default all), k levels per chunk, about ``batch_size`` (default :attr:`ablation_batch_size`)
        batch elements per pass.

        Base implementation: with :meth:`ablated_state`, the k ablated states joined along the batch and decoded
        in one pass; without it, one decode per level (the reference). Adapters override it with exact fast paths
        (same numbers up to floating-point rounding, tested in float64 against the per-level decodes).
        """
        levels = list(range(self.n_levels)) if levels is None else [int(l) for l in levels]
        if type(self).ablated_state is MatchingAdapter.ablated_state:
            for l in levels:
                yield [l], self.decode(state, ablate_level=l)[None]
            return
        for chunk in level_chunks(levels, batch_size or self.ablation_batch_size, _batch_of(state)):
            logits = self.decode(concat_states([self.ablated_state(state, l) for l in chunk]))
            yield chunk, logits.view(len(chunk), -1, *logits.shape[1:])

    def decode_ablations(self, state: Any, levels: Sequence[int] | None = None,
                         batch_size: int | None = None) -> torch.Tensor:
        """Logits [K, B, 2, H, W] of ``decode(state, ablate_level=l)`` for the K levels (default all L)."""
        return torch.cat([lg for _, lg in self.iter_ablations(state, levels, batch_size)])

    def iter_ablated_foreground(self, state: Any, batch_size: int | None = None):
        """Yields (level indices, foreground logits [k, B, H, W]): channel 1 of ``decode(state, ablate_level=l)``
        for every level, what :meth:`level_weights` reads. Default: channel 1 of :meth:`iter_ablations`; an
        adapter may compute that channel alone (DCAMA does)."""
        for chunk, lg in self.iter_ablations(state, None, batch_size):
            yield chunk, lg[:, :, 1]

    def sequential_level_weights(self, state: Any, region: torch.Tensor,
                                 logits: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`level_weights` computed with one ``decode(state, ablate_level=l)`` per level: the reference."""
        logits = self.decode(state) if logits is None else logits
        return level_weights_from_ablations(logits, [self.decode(state, ablate_level=l)
                                                     for l in range(self.n_levels)], region)

    @torch.no_grad()
    def level_weights(self, state: Any, region: torch.Tensor, logits: torch.Tensor | None = None,
                      batch_size: int | None = None) -> torch.Tensor:
        """The paper's layer-ablation weights [B, L] float64: |Δ mean foreground logit over R| per level, summing to 1.

        Episodes where no ablation changes the logit get uniform weights. The L ablated decodes run through
        :meth:`iter_ablated_foreground` (batched, ``batch_size`` elements per pass); the numbers are those of the
        per-level decodes (:meth:`sequential_level_weights`) up to floating-point rounding.
        """
        logits = self.decode(state) if logits is None else logits
        fg_mean = _fg_mean(region)
        base = fg_mean(logits[:, 1])
        deltas = torch.empty(base.shape[0], self.n_levels, dtype=torch.float64, device=base.device)
        for chunk, fg in self.iter_ablated_foreground(state, batch_size):
            for j, l in enumerate(chunk):
                deltas[:, l] = (fg_mean(fg[j]) - base).abs()
        return _normalise_deltas(deltas, self.n_levels)

    # ---- the query encoded once ----------------------------------------------------------------------------

    def query_features(self, query: torch.Tensor) -> Any:
        """What the encode computes from the query images [B, 3, H, W] alone, for :meth:`forward_with_query`;
        None (the default) when the adapter does not split its encode."""
        return None

    def forward_with_query(self, episode: Episode, features: Any, index: torch.Tensor) -> torch.Tensor:
        """Logits [b, 2, H, W] of ``episode`` whose query i is query ``index[i]`` of ``features`` (from
        :meth:`query_features`): the support changes, the query's features are reused. Same numbers as
        ``self(episode)`` up to floating-point rounding of batch-size dependent kernels."""
        return self(episode)


def _batch_of(state: Any) -> int:
    """B of a state: the leading size of its first tensor (1 if none)."""
    for t in _tensors(state):
        return max(1, int(t.shape[0]))
    return 1


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            yield from _tensors(getattr(obj, f.name))
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)


def level_chunks(levels: Sequence[int], batch_size: int, b: int) -> list[list[int]]:
    """``levels`` in chunks of max(1, batch_size // b) (b: the episodes per state)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    k = max(1, batch_size // max(1, b))
    return [list(levels[i:i + k]) for i in range(0, len(levels), k)]


def concat_states(states: Sequence[Any]) -> Any:
    """States joined along the batch: tensors concatenated on dim 0; dataclasses, lists, tuples and dicts
    recursively; anything else must be equal in all states (shapes, counts) and is kept."""
    first = states[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(list(states))
    if dataclasses.is_dataclass(first) and not isinstance(first, type):
        return dataclasses.replace(first, **{f.name: concat_states([getattr(s, f.name) for s in states])
                                             for f in dataclasses.fields(first) if f.init})
    if isinstance(first, (list, tuple)) and not (first and all(not isinstance(v, (torch.Tensor, list, tuple, dict))
                                                                and not dataclasses.is_dataclass(v) for v in first)):
        joined = [concat_states([s[i] for s in states]) for i in range(len(first))]
        return type(first)(joined) if isinstance(first, list) else tuple(joined)
    if isinstance(first, dict):
        return {k: concat_states([s[k] for s in states]) for k in first}
    if any(s != first for s in states[1:]):
        raise ValueError(f"cannot join states that differ in a non-tensor value: {first!r}")
    return first


def level_weights_from_ablations(logits: torch.Tensor, ablated: Sequence[torch.Tensor],
                                 region: torch.Tensor) -> torch.Tensor:
    """The paper's layer-ablation weights [B, L] float64 from the logits [B, 2, H, W] and the L ablated decodes'
    logits (each [B, 2, H, W]): |Δ mean foreground logit over ``region`` [B, H, W]| per level, summing to 1
    (uniform where no ablation changes it). The arithmetic of :meth:`MatchingAdapter.level_weights`."""
    fg_mean = _fg_mean(region)
    base = fg_mean(logits[:, 1])
    deltas = torch.stack([(fg_mean(a[:, 1]) - base).abs() for a in ablated], dim=1)
    return _normalise_deltas(deltas, len(ablated))


def _fg_mean(region: torch.Tensor):
    """fg [B, H, W] -> [B] float64: the mean over ``region`` [B, H, W] (float64 sum)."""
    r = region.to(torch.float64)
    size = r.flatten(1).sum(1).clamp_min(1)
    return lambda fg: (fg.double() * r).flatten(1).sum(1) / size


def _normalise_deltas(deltas: torch.Tensor, n_levels: int) -> torch.Tensor:
    total = deltas.sum(1, keepdim=True)
    uniform = torch.full_like(deltas, 1.0 / n_levels)
    return torch.where(total > 0, deltas / total.clamp_min(1e-30), uniform)
