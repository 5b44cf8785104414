"""Guided IG, Blur IG and XRAI through Google PAIR's ``saliency`` package (``saliency.core``, framework-free),
in the AffEx paper's settings (its ``affex/explainer/saliency.py``).

Shared by the three, as the paper's code: the target is the mean softmax foreground probability over the query
region R (:func:`fss_attr.metrics.scores.foreground_confidence`; the captum baselines attribute the mean
foreground logit), the baseline is the zero image (the mean colour of normalised images), and the maps are
post-processed as the paper's: Guided IG and Blur IG take |attribution| averaged over RGB, XRAI its per-pixel
region scores; then values above the episode's 0.99 quantile are clamped to it (``min_max_scale(...,
quantile=0.99, clamp=True)``), so the top 1% tie (ties rank in index order in the metrics).

Settings (the paper's): Guided IG ``x_steps=25, max_dist=1.0, fraction=0.5`` (PAIR's defaults: 200, 0.02,
0.25); Blur IG ``max_sigma=50, steps=25, grad_step=0.01, sqrt=False`` (PAIR's steps default: 100); XRAI
``XRAIParameters(steps=25, algorithm="fast")`` (PAIR's defaults: 100 steps, "full") on PAIR's Felzenszwalb
segments, with an Integrated-Gradients base attribution from the zero image, batch 1.

Differs from the paper's code: the query stays fixed (the paper passes the query and the supports to PAIR as
one input, so its integration paths also move the query; its attributions are then read on the supports
only). Guided IG runs on all N support images jointly; Blur IG and XRAI, whose blur and segments are per
image (channels-last [H, W, 3]), run on each support image in turn with the other supports at their values.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from fss_attr.baselines.base import SupportExplainer
from fss_attr.data.episode import Episode
from fss_attr.metrics.scores import foreground_confidence

METHODS = ("guidedig", "blurig", "xrai")


class _NumpyShim:
    """numpy as saliency 0.2.1's guided_ig module sees it: ``np.quantile(..., interpolation=...)`` (removed in
    numpy 2.4) is given as ``method=...``, the same computation; everything else is numpy itself."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def quantile(a, q, *args, interpolation=None, **kw):
        if interpolation is not None:
            kw["method"] = interpolation
        return np.quantile(a, q, *args, **kw)


@contextlib.contextmanager
def _numpy_compat():
    from saliency.core import guided_ig

    before = guided_ig.np
    guided_ig.np = _NumpyShim()
    try:
        yield
    finally:
        guided_ig.np = before
QUANTILE = 0.99


def quantile_clamp(maps: torch.Tensor, q: float = QUANTILE) -> torch.Tensor:
    """[B, N, H, W] -> the same with values above each episode's q-quantile set to it (the paper's post-processing)."""
    flat = maps.to(torch.float64).flatten(1)
    top = torch.quantile(flat, q, dim=1, keepdim=True)
    return torch.minimum(flat, top).view(maps.shape)


class _Target:
    """PAIR's call_model_function for one episode: the gradient of the mean softmax foreground probability over
    R with respect to the support images being explained (all of them, or image ``shot``), channels-last."""

    def __init__(self, adapter, episode: Episode, region: torch.Tensor, shot: int | None):
        self.adapter, self.episode, self.region, self.shot = adapter, episode, region, shot

    def __call__(self, x_batch, call_model_args=None, expected_keys=None):
        from saliency.core.base import INPUT_OUTPUT_GRADIENTS

        ep = self.episode
        dtype, device = ep.support_images.dtype, ep.device
        x = torch.as_tensor(np.asarray(x_batch), dtype=dtype, device=device).requires_grad_()
        k = x.shape[0]
        images = ep.support_images.expand(k, -1, -1, -1, -1)
        if self.shot is None:                                           # [k, N, H, W, 3]
            images = x.permute(0, 1, 4, 2, 3)
        else:                                                           # [k, H, W, 3] replaces one shot
            parts = [images[:, i] if i != self.shot else x.permute(0, 3, 1, 2) for i in range(ep.n_shots)]
            images = torch.stack(parts, 1)
        batch = Episode(ep.query.expand(k, -1, -1, -1), images, ep.support_masks.expand(k, -1, -1, -1))
        with torch.enable_grad():
            out = foreground_confidence(self.adapter(batch), self.region.expand(k, -1, -1))
            (grad,) = torch.autograd.grad(out.sum(), x)
        return {INPUT_OUTPUT_GRADIENTS: grad.detach().cpu().numpy().astype(np.float64)}


