"""The two pictures of a Segment Attribution Table, from :meth:`SATAccumulator.summary` rows: a per-class bar
chart of segment reliance, and a class × segment heat map."""
from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Sequence

import numpy as np

from fss_attr.sat.table import SUMMARY_COLUMNS
from fss_attr.viz import pyplot, save_figure
from fss_attr.validation import check_choice


def _grid(summary: Sequence[dict], value: str):
    check_choice("value", value, SUMMARY_COLUMNS[3:])
    if not summary:
        raise ValueError("summary has no rows")
    classes = list(dict.fromkeys(r["class"] for r in summary))
    segments = list(dict.fromkeys(r["segment"] for r in summary))
    grid = np.full((len(classes), len(segments)), np.nan)
    for r in summary:
        grid[classes.index(r["class"]), segments.index(r["segment"])] = r[value]
    return classes, segments, grid


def _finish(fig, ax, title: str, width_in: float, path) -> Path:
    ax.set_title(textwrap.fill(title, max(30, int(width_in * 11))), fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110, tight=False)


def plot_reliance_bars(summary: Sequence[dict], path: str | Path, value: str = "mean_share", title: str = "") -> Path:
    """Grouped bars: one group per class, one bar per segment, height ``value`` (default the mean share of
    saliency), error bars the matching std column when there is one; a segment never present in a class has
    no bar."""
    classes, segments, grid = _grid(summary, value)
    err = _grid(summary, "std_" + value[5:])[2] if value.startswith("mean_") else None
    plt = pyplot()
    width_in = min(16.0, max(5.0, 0.35 * len(classes) * (len(segments) + 1)))
    fig, ax = plt.subplots(figsize=(width_in, 3.8))
    width = 0.8 / max(1, len(segments))
    x = np.arange(len(classes))
    for j, seg in enumerate(segments):
        ok = np.isfinite(grid[:, j])
        yerr = None if err is None else np.where(np.isfinite(err[ok, j]), err[ok, j], 0.0)
        ax.bar(x[ok] + (j - (len(segments) - 1) / 2) * width, grid[ok, j], width, yerr=yerr, capsize=2,
               label=seg, color=f"C{j % 10}")
    ax.set_xticks(x, [str(c) for c in classes], rotation=30 if len(classes) > 6 else 0,
                  ha="right" if len(classes) > 6 else "center")
    ax.set_ylabel(value.replace("_", " "))
    ax.legend(fontsize=8, ncol=min(4, len(segments)))
    return _finish(fig, ax, title or f"segment reliance per class ({value})", width_in, path)


def plot_heatmap(summary: Sequence[dict], path: str | Path, value: str = "mean_share", title: str = "") -> Path:
    """Class × segment heat map of ``value``, each cell annotated (blank where NaN: the segment never occurs in
    the class)."""
    classes, segments, grid = _grid(summary, value)
    plt = pyplot()
    label_in = 0.075 * max(len(str(c)) for c in classes)          # room for the class names
    rotate = len(segments) > 4 or max(len(s) for s in segments) > 8
    width_in = min(16.0, max(5.0, 1.6 + label_in + 0.9 * len(segments)))
    height_in = min(16.0, 1.6 + 0.45 * len(classes) + (0.06 * max(len(s) for s in segments) if rotate else 0))
    fig, ax = plt.subplots(figsize=(width_in, height_in))
    im = ax.imshow(grid, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(segments)), segments, rotation=45 if rotate else 0, ha="right" if rotate else "center")
    ax.set_yticks(range(len(classes)), [str(c) for c in classes])
    finite = grid[np.isfinite(grid)]
    mid = (finite.max() + finite.min()) / 2 if finite.size else 0.0
    if len(classes) * len(segments) <= 400:
        for i in range(len(classes)):
            for j in range(len(segments)):
                v = grid[i, j]
                if not math.isnan(v):
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                            color="black" if v > mid else "white")
    fig.colorbar(im, ax=ax, label=value.replace("_", " "))
    return _finish(fig, ax, title or f"class × segment ({value})", width_in, path)
