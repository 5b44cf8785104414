"""Per-(image, segment) saliency statistics as one batched masked reduction.

For B maps and S named segments the statistics are three tensors: the pixel count of each segment [B, S], the
saliency inside it [B, S] and the total saliency of each (normalised) map [B]. Everything a row of a Segment
Attribution Table holds follows from them: mean saliency = inside / count, share = inside / total.

- Label maps [B, H, W]: per-label histograms by ``bincount`` (weighted by the map for the sums, unweighted for
  the counts), then labels -> named segments by one ``index_add`` over the [B, labels] histograms (labels without
  a name land in a discard column). On GPU one bincount covers the batch (bin = image · labels + label); on CPU
  one bincount per image runs on the labels as given, since writing the batch's int64 bin index costs ~5x the
  two bincounts there.
- Binary masks [B, S, H, W]: one batched matrix product masks [B, S, HW] @ [maps, 1] [B, HW, 2] gives sums and
  counts at once; overlapping masks are no special case. On CPU the masks go per image through a cache-sized
  float buffer in pixel chunks, with a matrix-vector product for the sums and a row sum for the counts (a GEMM
  with two columns runs at a fraction of memory bandwidth there).
- COCO annotations: decoded to binary masks (:func:`fss_attr.sat.segments.coco_masks`), then as masks.

The reduction reads the raw maps; the per-image normalisation (an affine map, see
:mod:`fss_attr.sat.normalize`) is applied to the [B, S] sums afterwards: sum' = (sum - offset·count) / scale.
Accumulation runs in float64 for float64 maps and in float32 otherwise (float16/bfloat16 maps are upcast); pixel
counts are exact (with TF32 matrix products enabled on GPU, mask sums would be rounded to TF32's 10-bit mantissa).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from fss_attr.sat.normalize import check_normalise, normalise_params
from fss_attr.sat.segments import check_names, coco_masks, label_table
from fss_attr.validation import check_mask, check_tensor

RANK_BY = ("mean", "share")
ROW_COLUMNS = ("image_id", "class", "segment", "pixels", "mean_saliency", "share")


@dataclass
class SegmentStats:
    """Statistics of B maps over S named segments.

    Attributes:
        names: the S segment names.
        counts: [B, S] int64 pixels of each segment (0: the segment is missing from the image).
        sums: [B, S] float saliency inside each segment (of the normalised map).
        totals: [B] float total saliency of each normalised map.
    """

    names: tuple[str, ...]
    counts: torch.Tensor
    sums: torch.Tensor
    totals: torch.Tensor

    @property
    def present(self) -> torch.Tensor:
        """[B, S] bool: the segment has at least one pixel in the image."""
        return self.counts > 0

    @property
    def mean(self) -> torch.Tensor:
        """[B, S] mean saliency per pixel of the segment; NaN where the segment is missing."""
        c = self.counts.to(self.sums.dtype)
        return torch.where(self.counts > 0, self.sums / c.clamp_min(1), torch.full_like(self.sums, float("nan")))

    @property
    def share(self) -> torch.Tensor:
        """[B, S] the segment's share of the map's total saliency (0 where the total is 0 or it is missing)."""
        t = self.totals[:, None]
        return torch.where(t > 0, self.sums / torch.where(t > 0, t, torch.ones_like(t)), torch.zeros_like(self.sums))

    def first(self, rank_by: str = "mean") -> torch.Tensor:
        """[B] int64 index of the segment that ranks first in each image by ``rank_by`` ("mean" saliency per
        pixel or "share"), among the segments present; the lowest index wins ties; -1 where no segment is
        present or the map's total saliency is 0 (nothing ranks first in an empty map)."""
        if rank_by not in RANK_BY:
            raise ValueError(f"rank_by must be one of {RANK_BY}, got {rank_by!r}")
        value = self.mean if rank_by == "mean" else self.share
        value = torch.where(self.present, value, torch.full_like(value, float("-inf")))
        idx = value.argmax(1) if value.shape[1] else torch.zeros(value.shape[0], dtype=torch.int64,
                                                                 device=value.device)
        ranked = self.present.any(1) & (self.totals > 0)
        return torch.where(ranked, idx, torch.full_like(idx, -1))

    def rows(self, image_ids: Sequence | None = None, classes: Sequence | None = None) -> list[dict]:
        """One dict per (image, present segment), keys :data:`ROW_COLUMNS`, images in order then segments in
        the order of ``names``. ``image_ids`` default to 0..B-1; ``classes`` (B labels) default to None."""
        b = self.counts.shape[0]
        image_ids = list(range(b)) if image_ids is None else _per_image("image_ids", image_ids, b)
        classes = [None] * b if classes is None else _per_image("classes", classes, b)
        counts, mean, share = self.counts.tolist(), self.mean.tolist(), self.share.tolist()
        return [{"image_id": image_ids[i], "class": classes[i], "segment": name, "pixels": counts[i][s],
                 "mean_saliency": mean[i][s], "share": share[i][s]}
                for i in range(b) for s, name in enumerate(self.names) if counts[i][s] > 0]


