"""All B×B pairs of a batch in one call against per-pair autograd loops (Grad-CAM style), same run.

Two loops, both timed on ``--loop-pairs`` of the B(B+1)/2 unordered pairs and extrapolated to all of them
(printed as such); each loop step gives both Grad-CAM maps of a pair (relu, upsampling, min-max):

- "loop, backbone per pair": what users write today: run both images through the backbone (no graph kept
  below the last feature map, which flatters the loop), take the similarity of the two embeddings as a
  scalar target, backpropagate to the last feature map;
- "loop, cached features": the same with every image's feature map computed once beforehand, so that only
  the head's autograd runs per pair (isolates what the closed forms save beyond sharing the backbone).

Each explainer is timed twice: ``explain_all_pairs`` on the images (backbone once for the B images
included), against the backbone-per-pair loop, and ``raw_maps(all_pairs=True)`` + relu/upsampling/min-max on
feature maps computed beforehand, against the cached loop (neither side counts the backbone). Times are wall and process CPU seconds (CPU counts
every thread; on a shared machine it is the steadier of the two). Images are random normalised tensors
(timings do not depend on content). The loops' raw maps are checked against the all-pairs gradient
attention's (one relative L2 error over all the loop's maps).

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/similarity_pairs.py --batch 64 --size 128

(one thread: on a loaded machine two threads make the small per-pair calls of the loops many times slower
than one, which would flatter the all-pairs calls)
"""
from __future__ import annotations

import argparse
import time

import torch
from tqdm import tqdm

from fss_attr.commands.similarity import layer_arg, layer_label
from fss_attr.similarity import default_methods, default_model, similarity
from fss_attr.similarity.explainers import finalize
from fss_attr.similarity.measures import SIMILARITIES


def gradcam_pair(model, a, kind):
    """Both Grad-CAM maps of one pair from its two feature maps a [2, C, h, w]: (raw [2, h, w], autograd)."""
    a = a.detach().clone().requires_grad_(True)
    e = model.head(a)
    (grad,) = torch.autograd.grad(similarity(e[0], e[1], kind), a)
    return (grad.mean((-2, -1))[..., None, None] * a.detach()).sum(1)


def loop_backbone(model, x, pairs, kind):
    out = []
    for i, j in tqdm(pairs, desc="loop, backbone per pair", leave=False):
        with torch.no_grad():
            a = model.features(torch.stack([x[i], x[j]]))
        raw = gradcam_pair(model, a, kind)
        out.append((raw, finalize(raw, x.shape[-2:])))
    return out


def loop_cached(model, feats, pairs, kind, size):
    out = []
    for i, j in tqdm(pairs, desc="loop, cached features", leave=False):
        raw = gradcam_pair(model, feats[[i, j]], kind)
        out.append((raw, finalize(raw, size)))
    return out


def timed(fn, sync):
    """(wall seconds, process CPU seconds, fn's result)."""
    sync()
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    sync()
    return time.perf_counter() - t0, time.process_time() - c0, out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--layer", type=layer_arg, default="head", help="'head' or an EfficientNet-Lite0 block 0..15")
    p.add_argument("--loop-pairs", type=int, default=64, help="unordered pairs each loop is timed on")
    p.add_argument("--similarity", default="cosine", choices=SIMILARITIES)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    model = default_model(layer=args.layer, device=dev)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0)).to(dev)
    b = args.batch
    layer = layer_label(args.layer)
    print(f"device {dev}, threads {torch.get_num_threads()}, batch {b} ({b * b} ordered pairs), {args.size} px, "
          f"EfficientNet-Lite0 {layer} + GAP, {args.similarity}")
    results, given = {}, {}
    with torch.no_grad():
        wall_bb, cpu_bb, feats = timed(lambda: model.features(x), sync)
    size = x.shape[-2:]
    for name, method in default_methods(args.similarity).items():
        method.explain_all_pairs(model, x[:4])  # warm-up
        results[name] = timed(lambda: method.explain_all_pairs(model, x), sync)
        given[name] = timed(lambda: finalize(method.raw_maps(model, feats, feats, all_pairs=True), size), sync)
    print(f"backbone on the {b} images (inside every one-call time): {wall_bb:.2f} s wall, {cpu_bb:.2f} s CPU")
    pairs = [(i, j) for i in range(b) for j in range(i, b)]
    step = max(1, len(pairs) // args.loop_pairs)
    subset = pairs[::step][: args.loop_pairs]
    loops = {"loop, backbone per pair": lambda ps: loop_backbone(model, x, ps, args.similarity),
             "loop, cached features": lambda ps: loop_cached(model, feats, ps, args.similarity, size)}
    ref = results["gradient attention"][2].raw
    totals = {}
    for name, loop in loops.items():
        loop(subset[:2])  # warm-up
        wall, cpu, maps = timed(lambda: loop(subset), sync)
        got = torch.stack([raw for raw, _ in maps])
        want = torch.stack([torch.stack([ref[i, j], ref[j, i]]) for i, j in subset])
        err = float((got - want).norm() / want.norm())
        scale = len(pairs) / len(subset)
        totals[name] = (wall * scale, cpu * scale)
        print(f"{name}: {wall / len(subset) * 1e3:.1f} ms/pair wall ({cpu / len(subset) * 1e3:.2f} ms CPU) on "
              f"{len(subset)} pairs -> {totals[name][0]:.1f} s wall ({totals[name][1]:.1f} s CPU) extrapolated "
              f"to all {len(pairs)} unordered pairs; relative L2 error of its raw maps against the all-pairs "
              f"gradient attention's: {err:.1e}")
    wall_fin, cpu_fin, _ = timed(lambda: finalize(ref, size), sync)
    print(f"relu + upsampling + min-max of the {b * b} maps to {args.size} px (inside every all-pairs time): "
          f"{wall_fin:.2f} s wall ({cpu_fin:.2f} s CPU)")
    (lw, lc), (cw, cc) = totals.values()
    print(f"{'':<24}{'one call from the images':^40}{'one call from cached feature maps':^40}")
    print(f"{'method':<24}" + f"{'wall (s)':>9}{'CPU (s)':>9}{'speed-up (CPU)':>22}" * 2)
    for name, (wall, cpu, _) in results.items():
        gw, gc, _ = given[name]
        print(f"{name:<24}{wall:>9.2f}{cpu:>9.2f}{lc / cpu:>11.0f}x (wall {lw / wall:.0f}x)"
              f"{gw:>9.3f}{gc:>9.3f}{cc / gc:>11.0f}x (wall {cw / gw:.0f}x)")
    print("speed-ups: against the loop with the backbone per pair (left) and the loop on cached feature maps "
          "(right), each extrapolated to all pairs")


if __name__ == "__main__":
    main()
