"""Print the AffEx benchmark table (time and peak memory per backend), as in BENCHMARKS.md.

    python benchmarks/affex_table.py            # everything, literal included (~2 min on 2 cores)
    python benchmarks/affex_table.py --quick    # no literal, fewer repeats

Rows: the whole DCAMA-like explanation (levels 2×48², 18×24², 2×12², D = 256/512/1024, 384×384 output)
from scores and from features, 1 and 5 shots; the single 48² level, 5 shots, from scores (literal vs torch
vs cpu); and the memory case from features at Q = 96², M = 5·96², D = 64.
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
warnings.filterwarnings("ignore", message="fss_attr: the compiled extension")

from memory import peak_rss_delta_mb  # noqa: E402

from fss_attr import AffinityExplainer, available_backends  # noqa: E402
from fss_attr.testing import dcama_like_levels, random_level, random_masks, random_region  # noqa: E402

OUT = (384, 384)


def timed(fn, repeats: int) -> tuple[float, float]:
    """(median seconds over repeats, peak extra MB of the first call)."""
    _, mem = peak_rss_delta_mb(fn)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), mem


def explain_fn(backend, levels, region, masks, variant="masked"):
    ex = AffinityExplainer(variant, backend=backend)
    return lambda: ex.explain_levels(levels, region, masks, out_size=OUT)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="skip literal and use fewer repeats")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    backends = [b for b in available_backends() if b in ("torch", "cpu")]
    rows = []

    def add(case, backend, seconds, mem):
        rows.append((case, backend, seconds, mem))
        print(f"  {case:44s} {backend:8s} {seconds * 1e3:10.1f} ms {mem:9.1f} MB", file=sys.stderr, flush=True)

    region = random_region(1, OUT, generator=torch.Generator().manual_seed(1))
    for shots in (1, 5):
        masks = random_masks(1, shots, OUT, generator=torch.Generator().manual_seed(2))
        for features in (False, True):
            levels = dcama_like_levels(shots, features=features)
            case = f"DCAMA-like 22 levels, {shots}-shot, {'features' if features else 'scores'}"
            for backend in backends:
                add(case, backend, *timed(explain_fn(backend, levels, region, masks), repeats))
            del levels

    g = torch.Generator().manual_seed(3)
    level48 = random_level(1, 5, (48, 48), (48, 48), generator=g)
    masks5 = random_masks(1, 5, OUT, generator=g)
    case = "one 48² level, 5-shot, scores"
    for backend in backends + ([] if args.quick else ["literal"]):
        add(case, backend, *timed(explain_fn(backend, [level48], region, masks5), 1 if backend == "literal" else
                                  max(repeats, 3)))
    del level48

    big = random_level(1, 5, (96, 96), (96, 96), features=True, dim=64, scale=0.125, generator=g)
    case = "features Q=96², M=5·96², D=64"
    for backend in backends:
        add(case, backend, *timed(explain_fn(backend, [big], region, masks5), 1))

    print()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; variant masked; output 384×384; "
          f"median of {repeats} (literal: 1 run); peak = extra resident memory of the first call")
    print()
    print("| case | backend | time (ms) | peak extra memory (MB) | speed-up vs torch |")
    print("|---|---|---:|---:|---:|")
    torch_time = {case: s for case, b, s, _ in rows if b == "torch"}
    for case, backend, seconds, mem in rows:
        ratio = torch_time.get(case, float("nan")) / seconds
        print(f"| {case} | {backend} | {seconds * 1e3:.1f} | {mem:.0f} | {ratio:.2f}× |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
