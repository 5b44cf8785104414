"""The Affinity Explainer (AffEx): which support pixels made the query prediction.

Definitions follow docs/affex.md §1; the fast backends use the identity of §2: the
mean over R of each support position's normalized upsampled map is a ratio of
two weighted column sums of P, so no H×W map is ever built.

The explainer protocol (docs/explainers.md): ``AffinityExplainer(...).explain(model, episode, region="logits")``
returns an :class:`fss_attr.Explanation`; :meth:`AffinityExplainer.explain_levels` is the same computation on
matching levels given directly (no model).
"""
from __future__ import annotations

import warnings
from typing import Sequence

import torch

from fss_attr import ops
from fss_attr.explanation import Explanation, degenerate_maps, minmax, resolve_region
from fss_attr.affex.blur import gaussian_blur
from fss_attr.affex.interp import linear_interp_matrix, row_weights, upsample_bilinear
from fss_attr.affex.levels import LevelFeatures, LevelScores
from fss_attr.ops.reference import literal_support_attribution
from fss_attr.ops import torch_twin
from fss_attr.ops.torch_twin import acc_dtype
from fss_attr.validation import check_blur, check_choice, check_grid, check_level_weights, check_mask, check_top_k

VARIANTS = ("unmasked", "masked", "signed")
NORM_EPS = 1e-6


class ExplanationCache:
    """What AffEx explanations of one episode share, for :meth:`AffinityExplainer.explain` (``cache=``) and
    :meth:`AffinityExplainer.explain_variants`: the model's state and logits (one encode), the ablation
    weights per region, the weighted level maps E per (region, weights, softmax, top-k, backend) and the
    blurred support masks.

    Keyed on the episode and the model by identity: bound to the first (model, episode) it is used with, it
    empties itself when used with another, so a loop may pass one fresh cache per episode (or keep one).
    ``encodes`` counts the encodes it ran.
    """

    def __init__(self):
        self.episode = None
        self.model = None
        self.encodes = 0
        self.clear()

    @classmethod
    def of(cls, cache) -> "ExplanationCache":
        """``cache`` itself; a new one for None; for a plain dict (the per-episode dict an evaluation loop shares
        between its explainers), the ExplanationCache kept in it under ``"fss_attr.affex"``."""
        if cache is None:
            return cls()
        if isinstance(cache, cls):
            return cache
        if isinstance(cache, dict):
            return cache.setdefault("fss_attr.affex", cls())
        raise TypeError(f"cache must be an ExplanationCache, a dict or None, got {type(cache).__name__}")

    def clear(self) -> None:
        self.state = None
        self.blurred: dict = {}
        self._entries: list = []

    def bind(self, model, episode) -> None:
        if self.model is not model or self.episode is not episode:
            self.clear()
            self.model, self.episode = model, episode

    def lookup(self, key, region: torch.Tensor, weights: torch.Tensor | None = None):
        for k, r, w, value in self._entries:
            if k == key and r.shape == region.shape and torch.equal(r, region) and (
                    (w is None and weights is None) or (w is not None and weights is not None
                                                        and w.shape == weights.shape and torch.equal(w, weights))):
                return value
        return None

    def store(self, key, region: torch.Tensor, value, weights: torch.Tensor | None = None):
        self._entries.append((key, region, weights, value))
        return value


def support_column_sums(support_hw: tuple[int, int], out_size: tuple[int, int], device=None) -> torch.Tensor:
    """[hs·ws] float64: the sum over the H×W output of each support position's bilinear upsampling weight."""
    wh = linear_interp_matrix(out_size[0], support_hw[0], device=device)
    ww = linear_interp_matrix(out_size[1], support_hw[1], device=device)
    return torch.outer(wh.sum(0), ww.sum(0)).flatten()


def support_maps(a: torch.Tensor, level: LevelScores | LevelFeatures, out_size: tuple[int, int]) -> torch.Tensor:
    """Step 5: a [B, M] -> A_l [B, N, H, W], upsampled per shot and normalized to sum 1 (+1e-6)."""
    b = a.shape[0]
    hs, ws = level.support_hw
    up = upsample_bilinear(a.reshape(b, level.n_shots, hs, ws), out_size)
    return up / (up.flatten(1).sum(1).view(b, 1, 1, 1) + NORM_EPS)