def _per_image(name: str, values, b: int) -> list:
    if isinstance(values, torch.Tensor):
        values = values.tolist()
    values = list(values)
    if len(values) != b:
        raise ValueError(f"{name} must hold one entry per image ({b}), got {len(values)}")
    return values


MASK_CHUNK_ELEMENTS = 1 << 17    # floats of the masks' copy per matrix product on CPU (512 KB in float32)
BATCHED_ON_CPU = False           # True: CPU takes the batched (GPU) paths too; the tests check both paths


def _batched(device: torch.device) -> bool:
    return device.type != "cpu" or BATCHED_ON_CPU


def _prepare(maps: torch.Tensor, normalise: str) -> tuple[torch.Tensor, torch.Tensor]:
    """maps in the accumulation dtype, and their per-image totals; checks maps and ``normalise``."""
    check_tensor("maps", maps, ndim=3, floating=True, finite=True)
    check_normalise(normalise)
    maps = maps.to(torch.float64 if maps.dtype == torch.float64 else torch.float32)
    b, h, w = maps.shape
    totals = maps.reshape(b, h * w).sum(1)
    if not bool(torch.isfinite(totals).all()) and not bool(torch.isfinite(maps).all()):
        raise ValueError("maps contains NaN or infinite values")
    return maps, totals


def _normalised(names, counts, sums, maps, totals, normalise) -> SegmentStats:
    """Apply the per-image affine normalisation to raw segment sums and totals."""
    offset, scale = normalise_params(maps, normalise, totals)
    b, h, w = maps.shape
    sums = (sums - offset[:, None] * counts.to(sums.dtype)) / scale[:, None]
    totals = (totals - offset * (h * w)) / scale
    return SegmentStats(names, counts, sums, totals)


DENSE_LABELS = 1 << 16


