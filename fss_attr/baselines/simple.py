"""Reference baselines that do not look at the model: random maps, and the noisy ground-truth mask."""
from __future__ import annotations

import torch

from fss_attr.baselines.base import SupportExplainer
from fss_attr.validation import check_nonnegative


class Random(SupportExplainer):
    """Uniform random maps U(0, 1) per support pixel. Draws come from one generator seeded with ``seed``
    at construction, so a run over many episodes repeats exactly."""

    name = "random"
    reads_region = False

    def __init__(self, seed: int = 0):
        self.seed = int(seed)
        self._gen = torch.Generator().manual_seed(self.seed)

    def attribute(self, model, episode, region):
        shape = tuple(episode.support_masks.shape)
        return torch.rand(shape, generator=self._gen, dtype=torch.float64).to(episode.device)


class GaussNoise(SupportExplainer):
    """The support mask plus Gaussian noise, M_s + N(0, sigma²) per pixel ("GaussNoise" of the paper's
    tables; sigma 0.01 as in its code), then, by default, values above the episode's ``clip_quantile``
    quantile (over all N·H·W support pixels) set to it: the paper's ``min_max_scale(..., quantile=0.99,
    clamp=True)`` (affex/explainer/random.py), which makes the top 1% of pixels tie (ties rank in index
    order in the metrics). ``clip_quantile=None``: no clip (fss_attr's variant before issue 16, which ranks
    the annotated foreground first in noise order). Seeded at construction like :class:`Random`."""

    name = "gaussnoise"
    reads_region = False

    def __init__(self, sigma: float = 0.01, seed: int = 0, clip_quantile: float | None = 0.99):
        self.sigma = check_nonnegative("sigma", sigma)
        if clip_quantile is not None and not 0 < float(clip_quantile) <= 1:
            raise ValueError(f"clip_quantile must be in (0, 1] or None, got {clip_quantile!r}")
        self.seed = int(seed)
        self.clip_quantile = None if clip_quantile is None else float(clip_quantile)
        self._gen = torch.Generator().manual_seed(self.seed)

    def attribute(self, model, episode, region):
        m = episode.support_masks.to(torch.float64)
        noise = torch.randn(tuple(m.shape), generator=self._gen, dtype=torch.float64).to(m.device)
        x = m + self.sigma * noise
        if self.clip_quantile is None:
            return x
        flat = x.flatten(1)
        top = torch.quantile(flat, self.clip_quantile, dim=1, keepdim=True)
        return torch.minimum(flat, top).view(x.shape)
