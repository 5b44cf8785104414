"""Pictures of explanations: the query with its prediction and region, each support with its mask outline
and the attribution overlaid (PNG, matplotlib's Agg backend: no display needed).

Every figure function comes in two forms: ``*_figure(...)`` builds and returns the matplotlib Figure (for
tests and notebooks), ``plot_*(..., path)`` builds it, writes the PNG and closes it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from fss_attr.data.imagenet import imagenet_denormalize
from fss_attr.data.episode import Episode

# Colours of the overlays, one meaning each, named in every figure's legend.
GT_COLOUR, PRED_COLOUR, REGION_CMAP, MASK_COLOUR, EVIDENCE_COLOUR = "lime", "red", "Blues", "white", "yellow"
ATTRIBUTION_CMAP, SIGNED_CMAP = "inferno", "RdBu_r"


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
    """[3, H, W] ImageNet-normalised image -> [H, W, 3] float RGB in [0, 1] (numpy), for imshow."""
    return imagenet_denormalize(x.detach().float().cpu()).clamp(0, 1).permute(1, 2, 0).numpy()


def signed_evidence(unmasked_maps: torch.Tensor, support_masks: torch.Tensor, blur_kernel: int = 31,
                    blur_sigma: float = 50.0) -> torch.Tensor:
    """The signed AffEx variant before its final min-max: minmax(E) ⊙ (2·G(M_s) − 1).

    The signed variant's maps are the min-max of this, which moves its zero; this keeps the sign: positive
    where the attribution lies on (blurred) support foreground, negative on background, zero where there is no
    attribution or where G = 1/2.

    Args:
        unmasked_maps: [B, N, H, W] floating in [0, 1], the unmasked variant's maps (minmax(E)).
        support_masks: [B, N, H, W] bool (or 0/1) support masks M_s.
        blur_kernel, blur_sigma: the Gaussian G (as :class:`fss_attr.AffinityExplainer`'s).

    Returns:
        [B, N, H, W] float32 in [−1, 1].

    Raises:
        ValueError: shapes differ, or the maps are not floating.
    """
    from fss_attr.affex.blur import gaussian_blur
    from fss_attr.validation import check_mask, check_tensor

    check_tensor("unmasked_maps", unmasked_maps, ndim=4, floating=True)
    masks = check_mask("support_masks", support_masks, tuple(unmasked_maps.shape), unmasked_maps.device)
    g = gaussian_blur(masks.to(torch.float32), blur_kernel, blur_sigma).to(torch.float64)
    return (unmasked_maps.to(torch.float64) * (2 * g - 1)).to(torch.float32)


def overlay_legend_handles(region: bool = False, gt: bool = False, prediction: bool = False, mask: bool = False,
                           evidence: bool = False, mask_label: str = "support mask") -> list:
    """Legend handles for the overlays drawn by the figures of this module (only those asked for)."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = []
    if gt:
        handles.append(Line2D([], [], color=GT_COLOUR, lw=1.5, label="query ground truth (outline)"))
    if prediction:
        handles.append(Line2D([], [], color=PRED_COLOUR, lw=1.5, label="model's prediction (outline)"))
    if region:
        handles.append(Patch(facecolor=pyplot().get_cmap(REGION_CMAP)(0.8), alpha=0.45, edgecolor="none",
                             label="explained query region R (shaded)"))
    if mask:
        handles.append(Line2D([], [], color=MASK_COLOUR, lw=1.5, label=mask_label + " (outline)",
                              path_effects=outline_halo()))
    if evidence:
        handles.append(Line2D([], [], color=EVIDENCE_COLOUR, lw=1.5, ls="--",
                              label="known evidence: support pixels of the query's class (dashed)"))
    return handles


def outline_halo():
    """A grey halo under a white outline, so that it reads on light and dark images (matplotlib path effects)."""
    import matplotlib.patheffects as pe

    return [pe.Stroke(linewidth=3, foreground="0.4"), pe.Normal()]


def explanation_figure(episode: Episode, explanations: Mapping[str, object], index: int = 0,
                       title: str | None = None, signed: Mapping[str, torch.Tensor] | None = None):
    """The figure of :func:`plot_explanations` (a matplotlib Figure, not saved)."""
    plt = pyplot()

    if not explanations:
        raise ValueError("explanations must hold at least one named explanation")
    signed = dict(signed or {})
    unknown = sorted(set(signed) - set(explanations))
    if unknown:
        raise ValueError(f"signed names {unknown} are not among the explanations {list(explanations)}")
    n = episode.n_shots
    rows = len(explanations)
    fig, axes = plt.subplots(rows, n + 1, figsize=(2.3 * (n + 1) + 1.4, 2.4 * rows + 0.9), squeeze=False,
                             layout="constrained")
    query = display_rgb(episode.query[index])
    has_region = has_pred = False
    plain_rows, signed_rows, im_plain, im_signed = [], [], None, None
    for r, (name, ex) in enumerate(explanations.items()):
        ax = axes[r, 0]
        ax.imshow(query)
        region = getattr(ex, "region", None)
        if region is not None:
            shade = np.ma.masked_where(~region[index].cpu().numpy().astype(bool), np.ones(region.shape[-2:]))
            ax.imshow(shade, cmap=REGION_CMAP, alpha=0.45, vmin=0, vmax=1.25)
            has_region = True
        if episode.query_mask is not None:
            ax.contour(episode.query_mask[index].cpu().numpy(), levels=[0.5], colors=GT_COLOUR, linewidths=1.2)
        pred = getattr(ex, "prediction", None)
        if pred is not None:
            ax.contour(pred[index].cpu().numpy().astype(float), levels=[0.5], colors=PRED_COLOUR, linewidths=1.2)
            has_pred = True
        ax.set_title("query", fontsize=8)
        ax.set_ylabel(name + ("\n(before min-max)" if name in signed else ""), fontsize=9)
        if name in signed:
            maps, cmap, lim, alpha = signed[name][index].detach().float().cpu(), SIGNED_CMAP, (-1, 1), 0.75
            signed_rows.append(r)
        else:
            maps, cmap, lim, alpha = ex.maps[index].detach().float().cpu(), ATTRIBUTION_CMAP, (0, 1), 0.6
            plain_rows.append(r)
        for s in range(n):
            ax = axes[r, s + 1]
            ax.imshow(display_rgb(episode.support_images[index, s]))
            im = ax.imshow(maps[s].numpy(), cmap=cmap, alpha=alpha, vmin=lim[0], vmax=lim[1])
            ax.contour(episode.support_masks[index, s].cpu().numpy().astype(float), levels=[0.5],
                       colors=MASK_COLOUR, linewidths=1.0)
            if episode.support_evidence is not None:
                ax.contour(episode.support_evidence[index, s].cpu().numpy().astype(float), levels=[0.5],
                           colors=EVIDENCE_COLOUR, linewidths=0.8, linestyles="dashed")
            ax.set_title(f"support {s + 1}", fontsize=8)
        if name in signed:
            im_signed = im
        else:
            im_plain = im
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if im_plain is not None:
        fig.colorbar(im_plain, ax=[axes[r, c] for r in plain_rows for c in range(n + 1)], shrink=0.8,
                     label="attribution (min-max scaled: 0 least, 1 most)")
    if im_signed is not None:
        cb = fig.colorbar(im_signed, ax=[axes[r, c] for r in signed_rows for c in range(n + 1)], shrink=0.8,
                          label="signed evidence (0: none;\n+ on the support mask, − off it)")
        cb.set_ticks([-1, -0.5, 0, 0.5, 1])
    handles = overlay_legend_handles(region=has_region, gt=episode.query_mask is not None, prediction=has_pred,
                                     mask=True, evidence=episode.support_evidence is not None)
    fig.legend(handles=handles, loc="outside lower center", ncol=min(3, len(handles)), fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_explanations(episode: Episode, explanations: Mapping[str, object], path: str | Path, index: int = 0,
                      title: str | None = None, signed: Mapping[str, torch.Tensor] | None = None) -> Path:
    """One figure (PNG at ``path``) for episode ``index`` of the batch: a row per explanation (name -> object
    with ``.maps`` [B, N, H, W] in [0, 1], and optionally ``.prediction`` and ``.region`` [B, H, W]).

    Column 0 shows the query with the ground truth (green outline), the prediction (red outline) and the
    explained region R (blue shading); the next N columns show each support with its mask (white outline)
    and, when the episode has it, the known evidence (yellow dashed outline), under the attribution
    (inferno, 0–1, one colour bar). A figure legend names every overlay.

    ``signed`` (name -> [B, N, H, W] in [−1, 1], e.g. :func:`signed_evidence`) replaces the named rows' maps
    with signed values, drawn on a diverging colour map centred on zero (blue negative, white zero, red
    positive) with a colour bar of its own.

    Raises:
        ValueError: no explanations, or a ``signed`` name that is not an explanation's.
    """
    return save_figure(explanation_figure(episode, explanations, index, title, signed), path)
