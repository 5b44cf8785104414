"""Batched IAUC/DAUC (many perturbation states per forward pass) against the one-state-per-forward loop.

    python benchmarks/metrics_batched_vs_loop.py                    # LiteMatcher, controlled 5-shot, 128 px
    python benchmarks/metrics_batched_vs_loop.py --batch-sizes 4,16,32 --repeats 5
    python benchmarks/metrics_batched_vs_loop.py --model toy        # the tests' ConvMatcher (no backbone)
    python benchmarks/metrics_batched_vs_loop.py --malloc default   # leave glibc's allocator as it is
    python benchmarks/metrics_batched_vs_loop.py --threads 1        # one torch thread
    python benchmarks/metrics_batched_vs_loop.py --device cuda      # on a GPU (peak = allocated GPU memory)

Per episode, IAUC and DAUC at 75 steps evaluate 150 support states (t = 1..75 of each curve). Every row
runs the same states on the same AffEx (unmasked) attributions; "max |Δ|" is the largest difference of any
IAUC/DAUC value from the loop's. Timing: the configurations run interleaved, --repeats rounds, in this
process; the table gives the best and the median round (the best is the least disturbed by other load on
a shared machine). Peak memory: each configuration once more in a fresh subprocess, after one single-state
warm-up forward pass: the rise of the resident set's high-water mark (Linux VmHWM) during the call, or on
CUDA the peak of allocated GPU memory above what was allocated before.
By default the process keeps freed memory (:mod:`fss_attr.evaluation.allocator`); ``--malloc default`` does not.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
warnings.filterwarnings("ignore", message="fss_attr: the compiled extension")
warnings.filterwarnings("ignore", message="region='logits'")

from memory import peak_rss_delta_mb  # noqa: E402

from fss_attr import AffinityExplainer  # noqa: E402
from fss_attr.metrics import iauc_dauc  # noqa: E402
from fss_attr.evaluation.allocator import keep_freed_memory  # noqa: E402


def model_and_episodes(kind: str, n: int, shots: int, size: int, seed: int, device: str = "cpu"):
    if kind == "lite":
        from fss_attr.data.controlled import make_episode
        from fss_attr.models.lite_matcher import LiteMatcher

        model = LiteMatcher().eval()
        episodes = [make_episode(seed + i, n_shots=shots, size=(size, size)) for i in range(n)]
    else:
        from tests.test_metrics_models import ConvMatcher, blob_episode

        model = ConvMatcher(channels=32).eval()
        g = torch.Generator().manual_seed(seed)
        episodes = [blob_episode(g, b=1, n=shots, size=(size, size), dtype=torch.float32) for _ in range(n)]
    model = model.to(device)
    episodes = [ep.to(device) for ep in episodes]
    explainer = AffinityExplainer("unmasked")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        maps = [explainer.explain(model, ep).maps for ep in episodes]
    return model, episodes, maps


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_mb(fn, device: str) -> float:
    """Peak extra memory of fn() in MB: resident set on CPU, allocated GPU memory on CUDA."""
    if not device.startswith("cuda"):
        return peak_rss_delta_mb(fn)[1]
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2**20


def configs(batch_sizes: str):
    return [("loop", True, 1)] + [(f"batched, {b}", False, b) for b in map(int, batch_sizes.split(","))]


def measure_memory(args, label: str) -> float:
    """Peak extra MB of one configuration, in a fresh subprocess."""
    cmd = [sys.executable, __file__] + sys.argv[1:] + ["--memory-of", label]
    out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    if out.returncode != 0:
        raise RuntimeError(f"memory subprocess failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=("lite", "toy"), default="lite")
    p.add_argument("--episodes", type=int, default=1)
    p.add_argument("--shots", type=int, default=5)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--steps", type=int, default=75)
    p.add_argument("--batch-sizes", default="4,16,32", help="internal_batch_size values of the batched rows")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--malloc", choices=("keep", "default"), default="keep")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cuda (default cpu)")
    p.add_argument("--memory-of", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    kept = keep_freed_memory() if args.malloc == "keep" else False
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    model, episodes, maps = model_and_episodes(args.model, args.episodes, args.shots, args.size, args.seed,
                                               args.device)
    table = {label: (loop, ibs) for label, loop, ibs in configs(args.batch_sizes)}

    def run(loop, ibs):
        return [iauc_dauc(model, ep, m, steps=args.steps, internal_batch_size=ibs, loop=loop)
                for ep, m in zip(episodes, maps)]

    if args.memory_of is not None:                       # subprocess mode: one configuration's peak memory
        with torch.no_grad():
            model(episodes[0])
        print(json.dumps({"peak_mb": peak_mb(lambda: run(*table[args.memory_of]), args.device)}))
        return 0

    run(False, 4)                                        # warm-up
    times = {label: [] for label in table}
    results = {}
    for _ in range(args.repeats):
        for label, (loop, ibs) in table.items():
            synchronize(args.device)
            t0 = time.perf_counter()
            results[label] = run(loop, ibs)
            synchronize(args.device)
            times[label].append(time.perf_counter() - t0)
    reference = results["loop"]
    n_states = 2 * args.steps * len(episodes)
    print(f"IAUC + DAUC, {args.steps} steps, {len(episodes)} episode(s), {args.shots}-shot, {args.size}x{args.size}, "
          f"model {type(model).__name__}, {torch.get_num_threads()} threads, {args.device}, {args.repeats} rounds, "
          f"malloc {'keep' if kept else 'default'}")
    print(f"{'mode':<14} {'forwards':>8} {'best s':>8} {'median s':>9} {'speed-up':>9} {'peak MB':>8} {'max |Δ|':>8}")
    base = min(times["loop"])
    for label, (loop, ibs) in table.items():
        diff = max(float((r[k] - q[k]).abs().max()) for r, q in zip(results[label], reference)
                   for k in ("iauc", "dauc"))
        best, med = min(times[label]), statistics.median(times[label])
        mem = measure_memory(args, label)
        print(f"{label:<14} {-(-n_states // ibs):>8} {best:>8.2f} {med:>9.2f} {base / best:>8.1f}x {mem:>8.0f} "
              f"{diff:>8.1e}", flush=True)
    print("speed-up = best loop time / best time;  IAUC / DAUC of episode 0:",
          {k: round(float(reference[0][k][0]), 4) for k in ("iauc", "dauc")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