class AffinityExplainer:
    """Attribution maps over the support images of a matching-based few-shot segmentation model.

    Args:
        variant: "unmasked" (E), "masked" (minmax(E ⊙ G(M_s))) or "signed" (minmax(E ⊙ (2·G(M_s) − 1))),
            G a Gaussian blur of the support masks.
        softmax: softmax each query row of the affinity over all N shots jointly (step 1).
        top_k: keep only each query row's k largest scores (ties at the k-th value kept); 0 turns it off.
        blur_kernel, blur_sigma: the Gaussian of the masked and signed variants (odd size, reflect padding).
        backend: "auto" (fastest for the inputs' device), "literal" (the definition, slow), "torch"
            (the identity in plain PyTorch), "cpu" or "cuda" (the compiled kernels).
    """

    def __init__(self, variant: str = "unmasked", softmax: bool = True, top_k: int = 0, blur_kernel: int = 31,
                 blur_sigma: float = 50.0, backend: str = "auto"):
        check_choice("variant", variant, VARIANTS)
        check_choice("backend", backend, ("auto",) + ops.BACKENDS)
        check_blur(blur_kernel, blur_sigma)
        self.variant = variant
        self.softmax = bool(softmax)
        self.top_k = check_top_k(top_k)
        self.blur_kernel = blur_kernel
        self.blur_sigma = blur_sigma
        self.backend = backend

    def __repr__(self) -> str:
        return (f"AffinityExplainer(variant={self.variant!r}, softmax={self.softmax}, top_k={self.top_k}, "
                f"blur_kernel={self.blur_kernel}, blur_sigma={self.blur_sigma}, backend={self.backend!r})")

    def level_attribution(self, level: LevelScores | LevelFeatures, region: torch.Tensor,
                          backend: str | None = None, weights_cache: dict | None = None) -> torch.Tensor:
        """Steps 1–4 for one level: a [B, M] (accumulation dtype), the support-position attribution.

        ``weights_cache`` (a dict) shares the row weights of levels with the same query grid.
        """
        backend = ops.resolve_backend(backend or self.backend, level.device)
        if backend == "literal":
            lv = level.materialize()
            return literal_support_attribution(lv.scores.to(acc_dtype(lv.scores.dtype)), lv.query_hw, region,
                                               self.softmax, self.top_k)
        acc = acc_dtype(level.query.dtype if isinstance(level, LevelFeatures) else level.scores.dtype)
        key = (level.query_hw, acc)
        weights = None if weights_cache is None else weights_cache.get(key)
        if weights is None:
            weights = row_weights(region, level.query_hw, torch.float64).to(acc)
            if weights_cache is not None:
                weights_cache[key] = weights
        if isinstance(level, LevelFeatures):
            cols = ops.backproject_features(level.query, level.support, weights, level.similarity, float(level.scale),
                                            level.relu, self.softmax, self.top_k, backend=backend, check_finite=False)
        else:
            cols = ops.backproject_scores(level.scores, weights, self.softmax, self.top_k, backend=backend,
                                          check_finite=False)  # checked when the level was built
        return cols[:, 0] / (cols[:, 1] + NORM_EPS)

    @torch.no_grad()
    def level_maps(self, levels: Sequence[LevelScores | LevelFeatures], region: torch.Tensor,
                   out_size: tuple[int, int] | None = None) -> list[torch.Tensor]:
        """A_l [B, N, H, W] for every level (before weighting, aggregation and the variant)."""
        levels, region, out_size = self._check(levels, region, None, out_size)
        backend = ops.resolve_backend(self.backend, levels[0].device)
        cache: dict = {}
        return [support_maps(self.level_attribution(lv, region, backend, cache), lv, out_size) for lv in levels]

    @torch.no_grad()
    def explain_levels(self, levels: Sequence[LevelScores | LevelFeatures], region: torch.Tensor,
                       support_masks: torch.Tensor | None = None, level_weights=None,
                       out_size: tuple[int, int] | None = None) -> torch.Tensor:
        """AffEx maps over the support images, from matching levels given directly (no model): the ``maps`` of
        :meth:`explain` for these levels.

        Args:
            levels: L levels (LevelScores or LevelFeatures), one batch size B, one shot count N, one device.
            region: [B, H, W] bool (or 0/1) query region R; must be non-empty in every episode.
            support_masks: [B, N, H, W] bool (or 0/1) support masks; needed by "masked" and "signed".
            level_weights: None (uniform 1/L), or [L] or [B, L] weights w_l >= 0 with a positive sum per episode.
            out_size: (H, W); defaults to the region's size, which must equal it.

        Returns:
            [B, N, H, W] float32 in [0, 1]; B = 0 gives an empty [0, N, H, W]. An episode whose map is constant
            (:func:`fss_attr.explanation.constant_maps`: a spread below 1024 ulps of the levels' accumulation
            dtype) is all zeros. An episode where R carries no information (:func:`uninformative_regions`: R
            covers the whole image, or every level's query grid is 1×1) is all zeros too, with a warning: every
            a_j is then 1/(H·W) by construction and only the 1e-6 guard and rounding would be left (a departure
            from the literal definition, which would min-max scale that noise).

        Raises:
            ValueError: bad shapes, an empty region, bad level weights, or negative affinities with
                ``softmax=False`` (without softmax the column sums of signed scores cancel).

        Inputs that require grad are read as constants (explaining builds no graph).
        """
        return self._maps_and_raw(levels, region, support_masks, level_weights, out_size)[0]

    def _maps_and_raw(self, levels, region, support_masks, level_weights, out_size):
        """(maps [B, N, H, W] float32 in [0, 1], E = Σ_l w_l A_l [B, N, H, W] float64 before the variant)."""
        levels, region, out_size = self._check(levels, region, support_masks, out_size)
        b, n = levels[0].batch_size, levels[0].n_shots
        if self.variant != "unmasked":
            if support_masks is None:
                raise ValueError(f"variant {self.variant!r} needs support_masks [B, N, H, W]")
            support_masks = check_mask("support_masks", support_masks, (b, n, *out_size), levels[0].device)
        weights = self._level_weights(level_weights, len(levels), b, levels[0].device)
        if b == 0:
            return (torch.zeros((0, n, *out_size), dtype=torch.float32, device=levels[0].device),
                    torch.zeros((0, n, *out_size), dtype=torch.float64, device=levels[0].device))
        total = self._total(levels, region, weights, out_size, stacklevel=4)
        return self._finish(total, self.variant, support_masks, resolution=_resolution(levels)), total

    def _total(self, levels, region, weights, out_size, stacklevel: int = 3) -> torch.Tensor:
        """E = Σ_l w_l A_l [B, N, H, W] float64 of checked inputs (weights [B, L] float64); episodes whose
        region makes the map degenerate are zeros (with a warning)."""
        b = levels[0].batch_size
        full = uninformative_regions(region, [lv.query_hw for lv in levels])
        if bool(full.any()):
            warnings.warn(f"the region makes the map degenerate in episode(s) {full.nonzero().flatten().tolist()} "
                          "(it covers the whole image, or every level's query grid is 1×1): every support "
                          "position's attribution is 1/(H·W) there by construction up to the 1e-6 guard, a map "
                          "with no information (returned as zeros)", stacklevel=stacklevel)
        backend = ops.resolve_backend(self.backend, levels[0].device)
        if backend == "literal":  # step 5 and the sum exactly as written: one upsampled map per level
            maps = self.level_maps(levels, region, out_size)
            total = sum(weights[:, i].view(b, 1, 1, 1) * m.to(torch.float64) for i, m in enumerate(maps))
        else:
            total = self._weighted_sum_of_level_maps(levels, region, weights, out_size, backend)
        total[full] = 0
        return total

    def _finish(self, total: torch.Tensor, variant: str, support_masks: torch.Tensor | None,
                blurred: dict | None = None, resolution=None) -> torch.Tensor:
        """The variant's map [B, N, H, W] float32 from E (``blurred``: a dict sharing G(M_s) between variants)."""
        if variant == "unmasked":
            return minmax(total, torch.float32, resolution)
        g = None if blurred is None else blurred.get("g")
        if g is None:
            g = gaussian_blur(support_masks.to(torch.float32), self.blur_kernel, self.blur_sigma).to(torch.float64)
            if blurred is not None:
                blurred["g"] = g
        explanation = minmax(total, resolution=resolution).mul_(g if variant == "masked" else g.mul(2).sub_(1))
        return minmax(explanation, torch.float32, resolution, scale=1.0)   # minmax(E) ⊙ G: errors relative to 1

    def _weighted_sum_of_level_maps(self, levels, region, weights, out_size, backend) -> torch.Tensor:
        """Σ_l w_l A_l [B, N, H, W] float64 with one upsampling per distinct support grid.

        Upsampling is linear and A_l = up(a_l) / (Σ up(a_l) + 1e-6) with Σ up(a_l) = c·a_l (c the column
        sums of the support interpolation), so levels that share a support grid are summed before upsampling.
        """
        b, n = levels[0].batch_size, levels[0].n_shots
        cache: dict = {}
        grouped: dict = {}
        for i, lv in enumerate(levels):
            a = self.level_attribution(lv, region, backend, cache).to(torch.float64)       # [B, M]
            c = support_column_sums(lv.support_hw, out_size, a.device).repeat(n)           # [M]
            coef = weights[:, i] / ((a * c).sum(1) + NORM_EPS)                            # [B]
            grouped[lv.support_hw] = grouped.get(lv.support_hw, 0) + coef[:, None] * a
        total = None
        for hw, g in grouped.items():
            up = upsample_bilinear(g.view(b, n, *hw), out_size)
            total = up if total is None else total.add_(up)
        return total

    @torch.no_grad()
    def explain(self, model, episode, region="logits", level_weights="ablation",
                cache: "ExplanationCache | None" = None) -> Explanation:
        """Explain a model's prediction on an episode (the explainer protocol, docs/explainers.md).

        Args:
            model: a :class:`fss_attr.models.MatchingAdapter` (``encode``, ``decode``, ``levels``,
                ``level_weights``).
            episode: a :class:`fss_attr.data.episode.Episode` of B episodes with N shots each.
            region: "logits" (the predicted query foreground, default), "gt" (episode.query_mask), "all",
                or a [B, H, W] bool tensor.
            level_weights: "ablation" (the paper's layer-ablation weights), "uniform", or [L] / [B, L].
            cache: an :class:`ExplanationCache` (or a dict, holding one) shared by the explainers of one
                episode (e.g. the three AffEx variants): the encode, the decode, the ablation weights and the
                weighted level maps are computed once; the same maps as without it.

        Returns:
            :class:`fss_attr.Explanation` with ``maps`` [B, N, H, W] float32 in [0, 1] (min-max per episode),
            ``raw`` [B, N, H, W] float64 the aggregated map Σ_l w_l A_l before the variant and min-max,
            ``logits``, ``prediction``, ``region``, ``level_weights`` [B, L] and ``degenerate`` [B].
        """
        if cache is not None:
            return self.explain_variants(model, episode, (self.variant,), region, level_weights, cache)[self.variant]
        state = model.encode(episode)
        logits = model.decode(state)
        r = resolve_region(region, logits, episode.query_mask)
        if isinstance(level_weights, str):
            check_choice("level_weights", level_weights, ("ablation", "uniform"))
            weights = model.level_weights(state, r, logits) if level_weights == "ablation" else None
        else:
            weights = level_weights
        maps, raw = self._maps_and_raw(list(model.levels(state)), r, episode.support_masks, weights,
                                       episode.image_size)
        used = self._level_weights(weights, model.n_levels, episode.batch_size, logits.device)
        return Explanation(maps, raw, logits=logits, prediction=logits.argmax(1) == 1, region=r,
                           level_weights=used, degenerate=degenerate_maps(maps, r))

    @torch.no_grad()
    def explain_variants(self, model, episode, variants: Sequence[str] = VARIANTS, region="logits",
                         level_weights="ablation", cache: "ExplanationCache | None" = None) -> dict[str, Explanation]:
        """Several variants of :meth:`explain` from one encode, one set of ablation decodes and one set of
        level maps (the variants differ only in the mask weighting of E): {variant: Explanation}, each equal to
        ``AffinityExplainer(variant, <this explainer's other settings>).explain(model, episode, ...)``.

        ``cache`` (an :class:`ExplanationCache`, or a dict holding one: :meth:`ExplanationCache.of`) carries that
        work across calls on the same episode and model.
        """
        variants = tuple(dict.fromkeys(variants))
        for v in variants:
            check_choice("variant", v, VARIANTS)
        cache = ExplanationCache.of(cache)
        cache.bind(model, episode)
        if cache.state is None:
            state = model.encode(episode)
            cache.encodes += 1
            cache.state = (state, model.decode(state))
        state, logits = cache.state
        r = resolve_region(region, logits, episode.query_mask)
        if isinstance(level_weights, str):
            if level_weights == "ablation":
                weights = cache.lookup("weights", r)
                if weights is None:
                    weights = cache.store("weights", r, model.level_weights(state, r, logits))
            else:
                check_choice("level_weights", level_weights, ("ablation", "uniform"))
                weights = None
        else:
            weights = level_weights
        b = episode.batch_size
        used = self._level_weights(weights, model.n_levels, b, logits.device)
        key = ("total", self.softmax, self.top_k, ops.resolve_backend(self.backend, logits.device))
        total = cache.lookup(key, r, used)
        levels, r_checked, out_size = self._check(list(model.levels(state)), r, None, episode.image_size)
        resolution = _resolution(levels)
        if total is None:
            total = cache.store(key, r, self._total(levels, r_checked, used, out_size, stacklevel=4), used)
        masks = None
        if any(v != "unmasked" for v in variants):
            masks = check_mask("support_masks", episode.support_masks, tuple(total.shape), total.device)
        blurred = cache.blurred.setdefault((self.blur_kernel, float(self.blur_sigma)), {})
        prediction = logits.argmax(1) == 1
        out = {}
        for v in variants:
            maps = self._finish(total, v, masks, blurred, resolution)
            out[v] = Explanation(maps, total, logits=logits, prediction=prediction, region=r, level_weights=used,
                                 degenerate=degenerate_maps(maps, r))
        return out

    def _check(self, levels, region, support_masks, out_size):
        if isinstance(levels, (LevelScores, LevelFeatures)):
            levels = [levels]
        levels = list(levels)
        if not levels:
            raise ValueError("levels must hold at least one LevelScores or LevelFeatures")
        for i, lv in enumerate(levels):
            if not isinstance(lv, (LevelScores, LevelFeatures)):
                raise TypeError(f"levels[{i}] must be LevelScores or LevelFeatures, got {type(lv).__name__}")
        first = levels[0]
        for i, lv in enumerate(levels[1:], 1):
            if (lv.batch_size, lv.n_shots, lv.device) != (first.batch_size, first.n_shots, first.device):
                raise ValueError(f"levels[{i}] has (B, N, device) = {(lv.batch_size, lv.n_shots, lv.device)}, "
                                 f"levels[0] has {(first.batch_size, first.n_shots, first.device)}")
        if not isinstance(region, torch.Tensor) or region.dim() != 3:
            raise ValueError(f"region must be a [B, H, W] tensor, got "
                             f"{tuple(region.shape) if isinstance(region, torch.Tensor) else type(region).__name__}")
        out_size = tuple(region.shape[-2:]) if out_size is None else check_grid("out_size", tuple(out_size))
        region = check_mask("region", region, (first.batch_size, *out_size), first.device)
        empty = (~region.flatten(1).any(1)).nonzero().flatten().tolist()
        if empty:
            raise ValueError(f"region is empty in episode(s) {empty}: AffEx averages over the region R, "
                             "which must hold at least one pixel")
        for i, lv in enumerate(levels):
            _check_range(lv, i, self.softmax, out_size[0] * out_size[1])
            if not self.softmax:
                check_nonnegative_affinity(lv, i)
        return levels, region, out_size

    @staticmethod
    def _level_weights(level_weights, n_levels, b, device) -> torch.Tensor:
        if level_weights is None:
            return torch.full((b, n_levels), 1.0 / n_levels, dtype=torch.float64, device=device)
        return check_level_weights(level_weights, n_levels, b, device)


