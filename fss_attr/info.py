"""``python -m fss_attr.info``: versions, how ``fss_attr._C`` was built, and which backends work here."""
from __future__ import annotations

import platform
import sys
import time
import warnings


TIMING_CALLS = 7


def backend_report(calls: int = TIMING_CALLS) -> list[tuple[str, str]]:
    """Run a tiny explanation per backend; (backend, status) for each known backend.

    The status is "ok (median x ms of n calls)": one warm-up call (first-call costs such as allocation and
    kernel loading), then ``calls`` timed calls, of which the median is given (a busy machine moves single
    timings by an order of magnitude; the median of several moves much less). "not available", "FAILED: ..."
    otherwise; this never raises (a diagnostic).
    """
    import statistics

    import torch

    from fss_attr import AffinityExplainer, available_backends
    from fss_attr.testing import random_level, random_masks, random_region

    if isinstance(calls, bool) or not isinstance(calls, int) or calls < 1:
        raise ValueError(f"calls must be a positive int, got {calls!r}")
    rows = []
    available = available_backends()
    for backend in ("literal", "torch", "cpu", "cuda"):
        if backend not in available:
            rows.append((backend, "not available"))
            continue
        device = "cuda" if backend == "cuda" else "cpu"
        try:
            g = torch.Generator().manual_seed(0)
            levels = [random_level(1, 2, (6, 6), (6, 6), device=device, generator=g),
                      random_level(1, 2, (3, 3), (3, 3), features=True, device=device, generator=g)]
            region, masks = random_region(1, (32, 32), device=device), random_masks(1, 2, (32, 32), device=device)
            explainer = AffinityExplainer("masked", backend=backend)
            times, ok = [], True
            for i in range(calls + 1):                          # call 0 is the warm-up, not timed
                t0 = time.perf_counter()
                out = explainer.explain_levels(levels, region, masks)
                if device == "cuda":
                    torch.cuda.synchronize()
                if i:
                    times.append(time.perf_counter() - t0)
                ok = ok and bool(torch.isfinite(out).all())
            rows.append((backend, f"ok (median {1e3 * statistics.median(times):.2f} ms of {calls} calls after a "
                                  f"warm-up)" if ok else "FAILED: non-finite"))
        except Exception as exc:  # report, never raise: this is a diagnostic
            rows.append((backend, f"FAILED: {type(exc).__name__}: {exc}"))
    return rows


def main() -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import torch

        import fss_attr
        from fss_attr._extension import EXTENSION_ERROR, build_info

    print(f"fss_attr     {fss_attr.__version__}")
    print(f"python       {sys.version.split()[0]} ({platform.machine()})")
    print(f"torch        {torch.__version__} (CUDA {torch.version.cuda}, GPU visible: {torch.cuda.is_available()})")
    try:
        import torchvision
        print(f"torchvision  {torchvision.__version__}")
    except Exception:
        print("torchvision  not installed")
    print(f"threads      {torch.get_num_threads()}")
    print()
    info = build_info()
    if info:
        print("extension fss_attr._C: loaded")
        for key in sorted(info):
            print(f"  {key:18s} {info[key]}")
    else:
        print(f"extension fss_attr._C: NOT loaded ({EXTENSION_ERROR})")
    print()
    print("backends:")
    for name, status in backend_report():
        print(f"  {name:8s} {status}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
