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


def _grid(summary: Sequence[dict], value: str):
    if value not in SUMMARY_COLUMNS[3:]:
        raise ValueError(f"value must be one of {SUMMARY_COLUMNS[3:]}, got {value!r}")
    if not summary:
        raise ValueError("summary has no rows")
    classes = list(dict.fromkeys(r["class"] for r in summary))
    segments = list(dict.fromkeys(r["segment"] for r in summary))
    grid = np.full((len(classes), len(segments)), np.nan)
    for r in summary:
        grid[classes.index(r["class"]), segments.index(r["segment"])] = r[value]
    return classes, segments, grid


def _finish(fig, ax, title: str, width_in: float):
    ax.set_title(textwrap.fill(title, max(30, int(width_in * 11))), fontsize=9)
    fig.tight_layout()
    return fig


def _counts(summary: Sequence[dict]) -> dict:
    """(class, segment) -> the number of the class's images that show the segment (n_images × presence)."""
    return {(r["class"], r["segment"]): int(round(float(r["n_images"]) * float(r["presence"]))) for r in summary}


def reliance_bars_figure(summary: Sequence[dict], value: str = "mean_share", title: str = ""):
    """The figure of :func:`plot_reliance_bars` (a matplotlib Figure, not saved)."""
    classes, segments, grid = _grid(summary, value)
    err = _grid(summary, "std_" + value[5:])[2] if value.startswith("mean_") else None
    counts = _counts(summary)
    plt = pyplot()
    width_in = min(16.0, max(5.5, 0.35 * len(classes) * (len(segments) + 1)))
    fig, ax = plt.subplots(figsize=(width_in, 4.2))
    width = 0.8 / max(1, len(segments))
    x = np.arange(len(classes))
    for j, seg in enumerate(segments):
        ok = np.isfinite(grid[:, j])
        yerr = None if err is None else np.where(np.isfinite(err[ok, j]), err[ok, j], 0.0)
        ax.bar(x[ok] + (j - (len(segments) - 1) / 2) * width, grid[ok, j], width, yerr=yerr, capsize=2,
               label=seg, color=f"C{j % 10}")
    n_class = [max((counts.get((c, seg), 0) for seg in segments), default=0) for c in classes]
    ax.set_xticks(x, [f"{c}\n(n = {n})" for c, n in zip(classes, n_class)], rotation=30 if len(classes) > 6 else 0,
                  ha="right" if len(classes) > 6 else "center")
    ax.set_ylabel(value.replace("_", " "))
    handles, labels = ax.get_legend_handles_labels()
    if err is not None:
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], color="black", marker="_", ms=8, ls="-", lw=1))
        sizes = sorted({n for n in counts.values() if n})
        span = f"n = {sizes[0]}" if len(sizes) == 1 else f"n = {sizes[0]}–{sizes[-1]}" if sizes else "n = 0"
        labels.append(f"error bar: ±1 standard deviation over the class's\nimages that show the segment ({span}; "
                      "n per class under its name)")
    ax.legend(handles, labels, fontsize=7, ncol=1, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _finish(fig, ax, title or f"segment reliance per class ({value})", width_in)


def plot_reliance_bars(summary: Sequence[dict], path: str | Path, value: str = "mean_share", title: str = "") -> Path:
    """Grouped bars (PNG at ``path``): one group per class (its image count n under its name), one bar per
    segment, height ``value`` (default the mean share of saliency), error bars ±1 sample standard deviation
    (the matching std column, over the class's images that show the segment; named in the legend) when there is
    one; a segment never present in a class has no bar.

    Raises:
        ValueError: no rows, or ``value`` is not a summary column.
    """
    return save_figure(reliance_bars_figure(summary, value, title), path, dpi=110, tight=False)


def heatmap_figure(summary: Sequence[dict], value: str = "mean_share", title: str = ""):
    """The figure of :func:`plot_heatmap` (a matplotlib Figure, not saved)."""
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
    return _finish(fig, ax, title or f"class × segment ({value})", width_in)


def plot_heatmap(summary: Sequence[dict], path: str | Path, value: str = "mean_share", title: str = "") -> Path:
    """Class × segment heat map of ``value`` (PNG at ``path``), each cell annotated (blank where NaN: the segment
    never occurs in the class).

    Raises:
        ValueError: no rows, or ``value`` is not a summary column.
    """
    return save_figure(heatmap_figure(summary, value, title), path, dpi=110, tight=False)