def uninformative_regions(region: torch.Tensor, query_grids) -> torch.Tensor:
    """[B] bool: episodes where R carries no information for any of the levels' query grids.

    With r the mean over R of the upsampled query map and c its sum over the image (the row weights of
    docs/affex.md, the identity), a_j = r·P_j / (c·P_j + 1e-6). When r = c / (H·W) (R covers the image, or the query grid is
    1×1 so every upsampled map is constant) every a_j is 1/(H·W) up to the 1e-6 guard, whatever P is. Checked
    in float64 with a relative tolerance of 1e-9.
    """
    b, h, w = region.shape
    out = torch.ones(b, dtype=torch.bool, device=region.device)
    for hw in dict.fromkeys(tuple(g) for g in query_grids):
        rw = row_weights(region, hw, torch.float64)
        gap = (rw[:, 0] * (h * w) - rw[:, 1]).abs().amax(1)
        out &= gap <= 1e-9 * rw[:, 1].abs().amax(1)
    return out


def _resolution(levels) -> torch.dtype:
    """The dtype the levels' attributions are computed in (the coarsest accumulation dtype among them)."""
    dtypes = {acc_dtype(lv.query.dtype if isinstance(lv, LevelFeatures) else lv.scores.dtype) for lv in levels}
    return torch.float32 if torch.float32 in dtypes else torch.float64


