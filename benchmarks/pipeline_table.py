"""Print the end-to-end pipeline table of BENCHMARKS.md ("Explanations end to end"), in one run.

    python benchmarks/pipeline_table.py                      # DCAMA Swin-B 1- and 5-shot, LiteMatcher evaluate
    python benchmarks/pipeline_table.py --shots 5 --lite-episodes 2

Rows, all measured in this one process (ratios within a run are what to compare on a shared machine):

- DCAMA Swin-B 384 with random weights (the official architecture; the decoder's cost does not depend on the
  weights), N-shot, batch 1: the forward (encode + decode), warm (best of two calls: the first pays one-off
  costs); the three AffEx variants with the paper's ablation weights from ``explain_variants`` with a fresh
  ``ExplanationCache`` (one encode, one set of batched ablation decodes, one set of level maps) beyond the
  forward, and that time over the forward; its parts timed one by one (ablation weights, building and
  checking the levels, the level maps E, the three variants' finishing); the ablation weights alone, one
  decode per level (``sequential_level_weights``, the former path) vs ``level_weights`` (the fast path); the
  former cost of the three variants (three ``explain`` calls, each an encode, 22 sequential ablated decodes
  and the level maps) from its measured parts; and the floor of the exact ablation weights: the
  multiply-accumulates of the convolutions ``level_weights`` still runs (torch's flop counter) over this
  CPU's best measured convolution speed, alone and with the level maps.
- LiteMatcher (pretrained EfficientNet-Lite0) on controlled episodes: ``fss_attr.metrics.evaluate`` with the
  default metrics, per episode and explainer (the three AffEx variants' maps, one ``cache`` per episode as the
  evaluation loop passes), every perturbation state run whole (``reuse_query=False``) vs the query encoded
  once (``reuse_query=True``); and the explanation of the three variants without vs with an
  ``ExplanationCache``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
warnings.filterwarnings("ignore", message="fss_attr: the compiled extension")
warnings.filterwarnings("ignore", message="region='logits'")

from fss_attr.affex import VARIANTS, AffinityExplainer, ExplanationCache  # noqa: E402
from fss_attr.data.episode import Episode  # noqa: E402
from fss_attr.explanation import resolve_region  # noqa: E402


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def best_of(n, fn):
    """(min time over n calls, the last output)."""
    times, out = [], None
    for _ in range(n):
        t, out = timed(fn)
        times.append(t)
    return min(times), out


def conv_throughput(dtype=torch.float32) -> float:
    """MAC/s of a decoder-shaped convolution (n×64×192², 64 -> 64, 3×3, channels-last), the best over
    n = 1, 2, 8 images (best of 3 calls each): the fastest this CPU runs the decoder's convolutions."""
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(dtype)
    best = 0.0
    for n in (1, 2, 8):
        x = torch.randn(n, 64, 192, 192, dtype=dtype).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            t, _ = best_of(3, lambda: conv(x))
        best = max(best, n * 64 * 64 * 9 * 192 * 192 / t)
    return best


