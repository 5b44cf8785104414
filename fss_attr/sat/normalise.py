"""How saliency maps are made comparable across images before segment statistics are taken.

A saliency map's scale is arbitrary: one explainer returns gradients of 1e-4, another min-max scaled maps, and
even one explainer's maps vary in total mass from image to image. Per-image *shares* (a segment's saliency over
the image's total) do not depend on the scale, but *mean saliency* does, and means are averaged over images in
the dataset table. So every map is first rescaled on its own, by one of:

- ``"sum"`` (default): divide by the map's total, so every map sums to 1. A segment's mean saliency is then its
  share of the image's saliency per pixel, comparable across image sizes and explainers; multiplied by H·W it
  is 1 for a segment that receives exactly its area's worth of saliency (its *enrichment*).
- ``"max"``: divide by the map's maximum (the peak of every map is 1).
- ``"minmax"``: (x − min) / (max − min) per map (as fss_attr's explainers do; :func:`fss_attr.affex.minmax`).
  The only mode that accepts negative values: it shifts them to [0, 1].
- ``"none"``: use the values as given.

A map whose total (``"sum"``), maximum (``"max"``) or range (``"minmax"``) is 0 becomes all zeros. Maps must
be non-negative except under ``"minmax"`` (take ``abs()`` of signed attributions first), since a share of a
signed total has no meaning.

Every mode is an affine map per image, x -> (x - offset) / scale, so the statistics of a segment (its sum and
pixel count) can be taken on the raw map and normalised afterwards: :func:`normalise_params` gives the offset and
scale without writing a normalised copy of the maps; :func:`normalise_maps` applies them to maps.
"""
from __future__ import annotations

import torch

from fss_attr.affex import minmax

NORMALISATIONS = ("sum", "max", "minmax", "none")


def check_normalise(normalise) -> str:
    if normalise not in NORMALISATIONS:
        raise ValueError(f"normalise must be one of {NORMALISATIONS}, got {normalise!r}")
    return normalise


def normalise_params(maps: torch.Tensor, normalise: str = "sum", totals: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(offset [B], scale [B]) in maps' dtype with normalised = (maps - offset) / scale, scale > 0.

    ``maps`` [B, H, W] floating; ``totals`` [B], the maps' sums when already computed (used by "sum").
    Raises ValueError on negative values unless ``normalise`` is "minmax".
    """
    check_normalise(normalise)
    b = maps.shape[0]
    flat = maps.reshape(b, maps.shape[1] * maps.shape[2])
    zero, one = torch.zeros(b, dtype=maps.dtype, device=maps.device), torch.ones(b, dtype=maps.dtype, device=maps.device)
    if b == 0 or flat.shape[1] == 0:
        return zero, one
    lo, hi = torch.aminmax(flat, dim=1)
    if normalise != "minmax" and b and bool((lo < 0).any()):
        raise ValueError(f"maps has negative values; with normalise={normalise!r} maps must be non-negative "
                         "(pass maps.abs(), or normalise='minmax')")
    if normalise == "none":
        return zero, one
    if normalise == "minmax":
        span = hi - lo
        return lo, torch.where(span > 0, span, one)
    scale = (flat.sum(1) if totals is None else totals) if normalise == "sum" else hi
    return zero, torch.where(scale > 0, scale, one)


def normalise_maps(maps: torch.Tensor, normalise: str = "sum") -> torch.Tensor:
    """[B, H, W] floating -> [B, H, W] of the same dtype, rescaled per map (see the module docstring)."""
    if check_normalise(normalise) == "minmax":
        return minmax(maps)
    _, scale = normalise_params(maps, normalise)
    return maps if normalise == "none" else maps / scale.view(-1, 1, 1)