def _check_range(level, i: int, softmax: bool, pixels: int) -> None:
    """Refuse a level whose scores can overflow the accumulation dtype, the same way on every backend.

    The bound on |score| is exact for LevelScores (max |s|), |scale| for cosine, and scale·max‖q‖·max‖k‖
    (Cauchy–Schwarz, norms in float64) for dot products. With softmax the scores themselves must stay finite;
    without it the column sums c·P_j (at most H·W·max s) must too.

    For dot products the norms (float64 copies of q and k) are computed only when a cheaper bound does not
    settle it: ‖x‖ <= √D·max|x|, so |scale|·D·max|q|·max|k| (the maxima exact in the features' dtype, the
    product in float64, with a 1e-6 margin over its rounding and the norms') is at least the norm bound;
    when it is below the limit, so is the norm bound: the same decision.
    """
    acc = acc_dtype(level.query.dtype if isinstance(level, LevelFeatures) else level.scores.dtype)
    limit = torch.finfo(acc).max / (1 if softmax else pixels)
    if isinstance(level, LevelScores):
        bound = float(level.scores.abs().max()) if level.scores.numel() else 0.0
    elif level.similarity == "cosine":
        bound = abs(float(level.scale))
    else:
        if level.query.numel() and level.support.numel():
            # ‖x‖ <= √D·max|x|: a bound on the norm bound from one read of q and k, no float64 copy
            quick = abs(float(level.scale)) * level.query.shape[-1] * _max_abs(level.query) * _max_abs(level.support)
            if quick * (1 + 1e-6) < limit:
                return
        qn = float(level.query.double().norm(dim=-1).max()) if level.query.numel() else 0.0
        kn = float(level.support.double().norm(dim=-1).max()) if level.support.numel() else 0.0
        bound = abs(float(level.scale)) * qn * kn
    if not bound < limit:
        raise ValueError(f"levels[{i}]: the affinities can reach {bound:.3g}, beyond what {acc} holds "
                         f"({'' if softmax else 'with softmax=False, the column sums: '}limit {limit:.3g}); "
                         "scale the features down (e.g. normalize them, or a smaller scale)")