def conv_macs(fn) -> int:
    """The multiply-accumulates of the convolutions that ``fn()`` runs (torch's flop counter, flops / 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    per_op = counter.get_flop_counts().get("Global", {})
    return sum(v for op, v in per_op.items() if "convolution" in str(op)) // 2


def dcama_rows(shots: int, model) -> list[tuple[str, str]]:
    g = torch.Generator().manual_seed(shots)
    masks = torch.zeros(1, shots, 384, 384, dtype=torch.bool)
    masks[..., 96:288, 64:320] = True
    ep = Episode(torch.randn(1, 3, 384, 384, generator=g), torch.randn(1, shots, 3, 384, 384, generator=g), masks)
    ex = AffinityExplainer()
    with torch.no_grad():
        # the forward, warm: the first call pays one-off costs (allocator, oneDNN primitives)
        t_fwd, _ = best_of(2, lambda: model.decode(model.encode(ep)))
        # the three variants with a fresh cache: encode + decode, then the weights, the level maps, the variants
        t_new, res = timed(lambda: ex.explain_variants(model, ep, VARIANTS, cache=ExplanationCache()))
        state = model.encode(ep)
        logits = model.decode(state)
        r = resolve_region("logits", logits, None)
        # its parts beyond the forward, timed one by one
        t_fast, w_fast = timed(lambda: model.level_weights(state, r, logits))
        t_levels, (levels, r_checked, out_size) = timed(
            lambda: ex._check(list(model.levels(state)), r, None, ep.image_size))
        t_total, total = timed(lambda: ex._total(levels, r_checked, w_fast, out_size))
        blurred: dict = {}
        t_finish, _ = timed(lambda: [ex._finish(total, v, ep.support_masks, blurred) for v in VARIANTS])
        t_seq, w_seq = timed(lambda: model.sequential_level_weights(state, r, logits))
        t_maps, _ = timed(lambda: AffinityExplainer("masked").explain_levels(levels, r, ep.support_masks, w_fast))
        # the floor of the exact ablation weights: the convolutions they still run, at this CPU's conv speed
        macs = conv_macs(lambda: model.level_weights(state, r, logits))
        fwd_macs = conv_macs(lambda: model.decode(state))
    rate = conv_throughput()
    err = float((w_fast - w_seq).abs().max() / w_seq.abs().max())
    same = max(float((res[v].raw - total).abs().max() / total.abs().max()) for v in VARIANTS)
    beyond = t_new - t_fwd
    parts = t_fast + t_levels + t_total + t_finish
    floor = macs / rate
    old_one = t_seq + t_maps
    old_three = 3 * old_one + 2 * t_fwd
    p = f"DCAMA Swin-B 384, {shots}-shot"
    return [(f"{p}: forward (encode + decode), warm (best of 2)", f"{t_fwd:.2f} s"),
            (f"{p}: 3 variants + ablation weights (explain_variants, fresh cache), beyond the forward",
             f"{beyond:.2f} s = {beyond / t_fwd:.3f}× forward"),
            (f"{p}: its parts, timed one by one: ablation weights + levels (build, checks) + level maps E + "
             f"3 variants' finishing", f"{t_fast:.2f} + {t_levels:.2f} + {t_total:.2f} + {t_finish:.2f} = "
                                       f"{parts:.2f} s = {parts / t_fwd:.3f}× forward"),
            (f"{p}: ablation weights, sequential vs batched", f"{t_seq:.2f} s vs {t_fast:.2f} s "
                                                             f"({t_seq / t_fast:.1f}×, max rel diff {err:.1e})"),
            (f"{p}: 1 variant + ablation weights, beyond the forward (former: sequential decodes + maps)",
             f"{old_one:.2f} s = {old_one / t_fwd:.3f}× forward"),
            (f"{p}: 3 variants, former (3 explains: 3 encodes, 3×22 decodes), beyond the forward",
             f"{old_three:.2f} s = {old_three / t_fwd:.3f}× forward"),
            (f"{p}: floor of the exact ablation weights: their convolutions ({macs / 1e9:.1f} GMAC; the "
             f"whole decode: {fwd_macs / 1e9:.1f}) at the measured conv speed ({rate / 1e9:.0f} GMAC/s)",
             f"{floor:.2f} s = {floor / t_fwd:.3f}× forward; + level maps {(floor + t_total) / t_fwd:.3f}×"),
            (f"{p}: explain_variants' E vs the parts' E (max rel diff)", f"{same:.1e}")]


def lite_rows(n_episodes: int, shots: int, size: int) -> list[tuple[str, str]]:
    from fss_attr.data.controlled import make_episodes
    from fss_attr.metrics import evaluate
    from fss_attr.models.lite_matcher import LiteMatcher

    model = LiteMatcher().eval()
    episodes = list(make_episodes(n_episodes, seed=42, n_shots=shots, size=(size, size), batch_size=1))
    t_explain = {"separate": 0.0, "cache": 0.0}
    t_eval = {False: 0.0, True: 0.0}
    n_explainers = len(VARIANTS)
    diff = 0.0
    for ep in episodes:
        t, sep = timed(lambda: {v: AffinityExplainer(v).explain(model, ep) for v in VARIANTS})
        t_explain["separate"] += t
        cache = ExplanationCache()
        t, _ = timed(lambda: {v: AffinityExplainer(v).explain(model, ep, cache=cache) for v in VARIANTS})
        t_explain["cache"] += t
        values = {}
        for reuse in (False, True):
            metric_cache: dict = {}
            for v in VARIANTS:
                t, values[reuse, v] = timed(lambda: evaluate(model, ep, sep[v].maps.double(), region=sep[v].region,
                                                             cache=metric_cache, reuse_query=reuse))
                t_eval[reuse] += t
        for v in VARIANTS:
            for k, a in values[False, v].items():
                diff = max(diff, float((a - values[True, v][k]).abs().max()))
    per = n_episodes * n_explainers
    p = f"LiteMatcher {size}px {shots}-shot, {n_episodes} episode(s)"
    return [(f"{p}: evaluate (default metrics) per episode per explainer, every state whole",
             f"{t_eval[False] / per:.2f} s"),
            (f"{p}: the same, query encoded once", f"{t_eval[True] / per:.2f} s "
                                                   f"({t_eval[False] / t_eval[True]:.2f}×, max |Δ metric| {diff:.1e})"),
            (f"{p}: explain 3 AffEx variants per episode, 3 explains vs one ExplanationCache",
             f"{t_explain['separate'] / n_episodes:.3f} s vs {t_explain['cache'] / n_episodes:.3f} s "
             f"({t_explain['separate'] / t_explain['cache']:.1f}×)")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shots", default="1,5", help="DCAMA shot counts (default 1,5; empty: skip DCAMA)")
    ap.add_argument("--lite-episodes", type=int, default=1, help="LiteMatcher episodes (default 1; 0: skip)")
    ap.add_argument("--lite-shots", type=int, default=5)
    ap.add_argument("--lite-size", type=int, default=128)
    args = ap.parse_args()
    load = ", load average " + " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else ""
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads{load}\n")
    print("| measurement | time |")
    print("| --- | --- |", flush=True)

    def show(rows):
        for name, value in rows:
            print(f"| {name} | {value} |", flush=True)

    shots = [int(s) for s in args.shots.split(",") if s.strip()]
    if shots:
        from fss_attr.models import DCAMA

        torch.manual_seed(0)
        model = DCAMA("swin_b").eval()
        for n in shots:
            show(dcama_rows(n, model))
        if hasattr(os, "getloadavg"):
            print("\nload average after DCAMA: " + " ".join(f"{x:.2f}" for x in os.getloadavg()), flush=True)
        del model
    if args.lite_episodes > 0:
        show(lite_rows(args.lite_episodes, args.lite_shots, args.lite_size))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
