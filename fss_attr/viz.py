"""Pictures of explanations: the query with its prediction and region, each support with its mask outline
and the attribution overlaid (PNG, matplotlib's Agg backend: no display needed)."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch

from fss_attr.data.imagenet import imagenet_denormalize
from fss_attr.data.episode import Episode


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, dpi: int = 100, tight: bool = True) -> Path:
    """Save a matplotlib figure as PNG (creating the folder), close it, and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight" if tight else None)
    pyplot().close(fig)
    return path


def display_rgb(x: torch.Tensor):
    """[3, H, W] ImageNet-normalized image -> [H, W, 3] float RGB in [0, 1] (numpy), for imshow."""
    return imagenet_denormalize(x.detach().float().cpu()).clamp(0, 1).permute(1, 2, 0).numpy()


def plot_explanations(episode: Episode, explanations: Mapping[str, object], path: str | Path, index: int = 0,
                      title: str | None = None) -> Path:
    """One figure for episode ``index`` of the batch: a row per explanation (name -> :class:`fss_attr.Explanation`
    of an FSS explainer, or any object with ``.maps`` [B, N, H, W], and optionally ``.prediction`` and
    ``.region`` [B, H, W]).

    Column 0 shows the query with the ground truth (green), the prediction (red) and the explained region
    (shaded); the next N columns show each support with its mask (white) and, when the episode has it, the
    known evidence (yellow dashed), under the attribution (inferno, 0–1).
    """
    plt = pyplot()

    if not explanations:
        raise ValueError("explanations must hold at least one named explanation")
    n = episode.n_shots
    rows = len(explanations)
    fig, axes = plt.subplots(rows, n + 1, figsize=(2.4 * (n + 1), 2.5 * rows), squeeze=False)
    query = display_rgb(episode.query[index])
    for r, (name, ex) in enumerate(explanations.items()):
        ax = axes[r, 0]
        ax.imshow(query)
        region = getattr(ex, "region", None)
        if region is not None:
            ax.imshow(region[index].cpu().numpy(), cmap="Blues", alpha=0.25, vmin=0, vmax=1)
        if episode.query_mask is not None:
            ax.contour(episode.query_mask[index].cpu().numpy(), levels=[0.5], colors="lime", linewidths=1.2)
        pred = getattr(ex, "prediction", None)
        if pred is not None:
            ax.contour(pred[index].cpu().numpy().astype(float), levels=[0.5], colors="red", linewidths=1.2)
        ax.set_title("query" if r else "query (gt green, pred red)", fontsize=8)
        ax.set_ylabel(name, fontsize=10)
        maps = ex.maps[index].detach().float().cpu()
        for s in range(n):
            ax = axes[r, s + 1]
            ax.imshow(display_rgb(episode.support_images[index, s]))
            im = ax.imshow(maps[s].numpy(), cmap="inferno", alpha=0.6, vmin=0, vmax=1)
            ax.contour(episode.support_masks[index, s].cpu().numpy().astype(float), levels=[0.5], colors="white",
                       linewidths=1.0)
            if episode.support_evidence is not None:
                ax.contour(episode.support_evidence[index, s].cpu().numpy().astype(float), levels=[0.5],
                           colors="yellow", linewidths=0.8, linestyles="dashed")
            ax.set_title(f"support {s + 1}", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.6, label="attribution")
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)
