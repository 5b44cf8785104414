"""Picture of a pair's similarity explanations (PNG, matplotlib's Agg backend): a row per image of the pair,
the image itself in the first column, then a column per method with that image's map overlaid."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import torch

from fss_attr.viz import display_rgb, pyplot, save_figure


def plot_pair(x1: torch.Tensor, x2: torch.Tensor, maps: Mapping[str, torch.Tensor], path: str | Path,
              scores: Mapping[str, float] | None = None, masks: Sequence[torch.Tensor] | None = None,
              title: str | None = None) -> Path:
    """Write the figure of one pair.

    Args:
        x1, x2: [3, H, W] ImageNet-normalized images.
        maps: method name -> [2, H, W] maps in [0, 1] (image 1's, image 2's).
        path: the PNG to write.
        scores: optional method name -> the explained score (shown under the method's name).
        masks: optional pair of [H, W] bool masks (the shared object), drawn as white outlines.
        title: optional figure title.
    """
    plt = pyplot()

    if not maps:
        raise ValueError("maps must hold at least one named pair of maps")
    for name, m in maps.items():
        if tuple(m.shape) != (2, *x1.shape[-2:]):
            raise ValueError(f"maps[{name!r}] must be [2, H, W] = {(2, *x1.shape[-2:])}, got {tuple(m.shape)}")
    cols = len(maps) + 1
    fig, axes = plt.subplots(2, cols, figsize=(2.0 * cols + 0.6, 4.6), squeeze=False, layout="constrained")
    for r, image in enumerate((x1, x2)):
        rgb = display_rgb(image)
        panels = [("image", None)] + list(maps.items())
        for c, (name, m) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(rgb)
            if m is not None:
                im = ax.imshow(m[r].detach().float().cpu().numpy(), cmap="inferno", alpha=0.6, vmin=0, vmax=1)
            if masks is not None:
                ax.contour(masks[r].cpu().numpy().astype(float), levels=[0.5], colors="white", linewidths=1.0)
            if r == 0:
                label = name if scores is None or name not in scores else f"{name}\ns = {scores[name]:.3f}"
                ax.set_title(label, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(f"image {r + 1}", fontsize=9)
    fig.colorbar(im, ax=axes[:, -1].tolist(), shrink=0.8, label="map")
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path, tight=False)
