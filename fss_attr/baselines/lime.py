"""LIME (Ribeiro et al. 2016, "Why should I trust you?") over SLIC superpixels of the support images, in the AffEx
paper's settings by default.

Both settings: the target f of a sample is the mean foreground logit over the query region R (as every baseline,
:mod:`fss_attr.baselines.base`); a switched-off superpixel sends its pixels to the zero substrate in the support
image (RGB 0, the mean colour of normalised images) and in the support mask, as the perturbation metrics do; each
support pixel's attribution is the surrogate's coefficient of its feature (signed). Samples run
``internal_batch_size`` per forward pass.

``settings="paper"`` (default): the AffEx paper's ``FSSLime`` (``affex/explainer/lime.py``, run with
``use_baselines=False``, as its evaluation does):

- features: SLIC superpixels of every support image (``n_segments`` 80, ``compactness`` 10), numbered from 0 in
  each image; superpixel k of every shot is one feature (the paper's feature mask stacks the per-image labels), so
  there are K = max_n S_n features;
- samples: ``n_samples`` 25 draws z ∈ {0, 1}^K, each z_k ~ Bernoulli(1/2); when no pixel of any support mask is
  kept, one feature drawn uniformly among those overlapping a support mask is switched on;
- shots whose mask is empty after the perturbation are left out of the sample's episode (the model sees N' ≤ N
  shots, as the paper's ``reduce_empty``);
- kernel: π(z) = exp(−d² / w²), w = ``kernel_width`` (1), d = a·d_img + (1 − a)·d_mask with a = ``image_weight``
  (0.2): d_img = 1 − the mean over the N shots of the cosine similarity between the shot's original and perturbed
  image (0 for a shot left out), d_mask = the mean over the N shots of the fraction of the shot's mask pixels
  switched off (1 for a shot left out);
- surrogate: the Lasso with intercept, penalty ``alpha`` (0.01), weighted by π: scikit-learn's ``Lasso`` as
  captum's ``SkLearnLasso`` runs it (objective (1/2n)·Σ_i π_i (y_i − c − z_i·β)² + α·|β|₁ with π rescaled to sum
  to n); samples whose target is not finite are dropped (none left: zero attributions).

``settings="ridge"``: fss_attr's LIME before the paper's settings (kept as a named option): superpixels numbered
across the shots (one feature per superpixel of each shot; ``n_segments`` 50), ``n_samples`` 64 with sample 0 all
ones, no shot left out, the kernel on the cosine distance between z and the all-ones vector (d = 1 − sqrt(|z|/K),
w = 0.25), and a ridge regression with intercept, penalty ``alpha`` (1) on the coefficients, by weighted least
squares in float64 (:func:`weighted_ridge`).

Where fss_attr departs from the paper's code: SLIC runs on each support image min-max scaled to [0, 1] (the
paper hands skimage the ImageNet-normalised tensor, whose values lie outside the RGB range skimage's Lab
conversion expects); the draws come from the explainer's own generator seeded with ``seed`` (the paper draws from
torch's global generator). captum's ``Lime`` defaults differ too: it draws features with its own
``default_perturb_func``, weights by an exponential kernel on the cosine distance of the inputs, and fits
``SkLearnLasso(alpha=0.01)`` over 50 samples.
"""
from __future__ import annotations

import numpy as np
import torch

from fss_attr.baselines.base import SupportExplainer
from fss_attr.explanation import minmax
from fss_attr.metrics.perturbation import apply_keep, check_batch_size, forward_supports, scorer
from fss_attr.validation import check_choice, check_nonnegative, check_positive, check_positive_int

SETTINGS = {
    "paper": dict(n_samples=25, n_segments=80, compactness=10.0, kernel_width=1.0, alpha=0.01, image_weight=0.2),
    "ridge": dict(n_samples=64, n_segments=50, compactness=10.0, kernel_width=0.25, alpha=1.0, image_weight=None),
}


def superpixels(images: torch.Tensor, n_segments: int = 50, compactness: float = 10.0,
                shared_labels: bool = False) -> torch.Tensor:
    """SLIC superpixels (skimage) of support images [N, 3, H, W] (any normalization) -> [N, H, W] int64 labels.

    Each image is min-max scaled to [0, 1] over all its values (:func:`fss_attr.explanation.minmax`) before SLIC
    (which works in Lab colour); its labels are made consecutive. ``shared_labels=False``: numbered across the N
    images (image n's labels follow image n−1's); True: every image's labels start at 0 (the AffEx paper's
    feature mask, where label k of every image is one feature).
    """
    from skimage.segmentation import slic

    out, offset = [], 0
    for img in minmax(images.detach().to(torch.float64).cpu()):
        x = img.permute(1, 2, 0).numpy()
        lab = slic(x, n_segments=n_segments, compactness=compactness, start_label=0, channel_axis=-1)
        _, lab = np.unique(lab, return_inverse=True)            # consecutive 0..S_n-1
        lab = lab.reshape(x.shape[:2])
        out.append(torch.from_numpy(lab.astype(np.int64)) + offset)
        if not shared_labels:
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


