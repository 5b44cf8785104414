"""The explorer's computations: encode an episode once, then answer region and support-pixel queries fast.

:class:`ExplorerSession` owns a model adapter and an episode source. The first request for an episode runs
``adapter.encode`` and caches what every later request needs (:class:`EncodedEpisode`): the levels, the
logits, the logits with each level ablated (so the paper's level weights for any region are a weighted mean,
not L decoder runs), and per-level row statistics of the softmax for the reverse view. A region request then
runs only ``AffinityExplainer(...).explain_levels`` (milliseconds); a support-pixel request computes one
bilinear mix of up to four columns of each level's softmaxed affinity.

Every public method validates its arguments and raises :class:`ExplorerError` (with an HTTP status) on bad
input, so the server can answer 4xx with the message.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
import numpy as np
import torch

from fss_attr.affex.explainer import VARIANTS, AffinityExplainer, check_nonnegative_affinity
from fss_attr.affex.interp import linear_interp_matrix, upsample_bilinear
from fss_attr.affex.levels import LevelFeatures, LevelScores
from fss_attr.explanation import minmax
from fss_attr.models.base import level_weights_from_ablations
from fss_attr.ops.torch_twin import similarity_scores

WEIGHTINGS = ("ablation", "uniform")
REGION_KINDS = ("point", "box", "mask", "prediction", "gt", "all")
MAX_TOP_K = 1_000_000
NORM_EPS = 1e-6          # AffEx step 3's epsilon (design: Ũ_j = U_j / (Σ U_j + 1e-6))


class ExplorerError(ValueError):
    """A request the explorer refuses; ``status`` is the HTTP status the server answers with (4xx)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class EncodedEpisode:
    """What the explorer caches per episode (batch size 1).

    Attributes:
        index: the episode's index in the source.
        episode: the :class:`fss_attr.Episode` (B = 1).
        state: ``adapter.encode(episode)``.
        levels: ``adapter.levels(state)`` (L levels).
        logits: [1, 2, H, W] ``adapter.decode(state)``.
        ablated_logits: L tensors [1, 2, H, W], ``adapter.decode(state, ablate_level=l)``.
        prediction: [1, H, W] bool, ``logits.argmax(1) == 1``.
        encode_s: seconds spent encoding, decoding and ablating.
    """

    index: int
    episode: object
    state: object
    levels: list
    logits: torch.Tensor
    ablated_logits: list
    prediction: torch.Tensor
    encode_s: float
    row_stats: dict = field(default_factory=dict)   # per-episode derived data: softmax row statistics, mask signs

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.episode.image_size)

    @property
    def n_shots(self) -> int:
        return self.episode.n_shots


def controlled_source(n_episodes: int, seed: int = 42, shots: int = 5, size: int = 192):
    """The controlled episodes of ``fss-attr evaluate`` with the same options, by index
    (:class:`fss_attr.evaluation.episodes.ControlledEpisodes`: ``len(source)``, ``source[i]``)."""
    from fss_attr.evaluation.episodes import ControlledEpisodes

    return ControlledEpisodes(n_episodes, seed=seed, n_shots=shots, size=(size, size))


