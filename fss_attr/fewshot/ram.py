"""Region Activation Mapping (RAM) for the Region Comparison Network, and AffEx on RCN's correlation.

RCN's class score is a sum over support regions: y_c = (1/K) Σ_k Σ_r w_r·s_r (:mod:`fss_attr.fewshot.rcn`).
RAM shows the terms of that sum:

- support map: region r of shot k of class c holds w_r·s_r / K. Before upsampling, a class's support maps
  (all shots, all regions) sum to its score y_c exactly;
- query map: each term w_r·s_r / K is routed to the query cell that region r matched (the argmax of its
  comparison), so a query map shows where in the query the evidence for class c was found; it sums to y_c
  as well;
- category level: averaged over many episodes, the support regions of a class that contribute most when
  the query is of that class are its prototypical regions.

AffEx (:class:`fss_attr.AffinityExplainer`) reads the same correlation as one matching level: the scores
of a query's h·w cells against the K·h·w cells of one class's shots. In classification there is no predicted
query mask, so by default the region R it explains is the whole query image. With R = the whole image AffEx
is degenerate: step 3 normalises every support position's upsampled map to sum 1 over the image, so step 4's
mean over R is a_j = (1/|R|)·m_j/(m_j + 1e-6), m_j that map's mass before normalising: a constant up to a
relative 1e-6 (the map after min-max scaling shows only that epsilon and rounding). A strict sub-region
carries information: :func:`matched_region` (the query cells where RCN found the class's evidence) or a
query mask.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fss_attr.affex.explainer import AffinityExplainer
from fss_attr.data.classification.episodes import EpisodeSampler, PoolFeatures
from fss_attr.data.classification.pool import ImagePool
from fss_attr.affex.interp import upsample_bilinear
from fss_attr.affex.levels import LevelScores
from fss_attr.fewshot.classifier import check_labels
from fss_attr.fewshot.rcn import RCNOutput, RegionComparisonNetwork


@dataclass
class RegionActivationMaps:
    """RAM of an episode: Qn queries, n_way classes, K shots, grid h×w.

    Attributes:
        support: [Qn, n_way, K, h, w] w_r·s_r / K on the support regions; Σ over (K, h, w) = ``scores``.
        query: [Qn, n_way, K, h, w] the same terms at the query cells they matched; Σ over (K, h, w) = ``scores``.
        scores: [Qn, n_way] RCN's class scores.
    """

    support: torch.Tensor
    query: torch.Tensor
    scores: torch.Tensor


def region_activation_maps(output: RCNOutput) -> RegionActivationMaps:
    """RAM from RCN's intermediate quantities (no upsampling; see :func:`upsample_maps`)."""
    qn, n_way, k, _ = output.weights.shape
    h, w = output.grid
    terms = output.weights * output.similarity / k                             # [Qn, n_way, K, R]
    routed = torch.zeros_like(terms).scatter_add_(-1, output.match, terms)
    return RegionActivationMaps(terms.reshape(qn, n_way, k, h, w), routed.reshape(qn, n_way, k, h, w), output.scores)