def weighted_lasso(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, alpha: float) -> torch.Tensor:
    """Coefficients β [S] float64 of scikit-learn's ``Lasso(alpha).fit(x, y, sample_weight=w)`` (with intercept):
    min_β,c (1/2n)·Σ_i w'_i (y_i − c − x_i·β)² + alpha·|β|₁, w' = w rescaled to sum to n (captum's
    ``SkLearnLasso``). Rows with a non-finite y or w are dropped first (captum's LIME does the same); with none
    left, β = 0.

    Args:
        x: [n, S]; y: [n]; w: [n] non-negative sample weights.
    """
    from sklearn.linear_model import Lasso

    x, y, w = (t.detach().to(torch.float64).cpu() for t in (x, y, w))
    ok = torch.isfinite(y) & torch.isfinite(w) & torch.isfinite(x).all(1)
    if not bool(ok.any()):
        return torch.zeros(x.shape[1], dtype=torch.float64)
    model = Lasso(alpha=alpha).fit(x[ok].numpy(), y[ok].numpy(), sample_weight=w[ok].numpy())
    return torch.from_numpy(np.asarray(model.coef_, dtype=np.float64).reshape(-1).copy())


class Lime(SupportExplainer):
    """LIME over SLIC superpixels shared by support image and mask (see the module docstring).

    Args:
        settings: "paper" (default: the AffEx paper's settings) or "ridge" (fss_attr's former variant); sets the
            defaults of the arguments left at None.
        n_samples: samples per episode (≥ 2); paper 25, ridge 64.
        n_segments, compactness: SLIC's; paper 80 and 10, ridge 50 and 10.
        kernel_width: w of the kernel; paper 1.0, ridge 0.25.
        alpha: the surrogate's penalty: Lasso α (paper, 0.01) or the ridge penalty (ridge, 1.0; 0 allowed).
        image_weight: a of the paper's distance (paper settings only; 0.2).
        internal_batch_size: samples per forward pass.
        seed: seeds the explainer's generator (superpixels are deterministic).

    Raises:
        ValueError: naming the argument, on a bad value.
    """

    name = "lime"

    def __init__(self, settings: str = "paper", n_samples: int | None = None, n_segments: int | None = None,
                 compactness: float | None = None, kernel_width: float | None = None, alpha: float | None = None,
                 image_weight: float | None = None, internal_batch_size: int = 16, seed: int = 0):
        self.settings = check_choice("settings", settings, tuple(SETTINGS))
        d = SETTINGS[self.settings]

        def pick(name, value):
            return d[name] if value is None else value

        self.n_samples = check_positive_int("n_samples", pick("n_samples", n_samples), 2)
        self.n_segments = check_positive_int("n_segments", pick("n_segments", n_segments))
        self.compactness = check_positive("compactness", pick("compactness", compactness))
        self.kernel_width = check_positive("kernel_width", pick("kernel_width", kernel_width))
        self.alpha = check_nonnegative("alpha", pick("alpha", alpha))
        if self.settings == "paper":
            self.image_weight = check_nonnegative("image_weight", pick("image_weight", image_weight))
            if self.image_weight > 1:
                raise ValueError(f"image_weight must be in [0, 1], got {self.image_weight!r}")
        elif image_weight is not None:
            raise ValueError("image_weight applies to settings='paper' only")
        else:
            self.image_weight = None
        self.internal_batch_size = check_batch_size(internal_batch_size)
        self.seed = int(seed)
        self._gen = torch.Generator().manual_seed(self.seed)

    # ---- samples -------------------------------------------------------------------------------------------

    def samples(self, n_features: int) -> torch.Tensor:
        """settings "ridge": [n_samples, K] bool, row 0 all ones, the others Bernoulli(1/2)."""
        z = torch.rand(self.n_samples, n_features, generator=self._gen) < 0.5
        z[0] = True
        return z

    def paper_samples(self, segments: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """settings "paper": [n_samples, K] bool draws for one episode, K = max label + 1 of ``segments`` [N, H, W]
        (shared labels); a draw that keeps no pixel of the support masks [N, H, W] gets one feature overlapping a
        mask switched on (uniformly among them; none when the masks are empty)."""
        k = int(segments.max()) + 1
        z = torch.rand(self.n_samples, k, generator=self._gen) < 0.5
        seg, m = segments.cpu(), masks.cpu()
        under_mask = torch.unique(seg[m])                       # features overlapping a mask, sorted
        for j in range(self.n_samples):
            if under_mask.numel() and not bool(z[j][seg[m]].any()):
                z[j, under_mask[int(torch.randint(under_mask.numel(), (1,), generator=self._gen))]] = True
        return z

    # ---- kernels -------------------------------------------------------------------------------------------

    def kernel(self, z: torch.Tensor) -> torch.Tensor:
        """settings "ridge": π(z) = exp(−d²/w²), d = cosine distance of z to all-ones = 1 − sqrt(|z| / K)."""
        d = 1 - (z.to(torch.float64).sum(1) / z.shape[1]).sqrt()
        return torch.exp(-d ** 2 / self.kernel_width ** 2)

    def paper_kernel(self, images: torch.Tensor, masks: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """settings "paper": π [S] float64 of S samples of one episode (module docstring).

        Args:
            images: the support images [N, 3, H, W]; masks: [N, H, W] bool; keep: [S, N, H, W] bool, the kept
                pixels of each sample.

        The cosine similarity of image x with x⊙keep is ⟨x, x⊙keep⟩ / (|x|·|x⊙keep|) = |x⊙keep| / |x| (0 for a
        zero image).
        """
        x2 = images.to(torch.float64).pow(2).sum(1)                             # [N, H, W]
        kept2 = torch.stack([(x2 * k).flatten(1).sum(1) for k in keep]) if len(keep) else \
            torch.zeros(0, x2.shape[0], dtype=torch.float64, device=x2.device)  # [S, N]
        total2 = x2.flatten(1).sum(1)                                           # [N]
        cos = torch.where(total2 > 0, (kept2 / total2.clamp_min(1e-300)).sqrt(), torch.zeros_like(kept2))
        mask_px = masks.flatten(1).sum(1).to(torch.float64)                     # [N]
        kept_px = (masks & keep).flatten(2).sum(2).to(torch.float64)            # [S, N]
        valid = kept_px > 0
        removed = torch.where(valid, 1 - kept_px / mask_px.clamp_min(1), torch.ones_like(kept_px))
        d_img = 1 - torch.where(valid, cos, torch.zeros_like(cos)).mean(1)
        d_mask = removed.mean(1)
        d = self.image_weight * d_img + (1 - self.image_weight) * d_mask
        return torch.exp(-d ** 2 / self.kernel_width ** 2)

    # ---- the attribution -----------------------------------------------------------------------------------

    def attribute(self, model, episode, region):
        paper = self.settings == "paper"
        b, n = episode.batch_size, self.n_samples
        segs = [superpixels(episode.support_images[e], self.n_segments, self.compactness, shared_labels=paper)
                for e in range(b)]
        if paper:
            zs = [self.paper_samples(segs[e], episode.support_masks[e]).to(episode.device) for e in range(b)]
        else:
            zs = [self.samples(int(s.max()) + 1).to(episode.device) for s in segs]
        keeps = [zs[e][:, segs[e]] for e in range(b)]                           # [n, N, H, W] per episode
        # the shots each sample keeps: all (ridge), or those whose mask keeps a pixel (paper)
        shots = [(keeps[e] & episode.support_masks[e]).flatten(2).any(2) if paper
                 else torch.ones(n, episode.n_shots, dtype=torch.bool, device=episode.device) for e in range(b)]
        y = self._targets(model, episode, region, keeps, shots)
        maps = []
        for e in range(b):
            z = zs[e].to(torch.float64)
            if paper:
                w = self.paper_kernel(episode.support_images[e], episode.support_masks[e], keeps[e])
                beta = weighted_lasso(z, y[e], w, self.alpha).to(episode.device)
            else:
                beta = weighted_ridge(z, y[e], self.kernel(zs[e]), self.alpha)
            maps.append(beta[segs[e]])
        return torch.stack(maps)

    def _targets(self, model, episode, region, keeps, shots) -> torch.Tensor:
        """[B, n_samples] float64: f of every sample, the samples with the same number of shots kept batched
        together (a sample with no shot left keeps them all: only when the support masks are empty)."""
        n = self.n_samples
        score = scorer(["logit"], episode, region)
        groups: dict[int, list[tuple[int, int]]] = {}
        for e in range(episode.batch_size):
            for j in range(n):
                kept = int(shots[e][j].sum())
                groups.setdefault(kept if kept else episode.n_shots, []).append((e, j))
        y = torch.empty(episode.batch_size, n, dtype=torch.float64, device=episode.device)
        shared: dict = {}                  # the query's features, encoded once for every group
        for items in groups.values():
            def build(i, items=items):
                e, j = items[i]
                images, masks = apply_keep(episode.support_images[e], episode.support_masks[e], keeps[e][j])
                sel = shots[e][j] if bool(shots[e][j].any()) else slice(None)
                return e, images[sel], masks[sel]

            out = forward_supports(model, episode, len(items), build, score, self.internal_batch_size,
                                   cache=shared)["logit"]
            for i, (e, j) in enumerate(items):
                y[e, j] = out[i]
        return y