class ExplorerSession:
    """A model, an episode source and the per-episode caches behind ``fss-attr explore``.

    Args:
        adapter: a :class:`fss_attr.models.MatchingAdapter` (evaluation mode).
        source: the episodes (batch size 1): an indexable ``source[i]`` with ``len(source)`` (e.g. the episode
            sources of :mod:`fss_attr.evaluation.episodes`), or a callable ``source(i)``.
        n_episodes: how many episodes the source holds (default ``len(source)``).
        backend: AffEx backend ("auto", "torch", "cpu", "cuda", "literal").
        device: torch device the episodes are moved to.
        cache_size: how many encoded episodes are kept (least recently used first out).

    Thread-safe: requests from several tabs may run concurrently; an episode is encoded once.
    """

    def __init__(self, adapter, source, n_episodes: int | None = None, backend: str = "auto",
                 device: str | torch.device = "cpu", cache_size: int = 4):
        if n_episodes is None:
            n_episodes = len(source)
        if n_episodes < 1:
            raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
        self.adapter = adapter
        self.source = source
        self.n_episodes = int(n_episodes)
        self.backend = backend
        self.device = torch.device(device)
        self.cache_size = max(1, int(cache_size))
        self._cache: OrderedDict[int, EncodedEpisode] = OrderedDict()
        self._lock = threading.Lock()
        self._episode_locks: dict[int, threading.Lock] = {}
        self._explainers: dict = {}

    # ----------------------------------------------------------------------------------------------- episodes
    def check_index(self, index) -> int:
        """The episode index as an int; ExplorerError 404 when it is not one of 0 … n_episodes − 1."""
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            try:
                index = int(str(index), 10)
            except ValueError:
                raise ExplorerError(f"episode index must be an integer, got {index!r}", 400) from None
        if not 0 <= index < self.n_episodes:
            raise ExplorerError(f"episode index {index} is out of range: 0 … {self.n_episodes - 1}", 404)
        return int(index)

    @torch.no_grad()
    def encoded(self, index) -> EncodedEpisode:
        """The cached :class:`EncodedEpisode` of episode ``index`` (encoded on first use)."""
        index = self.check_index(index)
        with self._lock:
            hit = self._cache.get(index)
            if hit is not None:
                self._cache.move_to_end(index)
                return hit
            lock = self._episode_locks.setdefault(index, threading.Lock())
        with lock:
            with self._lock:
                hit = self._cache.get(index)
            if hit is not None:
                return hit
            t0 = time.perf_counter()
            episode = (self.source(index) if callable(self.source) else self.source[index]).to(self.device)
            if episode.batch_size != 1:
                raise ExplorerError(f"the explorer shows one episode at a time; the source gave batch size "
                                    f"{episode.batch_size}", 500)
            state = self.adapter.encode(episode)
            logits = self.adapter.decode(state)
            ablated = [self.adapter.decode(state, ablate_level=l) for l in range(self.adapter.n_levels)]
            enc = EncodedEpisode(index, episode, state, list(self.adapter.levels(state)), logits, ablated,
                                 logits.argmax(1) == 1, time.perf_counter() - t0)
            with self._lock:
                self._cache[index] = enc
                self._cache.move_to_end(index)
                while len(self._cache) > self.cache_size:
                    old, _ = self._cache.popitem(last=False)
                    self._episode_locks.pop(old, None)
            return enc

    def explainer(self, variant: str, softmax: bool, top_k: int) -> AffinityExplainer:
        key = (variant, softmax, top_k)
        ex = self._explainers.get(key)
        if ex is None:
            ex = self._explainers[key] = AffinityExplainer(variant, softmax=softmax, top_k=top_k,
                                                           backend=self.backend)
        return ex

    # ------------------------------------------------------------------------------------------- validation
    @staticmethod
    def check_options(variant="unmasked", softmax=True, top_k=0, weights="ablation") -> tuple[str, bool, int, str]:
        if variant not in VARIANTS:
            raise ExplorerError(f"variant must be one of {', '.join(VARIANTS)}; got {variant!r}")
        if not isinstance(softmax, bool):
            raise ExplorerError(f"softmax must be true or false, got {softmax!r}")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 0 <= top_k <= MAX_TOP_K:
            raise ExplorerError(f"top_k must be an integer in [0, {MAX_TOP_K}] (0 = off), got {top_k!r}")
        if weights not in WEIGHTINGS:
            raise ExplorerError(f"weights must be one of {', '.join(WEIGHTINGS)}; got {weights!r}")
        return variant, softmax, top_k, weights

    @staticmethod
    def _coord(spec: dict, name: str, limit: int) -> int:
        v = spec.get(name)
        if isinstance(v, bool) or not isinstance(v, int):
            raise ExplorerError(f"region.{name} must be an integer pixel coordinate, got {v!r}")
        if not 0 <= v < limit:
            raise ExplorerError(f"region.{name} = {v} is outside the image: 0 … {limit - 1}")
        return v

    def region(self, enc: EncodedEpisode, spec) -> torch.Tensor:
        """The query region R [1, H, W] bool described by ``spec`` (a dict with ``kind``).

        Kinds: ``point`` (x, y), ``box`` (x0, y0, x1, y1, corners inclusive, any order), ``mask`` (``data``:
        base64 of H·W bytes, each 0 or 1, row-major), ``prediction``, ``gt`` (the ground truth, when the
        episode has one), ``all``. Pixel coordinates are integers, x in [0, W), y in [0, H).
        Raises ExplorerError (400, or 422 for a prediction or ground truth that is empty or unknown).
        """
        import base64
        import binascii

        h, w = enc.image_size
        if not isinstance(spec, dict) or spec.get("kind") not in REGION_KINDS:
            kind = spec.get("kind") if isinstance(spec, dict) else spec
            raise ExplorerError(f"region.kind must be one of {', '.join(REGION_KINDS)}; got {kind!r}")
        kind = spec["kind"]
        r = torch.zeros(1, h, w, dtype=torch.bool, device=self.device)
        if kind == "point":
            r[0, self._coord(spec, "y", h), self._coord(spec, "x", w)] = True
        elif kind == "box":
            x0, x1 = sorted((self._coord(spec, "x0", w), self._coord(spec, "x1", w)))
            y0, y1 = sorted((self._coord(spec, "y0", h), self._coord(spec, "y1", h)))
            r[0, y0:y1 + 1, x0:x1 + 1] = True
        elif kind == "mask":
            data = spec.get("data")
            if not isinstance(data, str) or len(data) > 4 * (h * w + 2) // 3 + 4:
                raise ExplorerError(f"region.data must be base64 of {h}·{w} = {h * w} bytes")
            try:
                raw = base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError):
                raise ExplorerError("region.data is not valid base64") from None
            if len(raw) != h * w:
                raise ExplorerError(f"region.data holds {len(raw)} bytes; the image has {h}·{w} = {h * w} pixels")
            m = np.frombuffer(raw, dtype=np.uint8)
            if m.max(initial=0) > 1:
                raise ExplorerError("region.data bytes must be 0 or 1")
            r = torch.from_numpy(m.reshape(1, h, w) == 1).to(self.device)
        elif kind == "prediction":
            r = enc.prediction.clone()
        elif kind == "gt":
            if enc.episode.query_mask is None:
                raise ExplorerError("this episode has no ground truth", 422)
            r = enc.episode.query_mask.clone()
        else:
            r[:] = True
        if not bool(r.any()):
            raise ExplorerError(f"the region ({kind}) is empty: choose at least one query pixel", 422)
        return r

    def weights_for(self, enc: EncodedEpisode, region: torch.Tensor, weights: str) -> torch.Tensor:
        """[1, L] float64 level weights: ablation weights for ``region`` or uniform 1/L."""
        if weights == "ablation":
            return level_weights_from_ablations(enc.logits, enc.ablated_logits, region)
        n = len(enc.levels)
        return torch.full((1, n), 1.0 / n, dtype=torch.float64, device=self.device)

    # ----------------------------------------------------------------------------------------------- forward
    @torch.no_grad()
    def explain(self, index, region, variant="unmasked", softmax=True, top_k=0, weights="ablation",
                per_level=False) -> dict:
        """AffEx maps of the support images for a query region of episode ``index``.

        Args:
            region: a region spec (see :meth:`region`) or a [1, H, W] bool tensor.
            variant, softmax, top_k: as :class:`fss_attr.AffinityExplainer`.
            weights: "ablation" (the paper's, for this region) or "uniform".
            per_level: also return each level's map A_l (before weighting), min-max scaled per level.

        Returns:
            dict with ``maps`` [N, H, W] float32 in [0, 1] (exactly ``explain_levels`` of the cached levels),
            ``level_weights`` [L] float64, ``region`` [H, W] bool, ``zero`` (signed only: the value of the map
            where the signed evidence is zero, for a diverging colour scale), ``level_maps`` (L × [N, H, W]
            float32, when asked), ``compute_ms``.
        """
        variant, softmax, top_k, weights = self.check_options(variant, softmax, top_k, weights)
        enc = self.encoded(index)
        t0 = time.perf_counter()
        r = region if isinstance(region, torch.Tensor) else self.region(enc, region)
        w = self.weights_for(enc, r, weights)
        ex = self.explainer(variant, softmax, top_k)
        ep = enc.episode
        try:
            maps = ex.explain_levels(enc.levels, r, ep.support_masks, w, out_size=enc.image_size)
        except ValueError as e:    # e.g. softmax off on a model with signed affinities: the library's reason
            raise ExplorerError(str(e)) from None
        out = {"maps": maps[0], "level_weights": w[0], "region": r[0]}
        if variant == "signed":
            out["zero"] = self._signed_zero(enc, maps[0], ex)
        if per_level:
            out["level_maps"] = [minmax(m.float())[0] for m in
                                 self.explainer("unmasked", softmax, top_k).level_maps(enc.levels, r, enc.image_size)]
        out["compute_ms"] = (time.perf_counter() - t0) * 1e3
        return out

    def _signed_zero(self, enc: EncodedEpisode, signed: torch.Tensor, ex: AffinityExplainer) -> float:
        """Where the signed map's raw value E ⊙ (2G − 1) is zero, on the map's [0, 1] scale (for display).

        The signed map is S = (E·t − lo)/(hi − lo), t = 2G − 1, E ≥ 0 with E = 0 somewhere, so its zero z
        satisfies max{S : t < 0} ≤ z ≤ min{S : t > 0}, one of the two bounds exactly (the pixel where E = 0);
        the midpoint is returned, exact when t keeps one sign. The gap is the jump of S across the mask
        boundary, where |t| is small (well under 1% of the scale for the paper's blur).
        """
        key = ("sign", ex.blur_kernel, ex.blur_sigma)
        t = enc.row_stats.get(key)
        if t is None:
            from fss_attr.affex.blur import gaussian_blur

            g = gaussian_blur(enc.episode.support_masks.to(torch.float32), ex.blur_kernel, ex.blur_sigma)
            t = enc.row_stats[key] = (g.to(torch.float64) * 2 - 1)[0]
        below = signed[t < 0]
        above = signed[t > 0]
        lo = float(below.max()) if below.numel() else None
        hi = float(above.min()) if above.numel() else None
        if lo is None and hi is None:
            return 0.5
        if lo is None:
            return hi
        if hi is None:
            return lo
        return min(1.0, max(0.0, 0.5 * (lo + hi)))

    # ----------------------------------------------------------------------------------------------- reverse
    def _row_stats(self, enc: EncodedEpisode, li: int, softmax: bool, top_k: int):
        """Per query row of level ``li``: (top-k threshold or None, row max, Σ exp(s − max) over kept) [Q]."""
        key = (li, softmax, top_k)
        hit = enc.row_stats.get(key)
        if hit is not None:
            return hit
        lv = enc.levels[li]
        q_total = lv.query_hw[0] * lv.query_hw[1]
        m = lv.n_shots * lv.support_hw[0] * lv.support_hw[1]
        step = max(1, (1 << 22) // max(m, 1))
        thr, mx, sm = [], [], []
        for q0 in range(0, q_total, step):
            s = self._scores(lv, slice(q0, q0 + step), None)[0]               # [rows, M]
            keep = None
            if 0 < top_k < m:
                t = torch.topk(s, top_k, dim=-1, sorted=True).values[:, -1:]
                thr.append(t[:, 0])
                keep = s >= t
            if softmax:
                rmax = s.amax(-1, keepdim=True)
                e = (s - rmax).exp()
                if keep is not None:
                    e = e * keep
                mx.append(rmax[:, 0])
                sm.append(e.sum(-1))
        stats = (torch.cat(thr) if thr else None, torch.cat(mx) if mx else None, torch.cat(sm) if sm else None)
        enc.row_stats[key] = stats
        return stats

    @staticmethod
    def _scores(lv, rows, cols) -> torch.Tensor:
        """Scores [1, rows, cols] of a level, computed only for the rows and columns asked (slices or index)."""
        if isinstance(lv, LevelScores):
            s = lv.scores[:, rows]
            return s if cols is None else s[:, :, cols]
        q = lv.query[:, rows]
        k = lv.support if cols is None else lv.support[:, cols]
        acc = torch.float64 if q.dtype == torch.float64 else torch.float32
        return similarity_scores(q.to(acc), k.to(acc), lv.similarity, float(lv.scale), lv.relu)

    @torch.no_grad()
    def reverse(self, index, shot, x, y, softmax=True, top_k=0, weights="ablation", region=None) -> dict:
        """Which query positions support pixel (x, y) of support image ``shot`` matches.

        Per level l, the support pixel's column of the affinity after the row rules (top-k, softmax over all
        shots) is the bilinear mix of the (up to four) support positions around the pixel, with the weights
        the maps' upsampling gives that pixel. It is upsampled bilinearly to the query size and normalized to
        sum 1: exactly AffEx step 3's Ũ_j, whose mean over a region R is position j's attribution. The
        aggregate is Σ_l w_l Ũ_l with the level weights (ablation weights need ``region``; default: the
        prediction).

        Returns:
            dict with ``map`` [H, W] float32 (aggregate, min-max scaled to [0, 1]), ``level_maps`` L × [H, W]
            float32 (each min-max scaled), ``level_weights`` [L] float64, ``compute_ms``.
        """
        _, softmax, top_k, weights = self.check_options("unmasked", softmax, top_k, weights)
        if not softmax:   # the same rule as AffEx: without the softmax the affinities must be non-negative
            try:
                for i, lv in enumerate(self.encoded(index).levels):
                    check_nonnegative_affinity(lv, i)
            except ValueError as e:
                raise ExplorerError(str(e)) from None
        enc = self.encoded(index)
        t0 = time.perf_counter()
        h, w = enc.image_size
        if isinstance(shot, bool) or not isinstance(shot, int) or not 0 <= shot < enc.n_shots:
            raise ExplorerError(f"shot must be an integer in 0 … {enc.n_shots - 1}, got {shot!r}")
        x = self._coord({"x": x}, "x", w)
        y = self._coord({"y": y}, "y", h)
        r = enc.prediction if region is None else (
            region if isinstance(region, torch.Tensor) else self.region(enc, region))
        if weights == "ablation" and not bool(r.any()):
            r = torch.ones_like(r)
        lw = self.weights_for(enc, r, weights)
        total, per_level = None, []
        for li, lv in enumerate(enc.levels):
            hs, ws = lv.support_hw
            wy = linear_interp_matrix(h, hs, device=self.device)[y]           # [hs]
            wx = linear_interp_matrix(w, ws, device=self.device)[x]           # [ws]
            iy, ix = wy.nonzero().flatten(), wx.nonzero().flatten()
            cols = (shot * hs * ws + iy[:, None] * ws + ix[None, :]).flatten()  # ≤ 4 support positions
            mix = (wy[iy][:, None] * wx[ix][None, :]).flatten()                 # their bilinear weights
            s = self._scores(lv, slice(None), cols)[0].double()                 # [Q, c]
            thr, rmax, rsum = self._row_stats(enc, li, softmax, top_k)
            # the k-th score itself is recomputed here with another GEMM shape: compare up to float rounding
            keep = None if thr is None else s >= (thr.double() - 1e-5 * thr.double().abs().clamp_min(1))[:, None]
            if softmax:
                p = (s - rmax.double()[:, None]).exp() / rsum.double()[:, None]
            else:
                p = s
            if keep is not None:
                p = p * keep
            col = p @ mix                                                       # [Q]
            u = upsample_bilinear(col.view(1, *lv.query_hw), (h, w))[0]
            u = u / (u.sum() + NORM_EPS)
            per_level.append(u)
            total = lw[0, li] * u if total is None else total + lw[0, li] * u
        return {"map": minmax(total[None], torch.float32)[0],
                "level_maps": [minmax(u[None], torch.float32)[0] for u in per_level],
                "level_weights": lw[0], "compute_ms": (time.perf_counter() - t0) * 1e3}

    # ----------------------------------------------------------------------------------------------- display
    def episode_info(self, index) -> dict:
        """The episode as the page shows it: RGB images, masks, prediction, levels (numpy arrays)."""
        from fss_attr.data.imagenet import imagenet_denormalize

        enc = self.encoded(index)
        ep = enc.episode
        meta = ep.meta or {}
        q = meta.get("query_rgb")
        s = meta.get("support_rgb")
        q = imagenet_denormalize(ep.query.float().cpu()) if q is None else q
        s = imagenet_denormalize(ep.support_images.float().cpu()) if s is None else s

        def rgb(t):
            return (t.clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).contiguous().cpu().numpy())

        h, w = enc.image_size
        return {
            "index": enc.index, "n_episodes": self.n_episodes, "height": h, "width": w, "n_shots": ep.n_shots,
            "class_name": meta.get("class_name", ""), "model": type(self.adapter).__name__,
            "query": rgb(q[0].cpu()), "supports": [rgb(s[0, n].cpu()) for n in range(ep.n_shots)],
            "support_masks": [m.cpu().numpy().astype(np.uint8) for m in ep.support_masks[0]],
            "prediction": enc.prediction[0].cpu().numpy().astype(np.uint8),
            "ground_truth": None if ep.query_mask is None else ep.query_mask[0].cpu().numpy().astype(np.uint8),
            "levels": [{"query_hw": list(lv.query_hw), "support_hw": list(lv.support_hw)} for lv in enc.levels],
            "encode_ms": enc.encode_s * 1e3,
        }
