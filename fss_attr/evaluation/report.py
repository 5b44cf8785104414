"""Summaries of per-episode metric rows: means with standard errors, a JSON-ready dict, a markdown table shaped
like the paper's (values ×100, best per column in bold), and a PNG of the mean insertion/deletion curves."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Sequence

from fss_attr.metrics.evaluate import higher_is_better
from fss_attr.viz import pyplot, save_figure

# Column order and headers of the paper's table, then localisation.
TABLE_COLUMNS = (("iauc", "IAUC (mIoU) ↑"), ("dauc", "DAUC (mIoU) ↓"), ("diff", "Diff ↑"),
                 ("iauc@1%", "IAUC@1% (Conf) ↑"), ("miouloss@1%", "mIoULoss@1% ↓"),
                 ("miouloss@5%", "mIoULoss@5% ↓"), ("relevance_mass", "Rel. mass ↑"),
                 ("pointing_game", "Pointing ↑"))
# Row order of the paper's table (explainers not listed follow in the order given).
PAPER_ORDER = ("random", "gaussnoise", "saliency", "ig", "deeplift", "gradientshap", "lime", "affex-unmasked",
               "affex-masked", "affex-signed")
DISPLAY = {"random": "Random", "gaussnoise": "GaussNoise", "saliency": "Saliency", "ig": "IG",
           "deeplift": "DeepLift", "gradientshap": "GradientShap", "lime": "LIME", "affex-unmasked": "AffEx Unmasked",
           "affex-masked": "AffEx Masked", "affex-signed": "AffEx Signed"}


def summarise(rows: Iterable[dict], metrics: Sequence[str], key: str = "explainer") -> dict:
    """Per explainer: {metric: {"mean", "sem", "n"}} over the rows' finite values (rows: dicts with ``key``
    and metric values)."""
    values: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        per = values.setdefault(row[key], {m: [] for m in metrics})
        for m in metrics:
            v = row.get(m)
            if v is not None and v != "" and math.isfinite(float(v)):
                per[m].append(float(v))
    out = {}
    for name, per in values.items():
        out[name] = {}
        for m, vs in per.items():
            n = len(vs)
            mean = sum(vs) / n if n else float("nan")
            var = sum((v - mean) ** 2 for v in vs) / (n - 1) if n > 1 else float("nan")
            out[name][m] = {"mean": mean, "sem": math.sqrt(var / n) if n > 1 else float("nan"), "n": n}
    return out


def ordered(names: Iterable[str]) -> list[str]:
    names = list(names)
    return [n for n in PAPER_ORDER if n in names] + [n for n in names if n not in PAPER_ORDER]


def markdown_table(summary: dict, columns=TABLE_COLUMNS, scale: float = 100.0) -> str:
    """The paper-shaped table: one row per explainer, mean ×``scale`` (2 decimals), best per column in bold.
    Columns absent from the summary are left out."""
    names = ordered(summary)
    columns = [(m, h) for m, h in columns if any(m in summary[n] for n in names)]
    best = {}
    for m, _ in columns:
        vals = [(summary[n][m]["mean"], n) for n in names if m in summary[n] and math.isfinite(summary[n][m]["mean"])]
        if vals:
            best[m] = (max if higher_is_better(m) else min)(vals)[0]
    lines = ["| Explainer | " + " | ".join(h for _, h in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for n in names:
        cells = []
        for m, _ in columns:
            v = summary[n].get(m, {}).get("mean", float("nan"))
            text = "—" if not math.isfinite(v) else f"{scale * v:.2f}"
            cells.append(f"**{text}**" if m in best and math.isfinite(v) and v == best[m] else text)
        lines.append(f"| {DISPLAY.get(n, n)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_curves(curves: dict[str, dict[str, list[float]]], path: str | Path, title: str = "") -> Path:
    """PNG of mean curves: ``curves[explainer][curve name]`` -> mean values; one panel per curve name
    ("iauc", "dauc", "iauc@1%", ...), x = fraction of the curve's range."""
    plt = pyplot()

    names = ordered(curves)
    kinds = [k for k in ("iauc", "dauc", "iauc@1%", "image_iauc", "image_dauc")
             if any(k in curves[n] for n in names)]
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.2 * len(kinds), 3.6), squeeze=False)
    labels = {"iauc": "insertion, IoU", "dauc": "deletion, IoU", "iauc@1%": "insertion of top 1%, confidence",
              "image_iauc": "image insertion, IoU", "image_dauc": "image deletion, IoU"}
    for ax, k in zip(axes[0], kinds):
        for n in names:
            if k in curves[n]:
                ys = curves[n][k]
                xs = [i / (len(ys) - 1) for i in range(len(ys))] if len(ys) > 1 else [0.0]
                style = "-" if n.startswith("affex") else "--"
                ax.plot(xs, ys, style, label=DISPLAY.get(n, n), lw=1.6 if n.startswith("affex") else 1.0)
        ax.set_title(labels.get(k, k))
        ax.set_xlabel("fraction of the curve" if k != "iauc@1%" else "fraction of the top 1%")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("mean score")
    axes[0][-1].legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120, tight=False)
