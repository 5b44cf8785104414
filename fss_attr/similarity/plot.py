"""Picture of a pair's (or a triplet's) similarity explanations (PNG, matplotlib's Agg backend): a row per image
(image 1, image 2, and with a triplet method the negative), the image itself in the first column, then a column
per method with that image's map overlaid and the score the method explains in its title."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import torch

from fss_attr.viz import ATTRIBUTION_CMAP, display_rgb, overlay_legend_handles, pyplot, save_figure


def pair_figure(x1: torch.Tensor, x2: torch.Tensor, maps: Mapping[str, torch.Tensor],
                scores: Mapping[str, object] | None = None, masks: Sequence[torch.Tensor] | None = None,
                title: str | None = None, negative: torch.Tensor | None = None,
                row_labels: Sequence[str] = ("anchor", "positive", "negative"), score_label: str = "s"):
    """The figure of :func:`plot_pair` (a matplotlib Figure, not saved)."""
    plt = pyplot()

    if not maps:
        raise ValueError("maps must hold at least one named pair of maps")
    size = tuple(x1.shape[-2:])
    for name, m in maps.items():
        if tuple(m.shape) not in ((2, *size), (3, *size)):
            raise ValueError(f"maps[{name!r}] must be [2, H, W] or (a triplet) [3, H, W] with (H, W) = {size}, "
                             f"got {tuple(m.shape)}")
    triplets = [name for name, m in maps.items() if m.shape[0] == 3]
    if triplets and negative is None:
        raise ValueError(f"maps {triplets} are triplets ([3, H, W]): pass the negative image")
    images = (x1, x2) + ((negative,) if triplets else ())
    rows, cols = len(images), len(maps) + 1
    fig, axes = plt.subplots(rows, cols, figsize=(2.0 * cols + 0.9, 2.25 * rows + 0.7), squeeze=False,
                             layout="constrained")
    im = None
    for r, image in enumerate(images):
        rgb = display_rgb(image)
        panels = [("image", None)] + list(maps.items())
        for c, (name, m) in enumerate(panels):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if m is not None and r >= m.shape[0]:          # a pair method has no map of the negative
                ax.imshow(rgb, alpha=0.25)
                ax.text(0.5, 0.5, "pair method:\nno map of\nthe negative", transform=ax.transAxes, ha="center",
                        va="center", fontsize=7)
                continue
            ax.imshow(rgb)
            if m is not None:
                im = ax.imshow(m[r].detach().float().cpu().numpy(), cmap=ATTRIBUTION_CMAP, alpha=0.6, vmin=0,
                               vmax=1)
            if masks is not None and r < len(masks) and masks[r] is not None:
                ax.contour(masks[r].cpu().numpy().astype(float), levels=[0.5], colors="white", linewidths=1.0)
            score = None if scores is None or m is None else scores.get(name)
            if m is not None and m.shape[0] == 3 and score is not None:
                ax.set_xlabel(f"wᵀe = {float(score[r]):.3f}", fontsize=7)
            if r == 0:
                label = name
                if score is not None and m.shape[0] == 2:
                    label += f"\n{score_label} = {float(score):.3f}"
                elif m is not None and m.shape[0] == 3:
                    label += "\n(explains wᵀe per image)"
                ax.set_title(label, fontsize=8)
        axes[r, 0].set_ylabel(row_labels[r] if r < len(row_labels) else f"image {r + 1}", fontsize=9)
    fig.colorbar(im, ax=axes[:, -1].tolist(), shrink=0.8, label="map (min-max scaled: 0 least, 1 most)")
    if masks is not None:
        fig.legend(handles=overlay_legend_handles(mask=True, mask_label="shared object"), loc="outside lower center",
                   fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_pair(x1: torch.Tensor, x2: torch.Tensor, maps: Mapping[str, torch.Tensor], path: str | Path,
              scores: Mapping[str, object] | None = None, masks: Sequence[torch.Tensor] | None = None,
              title: str | None = None, negative: torch.Tensor | None = None,
              row_labels: Sequence[str] = ("anchor", "positive", "negative"), score_label: str = "s") -> Path:
    """Write the figure of one pair, or one triplet when a method's maps are a triplet's.

    Args:
        x1, x2: [3, H, W] ImageNet-normalised images (the anchor and the positive).
        maps: method name -> [2, H, W] maps in [0, 1] (image 1's, image 2's), or [3, H, W] for a triplet
            method (anchor's, positive's, negative's map); a triplet adds a row for ``negative``, where the
            pair methods' cells say that they have no map of it.
        path: the PNG to write.
        scores: optional method name -> the explained score: a float for a pair method (shown under its name
            as ``score_label`` = value), three floats for a triplet method (wᵀe of each image, under its map).
        masks: optional [H, W] bool masks per row (the shared object; None for a row without one), drawn as
            white outlines and named in a legend.
        title: optional figure title.
        negative: [3, H, W] the triplet's negative image; required when a method's maps are [3, H, W].
        row_labels: the rows' names.

    Raises:
        ValueError: no maps, a map of the wrong shape, or a triplet without ``negative``.
    """
    return save_figure(pair_figure(x1, x2, maps, scores, masks, title, negative, row_labels, score_label), path,
                       tight=False)
