"""Episodes per second of ``fss-attr evaluate`` with 1 and 2 CPU processes (and K GPUs with --gpus K), in one run.

Each row launches ``python -m torch.distributed.run --standalone --nproc-per-node K -m fss_attr evaluate ...``
on the same tiny configuration into a fresh folder, and reads the job's wall time (from after the imports to
the merged report, ``summary.json: wall_time_s``) besides the whole command's. CPU rows give each process
``--threads T`` (default 1), so K processes use K·T cores. The results of every row are checked to be the same
numbers (bit for bit) as the first row's.

    python benchmarks/evaluate_scaling.py                  # ~2 min on 2 busy cores
    python benchmarks/evaluate_scaling.py --episodes 16 --processes 1,2 --gpus 2
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(k: int, out: Path, opts: list[str], device: str, threads: int) -> tuple[float, dict]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(k),
           "-m", "fss_attr", "evaluate", *opts, "--device", device, "--out", str(out), "--no-progress"]
    if device == "cpu":
        cmd += ["--threads", str(threads)]
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"K={k} failed (rc {p.returncode}):\n{p.stderr[-3000:]}")
    return wall, json.loads((out / "summary.json").read_text())


def values(out: Path) -> dict:
    with open(out / "episodes.csv") as f:
        return {(r["episode"], r["explainer"]): {k: v for k, v in r.items() if not k.endswith("_s")}
                for r in csv.DictReader(f)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=8)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--explainers", default="random,affex-masked")
    ap.add_argument("--metrics", default="miou,iauc,dauc")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--processes", default="1,2", help="CPU process counts (default 1,2)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per CPU process (default 1)")
    ap.add_argument("--gpus", type=int, default=0, help="also rows with 1..K processes on cuda:LOCAL_RANK")
    args = ap.parse_args()
    opts = ["--episodes", str(args.episodes), "--shots", "2", "--size", str(args.size), "--explainers",
            args.explainers, "--metrics", args.metrics, "--steps", str(args.steps)]
    rows = [("cpu", int(k)) for k in args.processes.split(",")] + [("cuda", k) for k in range(1, args.gpus + 1)]
    results = []
    reference = {}
    with tempfile.TemporaryDirectory() as tmp:
        for device, k in rows:
            out = Path(tmp) / f"{device}{k}"
            wall, summary = run(k, out, opts, device, args.threads)
            v = values(out)
            ref = reference.setdefault(device, v)
            same = "yes" if v == ref else "NO"
            job = summary["wall_time_s"]
            results.append((device, k, wall, job, args.episodes / job, same))
            print(f"{device} K={k}: command {wall:.1f} s, job {job:.1f} s", file=sys.stderr)
    base = {}
    print(f"\n{args.episodes} controlled episodes, 2 shots, {args.size}², explainers {args.explainers}, metrics "
          f"{args.metrics}, {args.steps} steps; CPU processes with {args.threads} thread(s) each; load average "
          f"{os.getloadavg()[0]:.1f} at the end\n")
    print("| device | processes | command wall (s) | job wall (s) | episodes/s | speed-up | same numbers as K=1 |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for device, k, wall, job, eps, same in results:
        b = base.setdefault(device, eps)
        print(f"| {device} | {k} | {wall:.1f} | {job:.1f} | {eps:.3f} | {eps / b:.2f}× | {same} |")


if __name__ == "__main__":
    main()
