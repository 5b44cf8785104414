"""What every baseline explainer shares: the attribution target and the ``explain`` call of the explainer
protocol (docs/explainers.md), ``explain(model, episode, region="logits") -> fss_attr.Explanation``.

Target (the same for every baseline): the model's foreground output, its foreground logit, averaged over the
query region R, as a function of the support RGB values (support masks and query fixed):

    f(support_images) = mean_{p ∈ R} model(episode with these support images)[:, 1, p]

Attributions over the support RGB [B, N, 3, H, W] are averaged over the channel axis (signed: a pixel whose
colour raises the target ranks above one that lowers it) and min-max scaled per episode to [0, 1], like AffEx
maps. Target and reduction are those of the AffEx paper's code (captum on the mean logit over R, then the
channel mean).
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

from fss_attr.explanation import Explanation, minmax, resolve_region
from fss_attr.data.episode import Episode
from fss_attr.metrics.scores import foreground_logit


class SupportTarget(nn.Module):
    """f(support_images) -> [B'] mean foreground logit over R (:func:`fss_attr.metrics.scores.foreground_logit`,
    in the logits' dtype), as an nn.Module (for captum).

    forward(support_images [B', N, 3, H, W], query [B', 3, H, W], support_masks [B', N, H, W] bool,
    region [B', H, W] bool) -> [B'].
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, support_images, query, support_masks, region):
        logits = self.model(Episode(query, support_images, support_masks))
        return foreground_logit(logits, region).to(logits.dtype)


def reduce_channels(attr: torch.Tensor) -> torch.Tensor:
    """[B, N, 3, H, W] -> [B, N, H, W]: the mean over RGB."""
    return attr.mean(2)


class SupportExplainer:
    """Base class: subclasses implement ``attribute(model, episode, region) -> [B, N, H, W]``, the raw attribution
    over the support pixels; :meth:`explain` is the protocol's call."""

    name = "base"
    #: whether the maps depend on the query region R (False for the model-free baselines): with an empty
    #: prediction, the paper's rule (:class:`fss_attr.evaluation.EvaluationConfig` ``empty_prediction``) gives
    #: the explainers that read R constant maps
    reads_region = True
    # messages of warnings that the attribution method raises by design (filtered inside explain)
    expected_warnings: tuple[str, ...] = ()

    def attribute(self, model, episode: Episode, region: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def explain(self, model, episode: Episode, region="logits") -> Explanation:
        """Explain the model's foreground output over R on the episode (the explainer protocol).

        Args:
            model: a :class:`fss_attr.models.MatchingAdapter` (any module mapping an Episode to logits
                [B, 2, H, W], differentiable in the support images for the gradient baselines).
            episode: B episodes.
            region: "logits" (the predicted query foreground, default), "gt", "all", or [B, H, W] bool.

        Returns:
            :class:`fss_attr.Explanation` with ``maps`` [B, N, H, W] float32 in [0, 1] (min-max per episode),
            ``raw`` [B, N, H, W] float32 the attribution before min-max, ``logits``, ``prediction``, ``region``.
        """
        if not isinstance(episode, Episode):
            raise TypeError(f"episode must be an fss_attr.data.episode.Episode, got {type(episode).__name__}")
        with torch.no_grad():
            logits = model(episode)
        r = resolve_region(region, logits, episode.query_mask)
        with warnings.catch_warnings():
            for message in self.expected_warnings:
                warnings.filterwarnings("ignore", message=message)
            raw = self.attribute(model, episode, r).detach()
        expected = tuple(episode.support_masks.shape)
        if tuple(raw.shape) != expected:
            raise RuntimeError(f"{type(self).__name__}.attribute returned {tuple(raw.shape)}, expected {expected}")
        raw = torch.nan_to_num(raw.to(torch.float64))
        return Explanation(minmax(raw, torch.float32), raw.to(torch.float32), logits=logits,
                           prediction=logits.argmax(1) == 1, region=r)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"
