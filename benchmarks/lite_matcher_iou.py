"""Foreground IoU of LiteMatcher on controlled episodes (the embedded default model), 1 and 5 shots.

    python benchmarks/lite_matcher_iou.py --episodes 100 --size 192

Prints a markdown table: mean foreground IoU with a 95% interval, and the IoU of the trivial
"everything is foreground" prediction as the chance reference.
"""
from __future__ import annotations

import argparse
import math
import warnings

import torch
from tqdm import tqdm

warnings.filterwarnings("ignore", message="fss_attr: the compiled extension")

from fss_attr.data import make_episodes  # noqa: E402
from fss_attr.models.lite_matcher import LiteMatcher  # noqa: E402


def iou(pred: torch.Tensor, gt: torch.Tensor) -> float:
    return float((pred & gt).sum() / (pred | gt).sum().clamp_min(1))


def mean_ci(xs: list[float]) -> tuple[float, float]:
    m = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / max(len(xs) - 1, 1))
    return m, 1.96 * sd / math.sqrt(len(xs))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--size", type=int, default=192)
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args(argv)
    model = LiteMatcher()
    print("| shots | mean foreground IoU | 95% interval | all-foreground IoU (chance) |")
    print("|---:|---:|---:|---:|")
    for shots in (1, 5):
        ious, chance = [], []
        for ep in tqdm(make_episodes(args.episodes, args.seed, shots, (args.size, args.size)), total=args.episodes,
                       desc=f"{shots}-shot", leave=False):
            pred = model(ep).argmax(1) == 1
            ious.append(iou(pred, ep.query_mask))
            chance.append(iou(torch.ones_like(ep.query_mask), ep.query_mask))
        m, h = mean_ci(ious)
        print(f"| {shots} | {m:.3f} | ±{h:.3f} | {sum(chance) / len(chance):.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
