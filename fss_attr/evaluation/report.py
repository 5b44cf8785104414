"""Summaries of per-episode metric rows: means with standard errors, a JSON-ready dict, a markdown table shaped
like the paper's (values ×100, best per column in bold), and a PNG of the mean insertion/deletion curves; and
the writers of a run's report (CSV, JSON, markdown, PNG), each replacing its file atomically (a temporary file
in the same folder, then a rename), so a reader or a kill never sees half a file."""
from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from fss_attr.metrics.evaluate import higher_is_better
from fss_attr.viz import pyplot, save_figure

# Column order and headers of the paper's table, then localisation.
TABLE_COLUMNS = (("iauc", "IAUC (mIoU) ↑"), ("dauc", "DAUC (mIoU) ↓"), ("diff", "Diff ↑"),
                 ("iauc@1%", "IAUC@1% (Conf) ↑"), ("miouloss@1%", "mIoULoss@1% ↓"),
                 ("miouloss@5%", "mIoULoss@5% ↓"), ("relevance_mass", "Rel. mass ↑"),
                 ("pointing_game", "Pointing ↑"))
# Row order of the paper's table A (explainers not listed follow in the order given), and its row names.
PAPER_ORDER = ("random", "gaussnoise", "saliency", "ig", "guidedig", "blurig", "xrai", "deeplift", "gradientshap",
               "lime", "affex-unmasked", "affex-masked", "affex-signed")
