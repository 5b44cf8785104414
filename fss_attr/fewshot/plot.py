"""The RAM figure of one query of an episode (PNG, matplotlib's Agg backend)."""
from __future__ import annotations

from pathlib import Path

import torch

from fss_attr.data.classification.episodes import ClassificationEpisode
from fss_attr.fewshot.ram import CategoryRegions, RegionActivationMaps, cell_box, upsample_maps
from fss_attr.viz import outline_halo, display_rgb, pyplot, save_figure


def ram_figure(episode: ClassificationEpisode, ram: RegionActivationMaps, query_index: int,
               affex: dict[int, torch.Tensor] | None = None, category: CategoryRegions | None = None,
               category_images: list[torch.Tensor] | None = None, shot: int = 0, title: str | None = None,
               affex_region: str = "evidence"):
    """Figure (a matplotlib Figure, not saved; :func:`plot_ram` writes it) for query ``query_index``: one
    column per class (its shot ``shot``), rows:

    1. the support image under RAM's support map: each support region's contribution to the class score y
       (region weight × best-match similarity, w_r·s_r / K; one colour scale for all classes, so a weak class
       looks dark) and its object outline when known;
    2. the query under RAM's query map for that class (the same contributions at the query cells they
       matched);
    3. (with ``affex``: label -> [K, H, W]) the support image under AffEx's map of the query's match with
       that class (``affex_region`` names the query region R it used, for the caption);
    4. (with ``category``) the class's prototypical regions over many episodes, from ``category_images``
       (the pool images [3, H, W] in [0, 1] of ``category.regions``, same order).
    """
    plt = pyplot()
    from matplotlib.patches import Rectangle

    n_way, size = episode.n_way, episode.image_size
    scores = ram.scores[query_index].detach().cpu()
    pred, true = int(scores.argmax()), int(episode.query_labels[query_index])
    support = upsample_maps(ram.support[query_index, :, shot].detach().double().cpu(), size)     # [n_way, H, W]
    query = upsample_maps(ram.query[query_index].sum(1).detach().double().cpu(), size)          # [n_way, H, W]
    s_max, q_max = float(support.max()) or 1.0, float(query.max()) or 1.0
    rows = 2 + (affex is not None) + (category is not None)
    fig, axes = plt.subplots(rows, n_way + 1, figsize=(2.2 * (n_way + 1), 2.4 * rows), squeeze=False)
    q_rgb = display_rgb(episode.query[query_index])
    axes[0, 0].imshow(q_rgb)
    axes[0, 0].set_title(f"query: {episode.class_names[true]}\npredicted: {episode.class_names[pred]}", fontsize=8,
                         color="green" if pred == true else "red")
    axes[1, 0].axis("off")
    axes[1, 0].text(0.0, 0.5, "row 1, support map:\neach support region's\ncontribution to the\nclass score y\n"
                              "(weight × similarity,\nw_r·s_r / K)\n\nrow 2, query map:\nthe same contributions\n"
                              "at the query cells\nthey matched", fontsize=7, va="center")
    for c in range(n_way):
        mark = " ★" if c == pred else ""
        ax = axes[0, c + 1]
        ax.imshow(display_rgb(episode.support[c, shot]))
        im_s = ax.imshow(support[c].numpy(), cmap="inferno", alpha=0.6, vmin=0, vmax=s_max)
        if episode.support_masks is not None:
            ax.contour(episode.support_masks[c, shot].numpy().astype(float), levels=[0.5], colors="white",
                       linewidths=0.8)
        ax.set_title(f"{episode.class_names[c]}{mark}\nscore y = {float(scores[c]):.3f}", fontsize=8)
        ax = axes[1, c + 1]
        ax.imshow(q_rgb)
        im_q = ax.imshow(query[c].numpy(), cmap="viridis", alpha=0.6, vmin=0, vmax=q_max)
        if episode.query_masks is not None:
            ax.contour(episode.query_masks[query_index].numpy().astype(float), levels=[0.5], colors="white",
                       linewidths=0.8)
    fig.colorbar(im_s, ax=axes[0].tolist(), shrink=0.7, label="support map:\ncontribution to y")
    fig.colorbar(im_q, ax=axes[1].tolist(), shrink=0.7, label="query map:\ncontribution to y")
    row = 2
    if affex is not None:
        axes[row, 0].axis("off")
        where = {"evidence": "query cells with\nRCN's evidence", "matched": "query cells\nRCN matched",
                 "all": "whole query\n(degenerate)", "object": "query object"}.get(affex_region, affex_region)
        axes[row, 0].text(0.0, 0.5, f"AffEx (unmasked):\nwhich support pixels\nthe query's R matched\n"
                                    f"(on RCN's correlation;\nR = {where})", fontsize=7, va="center")
        for c in range(n_way):
            ax = axes[row, c + 1]
            ax.imshow(display_rgb(episode.support[c, shot]))
            im_a = ax.imshow(affex[c][shot].detach().cpu().numpy(), cmap="inferno", alpha=0.6, vmin=0, vmax=1)
        fig.colorbar(im_a, ax=axes[row].tolist(), shrink=0.7, label="AffEx attribution\n(min-max scaled, 0–1)")
        row += 1
    if category is not None:
        axes[row, 0].axis("off")
        axes[row, 0].text(0.0, 0.5, f"prototypical regions\nof '{category.class_name}':\nthe support regions\n"
                                    f"with the largest mean\ncontribution over\n{category.pairs} same-class pairs\n"
                                    "(title: mean, times seen)", fontsize=7, va="center")
        for j, ((image, r, value, seen), img) in enumerate(zip(category.regions[:n_way], category_images or [])):
            ax = axes[row, j + 1]
            ax.imshow(img.permute(1, 2, 0).numpy())
            t, l, b, rr = cell_box(r, tuple(category.mean_map.shape), size)
            ax.add_patch(Rectangle((l - 0.5, t - 0.5), rr - l, b - t, fill=False, color="cyan",
                                                      linewidth=1.5))
            ax.set_title(f"#{j + 1}: {value:.4g} ({seen}×)", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], ls="none", marker="*", color="black", label="predicted class (★ after its name)")]
    if episode.support_masks is not None or episode.query_masks is not None:
        handles.append(Line2D([], [], color="white", lw=1.5, label="object outline", path_effects=outline_halo()))
    if category is not None:
        handles.append(Rectangle((0, 0), 1, 1, fill=False, color="cyan", lw=1.5, label="prototypical region (box)"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=7, frameon=False,
               bbox_to_anchor=(0.5, -0.02))
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def plot_ram(episode: ClassificationEpisode, ram: RegionActivationMaps, query_index: int, path: str | Path,
             affex: dict[int, torch.Tensor] | None = None, category: CategoryRegions | None = None,
             category_images: list[torch.Tensor] | None = None, shot: int = 0, title: str | None = None,
             affex_region: str = "evidence") -> Path:
    """Write the figure of :func:`ram_figure` as a PNG at ``path`` (the rows are described there)."""
    return save_figure(ram_figure(episode, ram, query_index, affex, category, category_images, shot, title,
                                  affex_region), path)
