"""How saliency maps are made comparable across images before segment statistics are taken.

A saliency map's scale is arbitrary: one explainer returns gradients of 1e-4, another min-max scaled maps, and
even one explainer's maps vary in total mass from image to image. Per-image *shares* (a segment's saliency over
the image's total) do not depend on the scale, but *mean saliency* does, and means are averaged over images in
the dataset table. So every map is first rescaled on its own (the ``normalize`` argument of the functions in
:mod:`fss_attr.sat.reduce`), by one of:

- ``"mean"`` (default): divide by the map's mean, so every map averages 1. A segment's mean saliency is then its
  *enrichment*: 1 for a segment that receives exactly its area's worth of the image's saliency, 3 for three
  times that; it does not depend on the explainer's scale nor on the image size.
- ``"sum"``: divide by the map's total, so every map sums to 1; a segment's mean saliency is its share per pixel
  (the enrichment divided by H·W, so it shrinks with the image size).
- ``"max"``: divide by the map's maximum (the peak of every map is 1).
- ``"minmax"``: (x − min) / (max − min) per map, as the ``maps`` of every fss_attr explainer
  (:func:`fss_attr.explanation.minmax`, the one min-max of the package). The only mode that accepts negative
  values: it shifts them to [0, 1].
- ``"none"``: use the values as given.

A map whose total (``"mean"``, ``"sum"``), maximum (``"max"``) or range (``"minmax"``) is 0 becomes all zeros.
Maps must be non-negative except under ``"minmax"`` (take ``abs()`` or the positive part of signed attributions
first), since a share of a signed total has no meaning.

Every mode is an affine map per image, x -> (x - offset) / scale, so the statistics of a segment (its sum and
pixel count) can be taken on the raw map and normalized afterwards: :func:`normalize_params` gives the offset and
scale without writing a normalized copy of the maps; :func:`normalize_maps` applies them to maps.
"""
from __future__ import annotations

import torch

from fss_attr.explanation import minmax, minmax_range
from fss_attr.validation import check_choice

NORMALIZATIONS = ("mean", "sum", "max", "minmax", "none")


def check_normalize(normalize) -> str:
    return check_choice("normalize", normalize, NORMALIZATIONS)


def normalize_params(maps: torch.Tensor, normalize: str = "mean", totals: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(offset [B], scale [B]) in maps' dtype with normalized = (maps - offset) / scale, scale > 0.

    ``maps`` [B, H, W] floating; ``totals`` [B], the maps' sums when already computed (used by "mean", "sum").
    Raises ValueError on negative values unless ``normalize`` is "minmax".
    """
    check_normalize(normalize)
    b = maps.shape[0]
    flat = maps.reshape(b, maps.shape[1] * maps.shape[2])
    zero = torch.zeros(b, dtype=maps.dtype, device=maps.device)
    one = torch.ones(b, dtype=maps.dtype, device=maps.device)
    if b == 0 or flat.shape[1] == 0:
        return zero, one
    if normalize == "minmax":
        return minmax_range(flat)
    lo = flat.amin(1)          # amin and amax, not aminmax: aminmax over dim 1 runs ~6x slower on CPU
    if bool((lo < 0).any()):
        raise ValueError(f"maps has negative values; with normalize={normalize!r} maps must be non-negative "
                         "(pass maps.abs(), or normalize='minmax')")
    if normalize == "none":
        return zero, one
    if normalize in ("mean", "sum"):
        scale = flat.sum(1) if totals is None else totals
        if normalize == "mean":
            scale = scale / flat.shape[1]
        return zero, torch.where(scale > 0, scale, one)
    hi = flat.amax(1)          # "max"
    return zero, torch.where(hi > 0, hi, one)


def normalize_maps(maps: torch.Tensor, normalize: str = "mean") -> torch.Tensor:
    """[B, H, W] floating -> [B, H, W] of the same dtype, rescaled per map (see the module docstring)."""
    if check_normalize(normalize) == "minmax":
        return minmax(maps)
    _, scale = normalize_params(maps, normalize)
    return maps if normalize == "none" else maps / scale.view(-1, 1, 1)
