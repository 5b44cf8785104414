"""Batched IAUC/DAUC (many perturbation states per forward pass) against the one-state-per-forward loop.

    python benchmarks/metrics_batched_vs_loop.py                    # LiteMatcher, controlled 5-shot, 128 px
    python benchmarks/metrics_batched_vs_loop.py --size 96 --episodes 2 --batch-sizes 8,16,32
    python benchmarks/metrics_batched_vs_loop.py --model toy        # the tests' ConvMatcher (no backbone)

Per episode, IAUC and DAUC at 75 steps evaluate 150 support states (t = 1..75 of each curve). Every row
runs the same states on the same AffEx (unmasked) attributions in the same process; "max |Δ|" is the
largest difference of any IAUC/DAUC value from the loop's (0 expected: IoU of an argmax). Time is the
median over --repeats runs; peak memory is the rise of the process's resident set during the first run
(Linux VmHWM, reset before each row).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
warnings.filterwarnings("ignore", message="fss_attr: the compiled extension")
warnings.filterwarnings("ignore", message="region='logits'")

from memory import peak_rss_delta_mb  # noqa: E402

from fss_attr import AffinityExplainer  # noqa: E402
from fss_attr.metrics import iauc_dauc  # noqa: E402


def model_and_episodes(kind: str, n: int, shots: int, size: int, seed: int):
    if kind == "lite":
        from fss_attr.data.controlled import make_episode
        from fss_attr.models.lite_matcher import LiteMatcher

        model = LiteMatcher(pretrained=True).eval()
        episodes = [make_episode(seed + i, n_shots=shots, size=(size, size)) for i in range(n)]
    else:
        from tests.test_metrics_models import ConvMatcher, blob_episode

        model = ConvMatcher(channels=32).eval()
        g = torch.Generator().manual_seed(seed)
        episodes = [blob_episode(g, b=1, n=shots, size=(size, size), dtype=torch.float32) for _ in range(n)]
    return model, episodes


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=("lite", "toy"), default="lite")
    p.add_argument("--episodes", type=int, default=1)
    p.add_argument("--shots", type=int, default=5)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--steps", type=int, default=75)
    p.add_argument("--batch-sizes", default="4,16,32", help="internal_batch_size values of the batched rows")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    model, episodes = model_and_episodes(args.model, args.episodes, args.shots, args.size, args.seed)
    explainer = AffinityExplainer("unmasked")
    with torch.no_grad():
        maps = [explainer.explain(model, ep).maps for ep in episodes]

    def run(loop, ibs):
        return [iauc_dauc(model, ep, m, steps=args.steps, internal_batch_size=ibs, loop=loop)
                for ep, m in zip(episodes, maps)]

    run(False, 4)                                        # warm-up (allocator, backbone kernels)
    rows = []
    configs = [("loop", True, 1)] + [(f"batched, {b}", False, b) for b in map(int, args.batch_sizes.split(","))]
    reference = None
    for label, loop, ibs in configs:
        result, mem = peak_rss_delta_mb(lambda: run(loop, ibs))
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            run(loop, ibs)
            times.append(time.perf_counter() - t0)
        if reference is None:
            reference = result
        diff = max(float((r[k] - q[k]).abs().max()) for r, q in zip(result, reference) for k in ("iauc", "dauc"))
        n_states = 2 * args.steps * len(episodes)
        rows.append((label, -(-n_states // ibs), statistics.median(times), mem, diff))

    base = rows[0][2]
    print(f"IAUC + DAUC, {args.steps} steps, {len(episodes)} episode(s), {args.shots}-shot, {args.size}x{args.size}, "
          f"model {type(model).__name__}, {torch.get_num_threads()} threads, device cpu")
    print(f"{'mode':<14} {'forwards':>8} {'seconds':>9} {'speed-up':>9} {'peak MB':>9} {'max |Δ|':>9}")
    for label, fwd, sec, mem, diff in rows:
        print(f"{label:<14} {fwd:>8} {sec:>9.2f} {base / sec:>8.1f}x {mem:>9.0f} {diff:>9.1e}")
    print("IAUC / DAUC of the first episode:", {k: round(float(reference[0][k][0]), 4) for k in ("iauc", "dauc")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
