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


CURVE_PANELS = {"iauc": ("insertion (IAUC)", "fraction of support pixels inserted", "foreground IoU"),
                "dauc": ("deletion (DAUC)", "fraction of support pixels deleted", "foreground IoU"),
                "image_iauc": ("image insertion", "fraction of support images inserted", "foreground IoU"),
                "image_dauc": ("image deletion", "fraction of support images deleted", "foreground IoU")}


def _panel(kind: str) -> tuple[str, str, str]:
    if kind in CURVE_PANELS:
        return CURVE_PANELS[kind]
    p = kind[5:-1]
    return (f"insertion of the top {p}% (IAUC@{p}%)", "fraction of support pixels inserted",
            "confidence (mean foreground\nprobability over R)")


def curves_figure(curves: dict[str, dict[str, list[float]]], title: str = ""):
    """The figure of :func:`plot_curves` (a matplotlib Figure, not saved)."""
    from fss_attr.metrics.fss import curve_positions

    plt = pyplot()
    names = ordered(curves)
    if not names:
        raise ValueError("curves must hold at least one explainer")
    known = ("iauc", "dauc", "image_iauc", "image_dauc")
    kinds = [k for k in ("iauc", "dauc") if any(k in curves[n] for n in names)]
    kinds += sorted({k for n in names for k in curves[n] if k.startswith("iauc@") and k.endswith("%")})
    kinds += [k for k in known[2:] if any(k in curves[n] for n in names)]
    if not kinds:
        raise ValueError(f"curves hold no known curve ({', '.join(known)}, iauc@<p>%)")
    ncols = min(3, len(kinds))
    nrows = -(-len(kinds) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.7 * ncols + 1.6, 3.1 * nrows + 0.3), squeeze=False,
                             layout="constrained")
    for ax in axes.flat[len(kinds):]:
        ax.set_visible(False)
    handles = {}
    for ax, k in zip(axes.flat, kinds):
        for i, n in enumerate(names):
            if k in curves[n]:
                ys = list(curves[n][k])
                xs = curve_positions(k, len(ys))
                affex = n.startswith("affex")
                line, = ax.plot(xs, ys, "-" if affex else "--", color=f"C{i % 10}", lw=1.6 if affex else 1.0,
                                marker="o" if len(ys) <= 12 else None, ms=3, label=DISPLAY.get(n, n))
                handles.setdefault(n, line)
        heading, xlabel, ylabel = _panel(k)
        ax.set_title(heading, fontsize=10)
        ax.set_xlabel(xlabel, fontsize=9)
        ax.set_ylabel(ylabel, fontsize=9)
        ax.set_xlim(0, max(curve_positions(k, 2 if k not in ("iauc", "dauc") else 1)))
        ax.grid(alpha=0.3)
    fig.legend([handles[n] for n in names if n in handles], [DISPLAY.get(n, n) for n in names if n in handles],
               loc="outside right center", fontsize=8, title="explainer", title_fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_curves(curves: dict[str, dict[str, list[float]]], path: str | Path, title: str = "") -> Path:
    """PNG of mean insertion/deletion curves: ``curves[explainer][curve name]`` -> mean values over episodes.

    One panel per curve name ("iauc", "dauc", "iauc@<p>%", "image_iauc", "image_dauc"), each point placed at
    the state it holds (:func:`fss_attr.metrics.fss.curve_positions`: the IAUC/DAUC curves skip state 0, so
    their first point lies at 1/T of the support pixels), x the fraction of support pixels (or images) moved,
    y the score (foreground IoU, or confidence for IAUC@p%); one legend for all panels, beside them.

    Raises:
        ValueError: no explainer, no known curve name, or a curve too short for its name.
    """
    return save_figure(curves_figure(curves, title), path, dpi=110, tight=False)
