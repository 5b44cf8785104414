"""Dataset-level Segment Attribution Table: a streaming aggregate by (class, segment name), and its export.

Per (class c, segment s), over the images of class c:

- ``n_images``: images of the class seen; ``presence``: the fraction of them in which s has pixels;
- ``mean_saliency`` / ``std_saliency``: mean and sample standard deviation (ddof 1; NaN below 2 values) of s's
  mean saliency per pixel, over the images where s is present;
- ``mean_share`` / ``std_share``: the same for s's share of the image's total saliency;
- ``rank_first``: the fraction of the class's images in which s ranks first (by ``rank_by``, see
  :meth:`fss_attr.sat.reduce.SegmentStats.first`).

Batches are merged with Chan et al.'s pairwise update of (count, mean, M2) in float64, so nothing but a few
[classes, segments] tensors is kept however many maps stream through.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Iterable, Sequence

import torch

from fss_attr.sat.reduce import RANK_BY, ROW_COLUMNS, SegmentStats, _per_image
from fss_attr.validation import check_choice

SUMMARY_COLUMNS = ("class", "segment", "n_images", "presence", "mean_saliency", "std_saliency", "mean_share",
                   "std_share", "rank_first")
_F64 = torch.float64


class _Moments:
    """Count, mean and M2 per cell of a growing [C, S] grid."""

    def __init__(self):
        self.n = torch.zeros(0, 0, dtype=_F64)
        self.mean = torch.zeros(0, 0, dtype=_F64)
        self.m2 = torch.zeros(0, 0, dtype=_F64)

    def grow(self, c: int, s: int) -> None:
        for k in ("n", "mean", "m2"):
            old = getattr(self, k)
            new = torch.zeros(c, s, dtype=_F64)
            new[: old.shape[0], : old.shape[1]] = old
            setattr(self, k, new)

    def add(self, rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, present: torch.Tensor) -> None:
        """Merge values [B, S'] of images of classes ``rows`` [B] into columns ``cols`` [S'] (cells where
        ``present`` [B, S'] is False are ignored)."""
        c = self.n.shape[0]
        w = present.to(_F64)
        v = torch.where(present, values.to(_F64), torch.zeros_like(w))
        n_b = torch.zeros(c, len(cols), dtype=_F64).index_add_(0, rows, w)
        sum_b = torch.zeros(c, len(cols), dtype=_F64).index_add_(0, rows, v)
        mean_b = sum_b / n_b.clamp_min(1)
        dev = torch.where(present, v - mean_b[rows], torch.zeros_like(w))
        m2_b = torch.zeros(c, len(cols), dtype=_F64).index_add_(0, rows, dev * dev)
        n_a, mean_a = self.n[:, cols], self.mean[:, cols]
        n = n_a + n_b
        delta = mean_b - mean_a
        safe = n.clamp_min(1)
        self.mean[:, cols] = mean_a + delta * n_b / safe
        self.m2[:, cols] = self.m2[:, cols] + m2_b + delta * delta * n_a * n_b / safe
        self.n[:, cols] = n

    def std(self) -> torch.Tensor:
        return torch.where(self.n > 1, (self.m2 / (self.n - 1).clamp_min(1)).sqrt(), torch.full_like(self.n, math.nan))


class SATAccumulator:
    """Streams :class:`SegmentStats` batches into the dataset table (see the module docstring).

    Classes and segment names are collected as they appear (a segment unseen in a class's images counts as
    absent from them). ``rank_by``: "mean" or "share".
    """

    def __init__(self, rank_by: str = "mean"):
        self.rank_by = check_choice("rank_by", rank_by, RANK_BY)
        self.classes: list = []
        self.segments: list[str] = []
        self._class_index: dict = {}
        self._segment_index: dict[str, int] = {}
        self.n_images = torch.zeros(0, dtype=_F64)
        self.n_present = torch.zeros(0, 0, dtype=_F64)
        self.n_first = torch.zeros(0, 0, dtype=_F64)
        self.saliency = _Moments()
        self.share = _Moments()

    def _index(self, table: dict, order: list, keys) -> list[int]:
        for k in keys:
            if k not in table:
                table[k] = len(order)
                order.append(k)
        return [table[k] for k in keys]

    def update(self, stats: SegmentStats, classes: Sequence) -> None:
        """Add a batch: ``stats`` of B images and their B class labels (hashable: str, int, ...)."""
        if not isinstance(stats, SegmentStats):
            raise TypeError(f"stats must be a SegmentStats, got {type(stats).__name__}")
        b = stats.counts.shape[0]
        classes = _per_image("classes", classes, b)
        rows = torch.tensor(self._index(self._class_index, self.classes, classes), dtype=torch.int64)
        cols = torch.tensor(self._index(self._segment_index, self.segments, stats.names), dtype=torch.int64)
        c, s = len(self.classes), len(self.segments)
        if (c, s) != tuple(self.n_present.shape):
            n_images = torch.zeros(c, dtype=_F64)
            n_images[: self.n_images.shape[0]] = self.n_images
            self.n_images = n_images
            for k in ("n_present", "n_first"):
                old, new = getattr(self, k), torch.zeros(c, s, dtype=_F64)
                new[: old.shape[0], : old.shape[1]] = old
                setattr(self, k, new)
            self.saliency.grow(c, s)
            self.share.grow(c, s)
        if b == 0:
            return
        stats = SegmentStats(stats.names, stats.counts.cpu(), stats.sums.cpu(), stats.totals.cpu())
        present = stats.present
        self.n_images.index_add_(0, rows, torch.ones(b, dtype=_F64))
        self.n_present[:, cols] += torch.zeros(c, len(cols), dtype=_F64).index_add_(0, rows, present.to(_F64))
        first = stats.first(self.rank_by)
        hit = torch.zeros(b, len(cols), dtype=_F64)
        ok = first >= 0
        hit[ok.nonzero().view(-1), first[ok]] = 1.0
        self.n_first[:, cols] += torch.zeros(c, len(cols), dtype=_F64).index_add_(0, rows, hit)
        self.saliency.add(rows, cols, stats.mean, present)
        self.share.add(rows, cols, stats.share, present)

    def summary(self) -> list[dict]:
        """One dict per (class, segment), keys :data:`SUMMARY_COLUMNS`, classes and segments in order of first
        appearance. Mean values of a segment never present in a class are NaN."""
        n_img = self.n_images[:, None].clamp_min(1)
        presence = (self.n_present / n_img).tolist()
        first = (self.n_first / n_img).tolist()
        nan = lambda m: torch.where(m.n > 0, m.mean, torch.full_like(m.mean, math.nan)).tolist()  # noqa: E731
        ms, ss, mh, sh = nan(self.saliency), self.saliency.std().tolist(), nan(self.share), self.share.std().tolist()
        return [{"class": cls, "segment": seg, "n_images": int(self.n_images[i]), "presence": presence[i][j],
                 "mean_saliency": ms[i][j], "std_saliency": ss[i][j], "mean_share": mh[i][j], "std_share": sh[i][j],
                 "rank_first": first[i][j]}
                for i, cls in enumerate(self.classes) for j, seg in enumerate(self.segments)]


def write_csv(rows: Iterable[dict], path: str | Path, columns: Sequence[str] | None = None,
              append: bool = False) -> Path:
    """Write dict rows to CSV (header unless appending to a non-empty file); floats with repr precision."""
    rows = list(rows)
    path = Path(path)
    if columns is None:
        columns = list(rows[0]) if rows else list(ROW_COLUMNS)
    header = not (append and path.exists() and path.stat().st_size > 0)
    with path.open("a" if append else "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        if header:
            w.writeheader()
        w.writerows(rows)
    return path


def read_csv(path: str | Path) -> list[dict]:
    """Rows of a CSV written by :func:`write_csv`, values as str."""
    with Path(path).open(newline="") as f:
        return list(csv.DictReader(f))


def _cell(v, digits: int) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.{digits}f}"
    return str(v)


def plain_table(rows: Iterable[dict], columns: Sequence[str] | None = None, digits: int = 4) -> str:
    """A fixed-width text table of dict rows (no pandas): text columns left-aligned, numbers right-aligned."""
    rows = list(rows)
    if columns is None:
        columns = list(rows[0]) if rows else list(SUMMARY_COLUMNS)
    cells = [[_cell(r.get(c, ""), digits) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[k]) for row in cells]) for k, c in enumerate(columns)]
    numeric = [bool(rows) and all(isinstance(r.get(c), (int, float)) and not isinstance(r.get(c), bool)
                                  for r in rows) for c in columns]
    fmt = lambda vals: "  ".join(v.rjust(w) if num else v.ljust(w)  # noqa: E731
                                 for v, w, num in zip(vals, widths, numeric)).rstrip()
    lines = [fmt(list(columns)), "  ".join("-" * w for w in widths)]
    lines += [fmt(row) for row in cells]
    return "\n".join(lines) + "\n"
