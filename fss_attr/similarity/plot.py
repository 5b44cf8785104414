"""Picture of a pair's similarity explanations: a row per method, each image of the pair under its map
(PNG, matplotlib's Agg backend; the styling of :mod:`fss_attr.viz`)."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import torch

from fss_attr.viz import _rgb


def plot_pair(x1: torch.Tensor, x2: torch.Tensor, maps: Mapping[str, torch.Tensor], path: str | Path,
              scores: Mapping[str, float] | None = None, masks: Sequence[torch.Tensor] | None = None,
              title: str | None = None) -> Path:
    """Write the figure of one pair.

    Args:
        x1, x2: [3, H, W] ImageNet-normalised images.
        maps: method name -> [2, H, W] maps in [0, 1] (image 1's, image 2's).
        path: the PNG to write.
        scores: optional method name -> the explained score (shown in the row label).
        masks: optional pair of [H, W] bool masks (the shared object), drawn as white outlines.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not maps:
        raise ValueError("maps must hold at least one named pair of maps")
    fig, axes = plt.subplots(len(maps), 2, figsize=(2 * 2.4, 2.5 * len(maps)), squeeze=False)
    images = (_rgb(x1), _rgb(x2))
    for r, (name, m) in enumerate(maps.items()):
        if tuple(m.shape) != (2, *x1.shape[-2:]):
            raise ValueError(f"maps[{name!r}] must be [2, H, W] = {(2, *x1.shape[-2:])}, got {tuple(m.shape)}")
        for c in range(2):
            ax = axes[r, c]
            ax.imshow(images[c])
            im = ax.imshow(m[c].detach().float().cpu().numpy(), cmap="inferno", alpha=0.6, vmin=0, vmax=1)
            if masks is not None:
                ax.contour(masks[c].cpu().numpy().astype(float), levels=[0.5], colors="white", linewidths=1.0)
            ax.set_title(f"image {c + 1}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        label = name if scores is None or name not in scores else f"{name}\ns = {scores[name]:.3f}"
        axes[r, 0].set_ylabel(label, fontsize=9)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.6, label="map")
    if title:
        fig.suptitle(title, fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path