def _max_abs(x: torch.Tensor) -> float:
    """max |x| of a non-empty tensor in one pass without a copy (NaN when x holds a NaN)."""
    lo, hi = torch.aminmax(x)
    return max(-float(lo), float(hi)) if bool(lo == lo) and bool(hi == hi) else float("nan")


def check_nonnegative_affinity(level, i: int, chunk_elements: int = 1 << 22) -> None:
    """ValueError unless level ``i`` (LevelScores or LevelFeatures) has no negative affinity. Without softmax
    the affinities must be >= 0 (docs/affex.md: ReLU-cosine models): signed scores make the
    column sums c·P_j cancel and a_j = (r·P_j)/(c·P_j + 1e-6) explode. LevelFeatures without relu are scored
    chunk by chunk to find out (the memory of the fast paths, one more pass of their arithmetic)."""
    if isinstance(level, LevelFeatures):
        if level.relu:
            return
        acc = acc_dtype(level.query.dtype)
        query, support = level.query.to(acc), level.support.to(acc)
        step = max(1, chunk_elements // max(1, support.shape[1]))
        lowest = min((float(torch_twin.similarity_scores(query[:, q0:q0 + step], support, level.similarity,
                                                          float(level.scale)).min())
                      for q0 in range(0, query.shape[1], step) if support.shape[1]), default=0.0)
    else:
        lowest = float(level.scores.min()) if level.scores.numel() else 0.0
    if lowest < 0:
        raise ValueError(f"levels[{i}] has negative affinities (min {lowest:.3g}) and softmax=False: without the "
                         "softmax the affinities must be non-negative (e.g. relu=True, as the ReLU-cosine models "
                         "HSNet and DMTNet use), or use softmax=True")