class PairSaliency(SupportExplainer):
    """``method`` "guidedig", "blurig" or "xrai" through PAIR's saliency package (module docstring: settings,
    target, post-processing, and what differs from PAIR's defaults and from the paper's code).

    Args:
        method: one of :data:`METHODS`.
        steps: integration steps (25, the paper's).
        post_process: "paper" (0.99-quantile clamp) or "none" (the raw PAIR maps, |·| mean over RGB for the IGs).

    Raises:
        ValueError: a bad argument. ImportError (when run): the ``saliency`` package is missing.
    """

    expected_warnings = (".*did not already require gradients.*",)

    def __init__(self, method: str, steps: int = 25, post_process: str = "paper"):
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive int, got {steps!r}")
        if post_process not in ("paper", "none"):
            raise ValueError(f"post_process must be 'paper' or 'none', got {post_process!r}")
        self.method, self.steps, self.post_process = method, steps, post_process
        self.name = method

    def _one(self, adapter, episode: Episode, region: torch.Tensor) -> torch.Tensor:
        import saliency.core as pair

        n = episode.n_shots
        images = episode.support_images[0].permute(0, 2, 3, 1).detach().cpu().numpy().astype(np.float64)
        if self.method == "guidedig":
            with _numpy_compat():
                attr = pair.GuidedIG().GetMask(images, _Target(adapter, episode, region, None),
                                              x_baseline=np.zeros_like(images), x_steps=self.steps,
                                              max_dist=1.0, fraction=0.5)
            return torch.from_numpy(np.abs(attr).mean(-1))              # [N, H, W]
        maps = []
        for i in range(n):
            target = _Target(adapter, episode, region, i)
            if self.method == "blurig":
                attr = pair.BlurIG().GetMask(images[i], target, max_sigma=50, steps=self.steps, grad_step=0.01,
                                             sqrt=False)
                maps.append(torch.from_numpy(np.abs(attr).mean(-1)))
            else:
                params = pair.XRAIParameters(steps=self.steps, algorithm="fast")
                attr = pair.XRAI().GetMask(images[i], target, baselines=[np.zeros_like(images[i])],
                                           batch_size=1, extra_parameters=params)
                maps.append(torch.from_numpy(np.asarray(attr, dtype=np.float64)))
        return torch.stack(maps)

    def attribute(self, adapter, episode, region):
        maps = torch.stack([self._one(adapter, episode.index(b), region[b:b + 1])
                            for b in range(episode.batch_size)]).to(episode.device)
        return quantile_clamp(maps) if self.post_process == "paper" else maps


def GuidedIG(**kw) -> PairSaliency:
    """Guided IG (Kapishnikov et al. 2021) through PAIR, the paper's settings (:class:`PairSaliency`)."""
    return PairSaliency("guidedig", **kw)


def BlurIG(**kw) -> PairSaliency:
    """Blur IG (Xu et al. 2020) through PAIR, the paper's settings (:class:`PairSaliency`)."""
    return PairSaliency("blurig", **kw)


def XRAI(**kw) -> PairSaliency:
    """XRAI (Kapishnikov et al. 2019) on Felzenszwalb segments through PAIR, the paper's settings."""
    return PairSaliency("xrai", **kw)