def upsample_maps(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling (align_corners=False) of [..., h, w] region maps to [..., H, W] for display.

    Upsampling does not keep the sums: the sum-to-score property holds for the region maps only.
    """
    return upsample_bilinear(maps, size)


def _check_labels(output: RCNOutput, labels) -> torch.Tensor:
    return check_labels(output.scores, torch.as_tensor(labels, device=output.scores.device))


def class_level(output: RCNOutput, labels: torch.Tensor) -> LevelScores:
    """The correlation of each query with the K shots of one class as one AffEx level (B = Qn).

    Args:
        output: RCN's output for an episode.
        labels: [Qn] int64, the class whose shots each query is matched against.

    Returns:
        LevelScores with scores [Qn, h·w, K·h·w] (query cells row-major; support positions ordered shot,
        row, col).
    """
    qn, n_way, k, _ = output.weights.shape
    labels = _check_labels(output, labels)
    h, w = output.grid
    corr = output.correlation.detach().reshape(qn, h * w, n_way, k * h * w)
    picked = corr[torch.arange(qn), :, labels]                                 # [Qn, h·w, K·h·w]
    return LevelScores(picked, (h, w), (h, w), k)


def matched_region(output: RCNOutput, labels: torch.Tensor, out_size: tuple[int, int],
                   min_share: float | None = None) -> torch.Tensor:
    """[Qn, H, W] bool: the query cells where the support regions of class ``labels[q]`` found their matches,
    upsampled to pixels by nearest neighbour.

    A cell is kept when at least one support region matched it (as its argmax) and the terms w_r·s_r routed
    to it (RAM's query map) exceed ``min_share`` of the class's total; the cell with the largest share is
    always kept. The default ``min_share`` = 1/(h·w), more than a uniform share ("evidence cells"); 0 keeps
    every matched cell (mostly background on the controlled data: low-weight background regions match too).
    """
    qn, _, k, r = output.weights.shape
    labels = _check_labels(output, labels)
    own = torch.arange(qn, device=labels.device)
    index = output.match[own, labels].reshape(qn, k * r)
    terms = (output.weights * output.similarity)[own, labels].reshape(qn, k * r).detach()
    mass = torch.zeros(qn, r, dtype=terms.dtype, device=terms.device).scatter_add_(1, index, terms)
    hits = torch.zeros(qn, r, dtype=torch.bool, device=terms.device).scatter_(1, index, True)
    share = 1.0 / r if min_share is None else float(min_share)
    cells = hits & (mass > share * mass.sum(1, keepdim=True))
    cells |= mass == mass.amax(1, keepdim=True)
    up = F.interpolate(cells.view(qn, 1, *output.grid).float(), size=tuple(out_size), mode="nearest-exact")
    return up[:, 0] > 0.5


def affex_maps(output: RCNOutput, labels: torch.Tensor, out_size: tuple[int, int],
               explainer: AffinityExplainer | None = None,
               region: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """AffEx of each query's match with the shots of class ``labels[q]``: (region attribution [Qn, K, h, w]
    before upsampling, the explainer's maps [Qn, K, H, W] in [0, 1]).

    ``region``: the query region R, [Qn, H, W] bool; None means the whole query image (degenerate, see the
    module docstring). The default explainer is the unmasked variant (no support masks in classification).
    """
    explainer = explainer or AffinityExplainer("unmasked")
    level = class_level(output, labels)
    if region is None:
        region = torch.ones(level.batch_size, *out_size, dtype=torch.bool, device=level.device)
    k = level.n_shots
    attribution = explainer.level_attribution(level, region).reshape(-1, k, *output.grid)
    return attribution, explainer.explain_levels([level], region, out_size=out_size)


@dataclass
class CategoryRegions:
    """Prototypical regions of one class over many episodes.

    Attributes:
        class_name: the class.
        mean_map: [h, w] mean of w_r·s_r over all (query of the class, support of the class) pairs.
        regions: the ``top`` (pool image index, region index r, mean w_r·s_r, times seen) with the highest
            mean contribution, best first, at most ``per_image`` regions of any one support image.
        pairs: the number of (query, support) pairs averaged.
    """

    class_name: str
    mean_map: torch.Tensor
    regions: list[tuple[int, int, float, int]]
    pairs: int


@torch.no_grad()
def category_regions(model: RegionComparisonNetwork, pool: ImagePool, class_index: int, episodes: int = 100,
                     n_way: int = 5, k_shot: int = 1, n_query: int = 15, seed: int = 0, top: int = 8,
                     per_image: int = 1, features: PoolFeatures | None = None) -> CategoryRegions:
    """The category-level view of pool class ``class_index`` (see :class:`CategoryRegions`).

    Uses the first ``episodes`` episodes of the sampler (seed ``seed``) that hold the class; in each, the
    pair contributions w_r·s_r of the class's K supports for the class's own queries are accumulated per
    (support image, region).
    """
    if not isinstance(model, RegionComparisonNetwork):
        raise TypeError(f"model must be a RegionComparisonNetwork, got {type(model).__name__}")
    if not 0 <= class_index < pool.n_classes:
        raise IndexError(f"class_index must be in 0..{pool.n_classes - 1}, got {class_index}")
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    sampler = EpisodeSampler(pool, n_way, k_shot, n_query, seed)
    features = features or PoolFeatures(model, pool, progress=False)
    h, w = model.config["grid"]
    total, count = {}, {}
    map_sum, pairs, used, index = torch.zeros(h * w, dtype=torch.float64), 0, 0, 0
    while used < episodes:
        if index > 50 * episodes:
            raise RuntimeError(f"class {pool.classes[class_index]!r} appears in too few episodes")
        spec = sampler.spec(index)
        index += 1
        if class_index not in spec.classes:
            continue
        used += 1
        label = spec.classes.index(class_index)
        out = model.explain_features(*features.gather(spec))
        own = spec.query_labels == label
        terms = (out.weights * out.similarity)[own, label].double()            # [Qc, K, R]
        map_sum += terms.sum((0, 1))
        pairs += terms.shape[0] * terms.shape[1]
        for shot, image in enumerate(spec.support[label]):
            for r, v in enumerate(terms[:, shot].sum(0).tolist()):
                total[(image, r)] = total.get((image, r), 0.0) + v
                count[(image, r)] = count.get((image, r), 0) + terms.shape[0]
    ranked = sorted(((img, r, total[(img, r)] / count[(img, r)], count[(img, r)]) for img, r in total),
                    key=lambda t: -t[2])
    kept, per = [], {}
    for item in ranked:
        if per.get(item[0], 0) < per_image and len(kept) < top:
            kept.append(item)
            per[item[0]] = per.get(item[0], 0) + 1
    return CategoryRegions(pool.classes[class_index], (map_sum / pairs).reshape(h, w), kept, pairs)


def cell_box(r: int, grid: tuple[int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Pixel box (top, left, bottom, right) of region r (row-major) of a ``grid`` over an image of ``size``."""
    h, w = grid
    i, j = divmod(r, w)
    return (int(np.floor(i * size[0] / h)), int(np.floor(j * size[1] / w)),
            int(np.ceil((i + 1) * size[0] / h)), int(np.ceil((j + 1) * size[1] / w)))
