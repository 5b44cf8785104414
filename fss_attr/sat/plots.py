"""The two pictures of a Segment Attribution Table, from :meth:`SATAccumulator.summary` rows: a per-class bar
chart of segment reliance, and a class × segment heat map."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from fss_attr.sat.table import SUMMARY_COLUMNS


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


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_reliance_bars(summary: Sequence[dict], path: str | Path, value: str = "mean_share", title: str = "") -> Path:
    """Grouped bars: one group per class, one bar per segment, height ``value`` (default the mean share of
    saliency), error bars the matching std column when there is one."""
    classes, segments, grid = _grid(summary, value)
    err = None
    if value.startswith("mean_"):
        err = np.nan_to_num(_grid(summary, "std_" + value[5:])[2])
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(classes) * max(1, len(segments)) / 2), 3.6))
    width = 0.8 / max(1, len(segments))
    x = np.arange(len(classes))
    for j, seg in enumerate(segments):
        ax.bar(x + (j - (len(segments) - 1) / 2) * width, np.nan_to_num(grid[:, j]), width,
               yerr=None if err is None else err[:, j], capsize=2, label=seg)
    ax.set_xticks(x, [str(c) for c in classes], rotation=30 if len(classes) > 6 else 0)
    ax.set_ylabel(value.replace("_", " "))
    ax.set_title(title or f"segment reliance per class ({value})")
    ax.legend(fontsize=8, ncol=min(4, len(segments)))
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_heatmap(summary: Sequence[dict], path: str | Path, value: str = "mean_share", title: str = "") -> Path:
    """Class × segment heat map of ``value``, each cell annotated (blank where NaN)."""
    classes, segments, grid = _grid(summary, value)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * len(segments), 1.0 + 0.5 * len(classes)))
    im = ax.imshow(grid, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(segments)), segments, rotation=45 if len(segments) > 4 else 0, ha="right"
                  if len(segments) > 4 else "center")
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
    ax.set_title(title or f"class × segment ({value})")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