def _label_histograms(maps: torch.Tensor, labels: torch.Tensor, n_labels: int
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image and label in 0..n_labels-1: (saliency sum [B, n_labels] in maps' dtype, pixels [B, n_labels]
    int64). On CPU one bincount per image on the labels as given (writing the int64 bin index [B, H, W] of a
    batched bincount costs ~5x the two bincounts there); elsewhere one bincount over the batch, bin =
    image · n_labels + label."""
    b = maps.shape[0]
    if not _batched(maps.device):
        if b == 0:
            return torch.zeros(0, n_labels, dtype=maps.dtype), torch.zeros(0, n_labels, dtype=torch.int64)
        flat_labels, flat_maps = labels.reshape(b, -1), maps.reshape(b, -1)
        sums = torch.stack([torch.bincount(flat_labels[i], weights=flat_maps[i], minlength=n_labels)
                            for i in range(b)])
        counts = torch.stack([torch.bincount(flat_labels[i], minlength=n_labels) for i in range(b)])
        return sums.to(maps.dtype), counts
    offsets = torch.arange(0, b * n_labels, n_labels, dtype=torch.int64, device=maps.device).view(b, 1, 1)
    bins = (labels + offsets).reshape(-1)
    sums = torch.bincount(bins, weights=maps.reshape(-1), minlength=b * n_labels).view(b, n_labels)
    counts = torch.bincount(bins, minlength=b * n_labels).view(b, n_labels)
    return sums.to(maps.dtype), counts


def label_stats(maps: torch.Tensor, labels: torch.Tensor, names, normalise: str = "mean") -> SegmentStats:
    """Statistics from label maps.

    Args:
        maps: [B, H, W] floating saliency maps.
        labels: [B, H, W] integer labels >= 0 (same device as maps).
        names: the name table: a sequence (label i -> names[i]) or a mapping {label: name}; labels without a
            name (e.g. 255) are ignored. Histograms run over 0..(largest named label + 1) while that is at most
            max(65536, H·W) bins; tables with larger label values are indexed by their named labels instead,
            so memory stays in proportion to the data and the table.
        normalise: see :mod:`fss_attr.sat.normalize`.
    """
    maps, totals = _prepare(maps, normalise)
    check_tensor("labels", labels, ndim=3)
    if labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
        raise TypeError(f"labels must be an integer tensor, got {labels.dtype}")
    if labels.shape != maps.shape:
        raise ValueError(f"labels must have the maps' shape {tuple(maps.shape)}, got {tuple(labels.shape)}")
    if labels.device != maps.device:
        raise ValueError(f"labels must be on the maps' device {maps.device}, got {labels.device}")
    seg_names, keys, segment = label_table(names)
    b, h, w = maps.shape
    if labels.numel() and int(labels.min()) < 0:
        raise ValueError("labels must be >= 0 (give unnamed regions a label that is not in the name table)")
    discard = torch.tensor([len(seg_names)], dtype=torch.int64)
    top = int(keys[-1])
    if top + 2 <= max(DENSE_LABELS, h * w):
        # a dense table over 0..top+1 (the last bin catches labels above the table): no remapping pass
        lut = torch.full((top + 2,), len(seg_names), dtype=torch.int64)
        lut[keys] = segment
        n_labels = top + 2
        if labels.numel() and int(labels.max()) >= n_labels:
            labels = labels.clamp(max=n_labels - 1)
    else:
        # large label values: index the K named labels (bin K collects the others); memory O(K + data)
        keys_d = keys.to(labels.device)
        flat = labels.to(torch.int64)
        idx = torch.searchsorted(keys_d, flat).clamp_(max=keys.numel() - 1)
        labels = torch.where(keys_d[idx] == flat, idx, torch.full_like(idx, keys.numel()))
        lut = torch.cat([segment, discard])
        n_labels = keys.numel() + 1
    hist_sums, hist_counts = _label_histograms(maps, labels, n_labels)
    # labels -> segments: add each label's column into its segment's (column S collects the unnamed labels)
    lut = lut.to(maps.device)
    sums = torch.zeros(b, len(seg_names) + 1, dtype=maps.dtype, device=maps.device)
    sums.index_add_(1, lut, hist_sums)
    counts = torch.zeros(b, len(seg_names) + 1, dtype=torch.int64, device=maps.device).index_add_(1, lut, hist_counts)
    return _normalised(seg_names, counts[:, :-1], sums[:, :-1], maps, totals, normalise)


def mask_stats(maps: torch.Tensor, masks: torch.Tensor, names: Sequence[str], normalise: str = "mean") -> SegmentStats:
    """Statistics from binary masks, which may overlap.

    Args:
        maps: [B, H, W] floating saliency maps.
        masks: [B, S, H, W] bool or 0/1 (same device as maps); an all-zero mask is a missing segment.
        names: S distinct segment names.
        normalise: see :mod:`fss_attr.sat.normalize`.
    """
    maps, totals = _prepare(maps, normalise)
    check_tensor("masks", masks, ndim=4)
    b, h, w = maps.shape
    s = masks.shape[1]
    names = check_names(names, s)
    masks = check_mask("masks", masks, (b, s, h, w), maps.device)
    hw = h * w
    acc = maps.dtype if hw < 2 ** 24 else torch.float64       # counts (sums of ones) stay exact
    flat = masks.reshape(b, s, hw).view(torch.uint8)           # uint8 -> float converts ~3x faster than bool
    values = maps.reshape(b, hw).to(acc)
    if _batched(maps.device):
        rhs = torch.stack([values, torch.ones_like(values)], 2)
        out = torch.bmm(flat.to(acc), rhs)                     # [B, S, 2]: sums, counts
        sums, counts = out[..., 0], out[..., 1]
    else:    # per image, pixel chunks through a cache-sized float buffer; matrix-vector products, not GEMM
        sums, counts = torch.zeros(b, s, dtype=acc), torch.zeros(b, s, dtype=acc)
        chunk = max(256, MASK_CHUNK_ELEMENTS // max(1, s))
        buf = torch.empty(s * min(chunk, hw), dtype=acc)
        for i in range(b):
            for p in range(0, hw, chunk):
                q = min(chunk, hw - p)
                part = buf[: s * q].view(s, q)
                part.copy_(flat[i, :, p: p + q])
                sums[i].addmv_(part, values[i, p: p + q])
                counts[i].add_(part.sum(1))
    return _normalised(names, counts.round().long(), sums.to(maps.dtype), maps, totals, normalise)


def coco_stats(maps: torch.Tensor, annotations: Sequence[Sequence[dict]], names: Sequence[str],
               normalise: str = "mean", categories: dict | None = None) -> SegmentStats:
    """Statistics from COCO annotations: ``annotations[i]`` is image i's list of annotation dicts (see
    :func:`fss_attr.sat.segments.coco_masks`); ``names`` orders the segments."""
    check_tensor("maps", maps, ndim=3, floating=True, finite=True)
    b, h, w = maps.shape
    if isinstance(annotations, (str, dict)) or len(annotations) != b:
        raise ValueError(f"annotations must be a list of {b} per-image annotation lists")
    masks = torch.stack([coco_masks(a, names, h, w, categories) for a in annotations]) if b else \
        torch.zeros(0, len(check_names(names)), h, w, dtype=torch.bool)
    return mask_stats(maps, masks.to(maps.device), names, normalise)


def segment_stats(maps: torch.Tensor, segments, names, normalise: str = "mean", categories: dict | None = None
                  ) -> SegmentStats:
    """Dispatch on the form of ``segments``: [B, H, W] integer labels (``names``: a name table), [B, S, H, W]
    binary masks (``names``: S names), or a list of per-image COCO annotation lists (``names``: the segments)."""
    if isinstance(segments, torch.Tensor):
        if segments.dim() == 3:
            return label_stats(maps, segments, names, normalise)
        if segments.dim() == 4:
            return mask_stats(maps, segments, names, normalise)
        raise ValueError(f"segments must be [B, H, W] labels or [B, S, H, W] masks, got shape {tuple(segments.shape)}")
    if isinstance(segments, (list, tuple)):
        return coco_stats(maps, segments, names, normalise, categories)
    raise TypeError(f"segments must be a tensor or a list of COCO annotation lists, got {type(segments).__name__}")
