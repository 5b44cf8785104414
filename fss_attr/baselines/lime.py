"""LIME (Ribeiro et al. 2016) over SLIC superpixels of the support images.

Features: the superpixels of all N support images of an episode (S in total). A sample z ∈ {0, 1}^S keeps
the superpixels with z_s = 1 and sends the others to the zero substrate in both the image (RGB 0, the mean
colour) and the mask (0), as the perturbation metrics do. Sample 0 is all ones (the original); the others
draw each z_s from Bernoulli(1/2). The target f(z) is the mean foreground logit over R (as every
baseline). Each sample is weighted by the exponential kernel π(z) = exp(−d(z)² / w²) with d the cosine
distance between z and the all-ones vector (d = 1 for z = 0), w = ``kernel_width``. A ridge regression
with intercept, penalty ``ridge`` on the coefficients, is fitted by weighted least squares in float64;
each pixel's attribution is its superpixel's coefficient (signed). Samples run ``internal_batch_size``
per forward pass.
"""
from __future__ import annotations

import numpy as np
import torch

from fss_attr.baselines.base import SupportExplainer
from fss_attr.metrics.perturbation import apply_keep, check_batch_size, forward_supports, scorer


def superpixels(images: torch.Tensor, n_segments: int = 50, compactness: float = 10.0) -> torch.Tensor:
    """SLIC superpixels of support images [N, 3, H, W] (any normalisation) -> [N, H, W] int64 labels,
    numbered consecutively across the N images (image n's labels follow image n−1's).

    Each image is min-max scaled to [0, 1] over all its values before SLIC (which works in Lab colour).
    """
    from skimage.segmentation import slic

    out, offset = [], 0
    for img in images.detach().to(torch.float64).cpu():
        lo, hi = img.min(), img.max()
        x = ((img - lo) / (hi - lo) if hi > lo else torch.zeros_like(img)).permute(1, 2, 0).numpy()
        lab = slic(x, n_segments=n_segments, compactness=compactness, start_label=0, channel_axis=-1)
        _, lab = np.unique(lab, return_inverse=True)            # consecutive 0..S_n-1
        lab = lab.reshape(x.shape[:2])
        out.append(torch.from_numpy(lab.astype(np.int64)) + offset)
        offset += int(lab.max()) + 1
    return torch.stack(out).to(images.device)


def weighted_ridge(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, ridge: float) -> torch.Tensor:
    """Coefficients β [S] of min_β,c Σ_i w_i (y_i − c − x_i·β)² + ridge·|β|² (float64).

    With ``ridge`` > 0 the normal equations are positive definite and solved directly. With ``ridge`` = 0 and
    fewer informative samples than features (n − 1 < S, or repeated samples) they are singular: then β is
    the minimum-norm least-squares solution (the pseudo-inverse, as ``numpy.linalg.lstsq``), which the
    solve falls back to whenever it reports a singular system.

    Args:
        x: [n, S]; y: [n]; w: [n] non-negative sample weights (not all zero).
    """
    x, y, w = x.to(torch.float64), y.to(torch.float64), w.to(torch.float64)
    wn = w / w.sum()
    xc = x - (wn[:, None] * x).sum(0)
    yc = y - (wn * y).sum()
    gram = xc.T @ (w[:, None] * xc) + ridge * torch.eye(x.shape[1], dtype=torch.float64, device=x.device)
    rhs = xc.T @ (w * yc)
    if ridge > 0:
        beta, info = torch.linalg.solve_ex(gram, rhs)
        if int(info) == 0 and bool(torch.isfinite(beta).all()):
            return beta
    return torch.linalg.pinv(gram, hermitian=True) @ rhs


class Lime(SupportExplainer):
    """LIME over SLIC superpixels shared by support image and mask (see the module docstring)."""

    name = "lime"

    def __init__(self, n_samples: int = 64, n_segments: int = 50, compactness: float = 10.0,
                 kernel_width: float = 0.25, ridge: float = 1.0, internal_batch_size: int = 16, seed: int = 0):
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 2:
            raise ValueError(f"n_samples must be an int >= 2, got {n_samples!r}")
        if isinstance(n_segments, bool) or not isinstance(n_segments, int) or n_segments < 1:
            raise ValueError(f"n_segments must be a positive int, got {n_segments!r}")
        if not float(kernel_width) > 0:
            raise ValueError(f"kernel_width must be > 0, got {kernel_width!r}")
        if not float(ridge) >= 0:
            raise ValueError(f"ridge must be >= 0, got {ridge!r}")
        self.n_samples, self.n_segments, self.compactness = n_samples, n_segments, float(compactness)
        self.kernel_width, self.ridge = float(kernel_width), float(ridge)
        self.internal_batch_size = check_batch_size(internal_batch_size)
        self.seed = int(seed)
        self._gen = torch.Generator().manual_seed(self.seed)

    def samples(self, n_features: int) -> torch.Tensor:
        """[n_samples, S] bool: row 0 all ones, the others Bernoulli(1/2)."""
        z = torch.rand(self.n_samples, n_features, generator=self._gen) < 0.5
        z[0] = True
        return z

    def kernel(self, z: torch.Tensor) -> torch.Tensor:
        """π(z) = exp(−d²/w²), d = cosine distance of z to all-ones = 1 − sqrt(|z| / S)."""
        d = 1 - (z.to(torch.float64).sum(1) / z.shape[1]).sqrt()
        return torch.exp(-d ** 2 / self.kernel_width ** 2)

    def attribute(self, adapter, episode, region):
        b = episode.batch_size
        segs = [superpixels(episode.support_images[e], self.n_segments, self.compactness) for e in range(b)]
        zs = [self.samples(int(s.max()) + 1).to(episode.device) for s in segs]
        n = self.n_samples

        def build(i):
            e, j = divmod(i, n)
            keep = zs[e][j][segs[e]]
            images, masks = apply_keep(episode.support_images[e], episode.support_masks[e], keep)
            return e, images, masks

        y = forward_supports(adapter, episode, b * n, build, scorer(["logit"], episode, region),
                             self.internal_batch_size)["logit"].view(b, n)
        maps = []
        for e in range(b):
            beta = weighted_ridge(zs[e].to(torch.float64), y[e], self.kernel(zs[e]), self.ridge)
            maps.append(beta[segs[e]])
        return torch.stack(maps)
