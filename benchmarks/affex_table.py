"""Print the AffEx benchmark table (time and peak memory per backend), as in BENCHMARKS.md.

    python benchmarks/affex_table.py            # everything, literal included (~2 min on 2 cores)
    python benchmarks/affex_table.py --quick    # no literal, fewer repeats

Rows: the whole DCAMA-like explanation (levels 2×48², 18×24², 2×12², D = 256/512/1024, 384×384 output,
masked variant) from scores and from features, 1 and 5 shots; the single 48² level, 5 shots, from scores
(literal vs torch vs cpu); and the memory case from features at Q = 96², M = 5·96², D = 64. Every
measurement runs in a fresh process, so the peak memory of one does not hide in the heap of another.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
warnings.filterwarnings("ignore", message="fss_attr: the compiled extension")

from memory import peak_rss_delta_mb  # noqa: E402

from fss_attr import AffinityExplainer, available_backends  # noqa: E402
from fss_attr.testing import dcama_like_levels, random_level, random_masks, random_region  # noqa: E402

OUT = (384, 384)


def build_cases(quick: bool):
    """{case name: (levels, masks, variant)}, built lazily so a subprocess builds only its own case."""
    region = random_region(1, OUT, generator=torch.Generator().manual_seed(1))
    cases = {}
    for shots in (1, 5):
        for features in (False, True):
            name = f"DCAMA-like 22 levels, {shots}-shot, {'features' if features else 'scores'}, masked"
            cases[name] = (lambda s=shots, f=features: (dcama_like_levels(s, features=f), region,
                                                        random_masks(1, s, OUT, generator=torch.Generator().manual_seed(2)),
                                                        "masked"))
    g = lambda seed: torch.Generator().manual_seed(seed)  # noqa: E731
    cases["one 48² level, 5-shot, scores, unmasked"] = lambda: (
        [random_level(1, 5, (48, 48), (48, 48), generator=g(3))], region, random_masks(1, 5, OUT, generator=g(4)),
        "unmasked")
    cases["features Q=96², M=5·96², D=64, unmasked"] = lambda: (
        [random_level(1, 5, (96, 96), (96, 96), features=True, dim=64, scale=0.125, generator=g(5))], region,
        random_masks(1, 5, OUT, generator=g(4)), "unmasked")
    return cases


def run_case(case: str, backend: str, repeats: int, quick: bool) -> tuple[float, float]:
    """(median seconds, peak extra MB of the first call) of one case on one backend, in this process."""
    levels, region, masks, variant = build_cases(quick)[case]()
    ex = AffinityExplainer(variant, backend=backend)
    fn = lambda: ex.explain_levels(levels, region, masks, out_size=OUT)  # noqa: E731
    _, mem = peak_rss_delta_mb(fn)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), mem


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="skip literal and use fewer repeats")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--one", nargs=2, metavar=("CASE", "BACKEND"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    repeats = 2 if args.quick else args.repeats
    if args.one:  # child process: one measurement, printed as JSON
        seconds, mem = run_case(args.one[0], args.one[1], 1 if args.one[1] == "literal" else repeats, args.quick)
        print(json.dumps({"seconds": seconds, "mb": mem}))
        return 0
    backends = [b for b in available_backends() if b in ("torch", "cpu")]
    rows = []
    for case in build_cases(args.quick):
        extra = ["literal"] if case.startswith("one 48²") and not args.quick else []
        for backend in backends + extra:
            cmd = [sys.executable, __file__, "--one", case, backend, "--repeats", str(repeats)]
            if args.quick:
                cmd.append("--quick")
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            r = json.loads(out)
            rows.append((case, backend, r["seconds"], r["mb"]))
            print(f"  {case:46s} {backend:8s} {r['seconds'] * 1e3:10.1f} ms {r['mb']:9.1f} MB", file=sys.stderr,
                  flush=True)

    print()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, output 384×384; each row a fresh process; "
          f"time = median of {repeats} calls after a first one (literal: 1 call); memory = extra peak resident "
          "memory of the first call")
    print()
    print("| case | backend | time (ms) | peak extra memory (MB) | speed-up vs torch |")
    print("|---|---|---:|---:|---:|")
    torch_time = {case: s for case, b, s, _ in rows if b == "torch"}
    for case, backend, seconds, mem in rows:
        ratio = torch_time.get(case, float("nan")) / seconds
        print(f"| {case} | {backend} | {seconds * 1e3:.1f} | {mem:.0f} | {ratio:.3g}× |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
