"""Print the end-to-end pipeline table of BENCHMARKS.md ("Explanations end to end"), in one run.

    python benchmarks/pipeline_table.py                      # DCAMA Swin-B 1- and 5-shot, LiteMatcher evaluate
    python benchmarks/pipeline_table.py --shots 5 --lite-episodes 2

Rows, all measured in this one process (ratios within a run are what to compare on a shared machine):

- DCAMA Swin-B 384 with random weights (the official architecture; the decoder's cost does not depend on the
  weights), N-shot, batch 1: the forward (encode + decode); the three AffEx variants with the paper's
  ablation weights from ``explain_variants`` (one encode, one set of batched ablation decodes, one set of level
  maps) beyond the forward, and that time over the forward; the ablation weights alone, one decode per level
  (``sequential_level_weights``, the former path) vs ``level_weights`` (batched fast path); the former cost of
  the three variants (three ``explain`` calls, each an encode, 22 sequential ablated decodes and the level
  maps) is given from its measured parts.
- LiteMatcher (pretrained EfficientNet-Lite0) on controlled episodes: ``fss_attr.metrics.evaluate`` with the
  default metrics, per episode and explainer (the three AffEx variants' maps, one ``cache`` per episode as the
  evaluation loop passes), every perturbation state run whole (``reuse_query=False``) vs the query encoded
  once (``reuse_query=True``); and the explanation of the three variants without vs with an
  ``ExplanationCache``.
"""
from __future__ import annotations

import argparse
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


def dcama_rows(shots: int, model) -> list[tuple[str, str]]:
    g = torch.Generator().manual_seed(shots)
    masks = torch.zeros(1, shots, 384, 384, dtype=torch.bool)
    masks[..., 96:288, 64:320] = True
    ep = Episode(torch.randn(1, 3, 384, 384, generator=g), torch.randn(1, shots, 3, 384, 384, generator=g), masks)
    ex = AffinityExplainer()
    with torch.no_grad():
        t_fwd, _ = timed(lambda: model.decode(model.encode(ep)))
        t_new, res = timed(lambda: ex.explain_variants(model, ep, VARIANTS))
        state = model.encode(ep)
        logits = model.decode(state)
        r = resolve_region("logits", logits, None)
        t_seq, w_seq = timed(lambda: model.sequential_level_weights(state, r, logits))
        t_fast, w_fast = timed(lambda: model.level_weights(state, r, logits))
        levels = list(model.levels(state))
        t_maps, _ = timed(lambda: AffinityExplainer("masked").explain_levels(levels, r, ep.support_masks, w_fast))
    err = float((w_fast - w_seq).abs().max() / w_seq.abs().max())
    beyond = t_new - t_fwd
    old_one = t_seq + t_maps
    old_three = 3 * old_one + 2 * t_fwd
    p = f"DCAMA Swin-B 384, {shots}-shot"
    return [(f"{p}: forward (encode + decode)", f"{t_fwd:.2f} s"),
            (f"{p}: 3 variants + ablation weights, beyond the forward (new)", f"{beyond:.2f} s = {beyond / t_fwd:.3f}× forward"),
            (f"{p}: 1 variant + ablation weights, beyond the forward (former: sequential decodes + maps)",
             f"{old_one:.2f} s = {old_one / t_fwd:.3f}× forward"),
            (f"{p}: 3 variants, former (3 explains: 3 encodes, 3×22 decodes), beyond the forward",
             f"{old_three:.2f} s = {old_three / t_fwd:.3f}× forward"),
            (f"{p}: ablation weights, sequential vs batched", f"{t_seq:.2f} s vs {t_fast:.2f} s "
                                                             f"({t_seq / t_fast:.1f}×, max rel diff {err:.1e})")]


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
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
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
        del model
    if args.lite_episodes > 0:
        show(lite_rows(args.lite_episodes, args.lite_shots, args.lite_size))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