DISPLAY = {"random": "Random", "gaussnoise": "GaussNoise", "saliency": "Saliency", "ig": "IG",
           "guidedig": "GuidedIG", "blurig": "BlurIG", "xrai": "XRAI", "deeplift": "DeepLift",
           "gradientshap": "GradientShap", "lime": "LIME", "affex-unmasked": "AffEx Unmasked",
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
    Columns absent from the summary, or without a finite mean in any row (e.g. the localisation metrics of
    episodes without support evidence), are left out."""
    names = ordered(summary)
    columns = [(m, h) for m, h in columns
               if any(math.isfinite(summary[n].get(m, {}).get("mean", float("nan"))) for n in names)]
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


# ---------------------------------------------------------------------------------------------------------
# A run's report from its rows


def in_means(row: Mapping) -> bool:
    """Whether a row counts in the means: not flagged ``degenerate`` (see :class:`fss_attr.evaluation.loop.EpisodeResult`)."""
    return not int(row.get("degenerate", 0) or 0)


def mean_curves(rows: Sequence[Mapping], curves: Mapping[tuple[int, str], Mapping[str, Sequence[float]]]
                ) -> dict[str, dict[str, list[float]]]:
    """{explainer: {curve: mean over the rows that count in the means}}; ``curves[(episode, explainer)]``."""
    sums: dict[str, dict[str, list[float]]] = {}
    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        if not in_means(row):
            continue
        name = row["explainer"]
        for kind, values in curves.get((int(row["episode"]), name), {}).items():
            acc = sums.setdefault(name, {}).get(kind)
            if acc is None:
                sums[name][kind] = [float(v) for v in values]
            else:
                for j, v in enumerate(values):
                    acc[j] += float(v)
            counts.setdefault(name, {})[kind] = counts.get(name, {}).get(kind, 0) + 1
    return {n: {k: [v / counts[n][k] for v in vs] for k, vs in kinds.items()} for n, kinds in sums.items()}


def build_summary(rows: Sequence[Mapping], metrics: Sequence[str], config: Mapping | None = None,
                  expected_episodes: int | None = None, wall_time_s: float | None = None,
                  environment: Mapping | None = None) -> dict:
    """The JSON summary of a run from its rows (one per (episode, explainer)).

    Keys: "config"; "episodes" (episodes with a row), "episodes_expected", "complete" (every episode and
    explainer of the configuration has its row); "episodes_with_empty_prediction"; "episodes_degenerate" and
    "episodes_in_means" (degenerate episodes are left out of every mean); "compute_time_s" (explain + evaluate
    seconds summed over the rows, all processes); "wall_time_s" (of the launch that merged; None for a merge
    alone); "seconds_per_episode" {explainer: {"explain", "evaluate"}}; "metrics" {explainer: {metric:
    {"mean", "sem", "n"}}} (:func:`summarise` over the rows that count); "environment".
    """
    config = dict(config or {})
    episodes = sorted({int(r["episode"]) for r in rows})
    per_episode = {}
    for r in rows:
        e = per_episode.setdefault(int(r["episode"]), {"empty": 0, "degenerate": 0})
        e["empty"] |= int(r.get("empty_prediction", 0) or 0)
        e["degenerate"] |= int(r.get("degenerate", 0) or 0)
    names = list(dict.fromkeys(r["explainer"] for r in rows))
    expected_names = config.get("explainers") or names
    if isinstance(expected_names, str):
        expected_names = [n for n in expected_names.split(",") if n]
    n_expected = expected_episodes if expected_episodes is not None else config.get("episodes")
    complete = (n_expected is not None and len(rows) == n_expected * len(expected_names)
                and len(episodes) == n_expected)
    times: dict[str, list[float]] = {n: [0.0, 0.0, 0] for n in names}
    for r in rows:
        t = times[r["explainer"]]
        t[0] += float(r.get("explain_s", 0) or 0)
        t[1] += float(r.get("evaluate_s", 0) or 0)
        t[2] += 1
    if environment is None:
        import torch

        environment = {"python": platform.python_version(), "torch": torch.__version__,
                       "threads": torch.get_num_threads()}
    return {"config": config, "episodes": len(episodes), "episodes_expected": n_expected, "complete": bool(complete),
            "episodes_with_empty_prediction": sum(e["empty"] for e in per_episode.values()),
            "episodes_degenerate": sum(e["degenerate"] for e in per_episode.values()),
            "episodes_in_means": sum(not e["degenerate"] for e in per_episode.values()),
            "compute_time_s": round(sum(t[0] + t[1] for t in times.values()), 2),
            "wall_time_s": None if wall_time_s is None else round(wall_time_s, 2),
            "seconds_per_episode": {n: {"explain": round(t[0] / max(t[2], 1), 4),
                                        "evaluate": round(t[1] / max(t[2], 1), 4)} for n, t in times.items()},
            "metrics": summarise([r for r in rows if in_means(r)], metrics),
            "environment": dict(environment)}


def table_text(summary: Mapping, rows: Sequence[Mapping] = ()) -> str:
    """table.md: a header line (episodes, model mIoU, time) and the paper-shaped table of ``summary``."""
    if rows and not summary.get("episodes_in_means", 1):
        return (f"{summary['episodes']} episodes, all degenerate (the explained region covers the whole query or "
                "none of it, e.g. empty predictions): no means.\n")
    miou = [float(r["miou"]) for r in rows if in_means(r) and r.get("miou") not in (None, "")]
    if not miou:
        return markdown_table(summary["metrics"])
    n, used = summary["episodes"], summary["episodes_in_means"]
    left_out = f" ({n - used} degenerate episodes left out)" if used != n else ""
    evaluation = (summary.get("config") or {}).get("evaluation") or {}
    if (evaluation.get("empty_prediction") == "paper" and evaluation.get("region", "logits") == "logits"
            and summary.get("episodes_with_empty_prediction")):
        left_out += (f" ({summary['episodes_with_empty_prediction']} with an empty prediction kept by the paper's "
                     "rule: constant maps for the explainers that read R, left out of the confidence means)")
    seconds = summary["wall_time_s"] if summary.get("wall_time_s") is not None else summary["compute_time_s"]
    kind = "wall time" if summary.get("wall_time_s") is not None else "compute time"
    return (f"{n} episodes{left_out}, values ×100 (mean over episodes; best per column in bold); "
            f"model mIoU {100 * sum(miou) / len(miou):.2f}; {kind} {seconds:.0f} s.\n\n"
            + markdown_table(summary["metrics"]))


def write_csv(rows: Sequence[Mapping], path: str | Path, fields: Sequence[str]) -> Path:
    """episodes.csv: one line per row, columns ``fields`` (missing values empty), replaced atomically."""
    from fss_attr.evaluation.store import atomic_write_text

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in row.items()})
    return atomic_write_text(path, buf.getvalue())


def write_json(obj, path: str | Path) -> Path:
    """Pretty JSON, replaced atomically."""
    from fss_attr.evaluation.store import atomic_write_text

    return atomic_write_text(path, json.dumps(obj, indent=2, default=float) + "\n")


def write_text(text: str, path: str | Path) -> Path:
    """A text file (e.g. the markdown table), replaced atomically."""
    from fss_attr.evaluation.store import atomic_write_text

    return atomic_write_text(path, text)


def write_curves(curves: dict[str, dict[str, list[float]]], path: str | Path, title: str = "") -> Path:
    """:func:`plot_curves` into a temporary PNG, then renamed over ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    plot_curves(curves, tmp, title)
    os.replace(tmp, path)
    return path


def write_report(out: str | Path, rows: Sequence[Mapping], curves: Mapping, summary: Mapping,
                 fields: Sequence[str]) -> dict[str, Path]:
    """episodes.csv, summary.json, table.md and curves.png (when there are curves) in ``out``; each file is
    replaced atomically. Returns {name: path}."""
    out = Path(out)
    written = {"episodes.csv": write_csv(rows, out / "episodes.csv", fields),
               "summary.json": write_json(summary, out / "summary.json"),
               "table.md": write_text(table_text(summary, rows), out / "table.md")}
    means = {n: {k: v for k, v in kinds.items() if k in CURVE_NAMES} for n, kinds in mean_curves(rows, curves).items()}
    means = {n: kinds for n, kinds in means.items() if kinds}
    if means:
        model = (summary.get("config") or {}).get("model", "")
        title = f"{summary['episodes']} episodes" + (f", {model}" if model else "")
        written["curves.png"] = write_curves(means, out / "curves.png", title)
    return written


CURVE_NAMES = ("iauc", "dauc", "iauc@1%", "image_iauc", "image_dauc")
