"""The accuracy table of issue 8: RCN (Conv4) and the prototypical-network baseline, each trained the same
way (episodic, Adam, same episodes, same backbone, bfloat16 autocast for the backbone) on the controlled
train classes, then tested on 600 5-way episodes of the disjoint test classes, with 95% intervals.

    python benchmarks/rcn_accuracy.py [--train] [--threads 1] [--episodes 600]

With ``--train``, missing checkpoints are trained first with the commands printed beside the table
(1-shot: 1200 episodes; 5-shot: 700 episodes, about the same number of images as 1-shot's 1200). Weights
live under outputs/rcn/ (not in the repository).
"""
from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from fss_attr.cli import main as cli

OUT = Path("outputs/rcn")
TRAIN_EPISODES = {1: 1200, 5: 700}
VAL_EVERY = {1: 200, 5: 175}


def train_command(method: str, shots: int, threads: int) -> list[str]:
    cmd = ["rcn", "train", "--method", method, "--shots", str(shots), "--episodes", str(TRAIN_EPISODES[shots]),
           "--val-every", str(VAL_EVERY[shots]), "--bf16", "--out", str(OUT / f"{method}_conv4_{shots}shot.pt")]
    return cmd + (["--threads", str(threads)] if threads else [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", action="store_true", help="train missing checkpoints first")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--episodes", type=int, default=600)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    results = {}
    for method in ("rcn", "protonet"):
        for shots in (1, 5):
            cmd = train_command(method, shots, args.threads)
            path = Path(cmd[cmd.index("--out") + 1])
            print("fss-attr " + shlex.join(cmd))
            if not path.is_file():
                if not args.train:
                    print(f"  (missing {path}; run with --train)")
                    continue
                cli(cmd)
            out = OUT / f"eval_{method}_{shots}shot.json"
            eval_cmd = ["rcn", "evaluate", "--weights", str(path), "--shots", "1", "5", "--episodes",
                        str(args.episodes), "--seed", str(args.seed), "--json", str(out)]
            eval_cmd += ["--threads", str(args.threads)] if args.threads else []
            print("fss-attr " + shlex.join(eval_cmd))
            cli(eval_cmd)
            info = json.loads(path.with_suffix(".json").read_text())
            results[(method, shots)] = (json.loads(out.read_text())["rows"][0], info)
    print(f"\n5-way accuracy (%) ± 95% interval, {args.episodes} controlled test episodes (seed {args.seed}), "
          "15 queries per class; Conv4, 84×84")
    print("| model | trained with | train episodes | wall min | CPU min | kept episode | 1-shot test | 5-shot test |")
    print("|---|---|---|---|---|---|---|---|")
    for (method, shots), (row, info) in results.items():
        cells = " | ".join(f"{row[f'{k}-shot']['mean']:.2f} ± {row[f'{k}-shot']['ci95']:.2f}" for k in (1, 5))
        cpu = f"{info['cpu_seconds'] / 60:.1f}" if "cpu_seconds" in info else "–"
        print(f"| {method} | {shots}-shot | {info['config']['episodes']} | {info['seconds'] / 60:.1f} | {cpu} | "
              f"{info['best_episode']} | {cells} |")


if __name__ == "__main__":
    main()
