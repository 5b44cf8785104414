"""Reference baselines that do not look at the model: random maps, and the noisy ground-truth mask."""
from __future__ import annotations

import torch

from fss_attr.baselines.base import SupportExplainer
from fss_attr.validation import check_nonnegative


class Random(SupportExplainer):
    """Uniform random maps U(0, 1) per support pixel. Draws come from one generator seeded with ``seed``
    at construction, so a run over many episodes repeats exactly."""

    name = "random"

    def __init__(self, seed: int = 0):
        self.seed = int(seed)
        self._gen = torch.Generator().manual_seed(self.seed)

    def attribute(self, model, episode, region):
        shape = tuple(episode.support_masks.shape)
        return torch.rand(shape, generator=self._gen, dtype=torch.float64).to(episode.device)


class GaussNoise(SupportExplainer):
    """The support mask plus Gaussian noise, M_s + N(0, sigma²) per pixel ("GaussNoise" of the paper's
    tables; sigma 0.01 as in its code): it ranks the annotated foreground first, in random order, unless
    sigma is large. Seeded at construction like :class:`Random`."""

    name = "gaussnoise"

    def __init__(self, sigma: float = 0.01, seed: int = 0):
        self.sigma = check_nonnegative("sigma", sigma)
        self.seed = int(seed)
        self._gen = torch.Generator().manual_seed(self.seed)

    def attribute(self, model, episode, region):
        m = episode.support_masks.to(torch.float64)
        noise = torch.randn(tuple(m.shape), generator=self._gen, dtype=torch.float64).to(m.device)
        return m + self.sigma * noise
