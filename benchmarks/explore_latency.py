"""Latency of ``fss-attr explore``: server-side compute per request, and click-to-maps-on-screen in Chromium.

    PYTHONPATH=. python benchmarks/explore_latency.py [--clicks 60] [--shots 5] [--size 192] [--threads N]

Server side: ExplorerSession calls (the episode encoded once beforehand) for random one-pixel query regions
(AffEx, three variants) and random support pixels (the reverse view). Browser: headless Chromium (Debian's
/usr/bin/chromium or FSS_ATTR_CHROMIUM) on the served page; for random clicks on the query canvas, the time
from the pointerdown event to the animation frame after the support canvases were redrawn (the page's own
``window.explorer.latencies``), and the server compute of those requests. Prints a markdown table; the CPU
columns are the request thread's CPU time (with --threads 1, about the wall time on an idle machine, whatever
else the machine is running).
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import threading
import time

import numpy as np


def pct(values, q):
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def row(name, values, cpu=None):
    c = f"{pct(cpu, 50):.1f} | {pct(cpu, 95):.1f}" if cpu else "– | –"
    return f"| {name} | {len(values)} | {pct(values, 50):.1f} | {pct(values, 95):.1f} | {max(values):.1f} | {c} |"


def timed(fn, times, cpu):
    t, c = time.perf_counter(), time.thread_time()
    fn()
    cpu.append((time.thread_time() - c) * 1e3)
    times.append((time.perf_counter() - t) * 1e3)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clicks", type=int, default=60)
    ap.add_argument("--shots", type=int, default=5)
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--no-browser", action="store_true")
    args = ap.parse_args()

    import torch

    from fss_attr.explore import ExplorerSession, controlled_source
    from fss_attr.models.lite_matcher import LiteMatcher

    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    session = ExplorerSession(LiteMatcher().eval(), controlled_source(4, shots=args.shots, size=args.size), 4)
    t0 = time.perf_counter()
    session.encoded(0)
    encode_ms = (time.perf_counter() - t0) * 1e3
    s = args.size
    rows = []
    for variant in ("unmasked", "masked", "signed"):
        session.explain(0, {"kind": "point", "x": 1, "y": 1}, variant)          # warm-up
        times, cpu = [], []
        for _ in range(args.clicks):
            x, y = (int(v) for v in rng.integers(0, s, 2))
            timed(lambda: session.explain(0, {"kind": "point", "x": x, "y": y}, variant), times, cpu)
        rows.append(row(f"server: region → maps, {variant}, ablation weights", times, cpu))
    session.reverse(0, 0, 1, 1)
    times, cpu = [], []
    for _ in range(args.clicks):
        n, x, y = int(rng.integers(0, args.shots)), *(int(v) for v in rng.integers(0, s, 2))
        timed(lambda: session.reverse(0, n, x, y), times, cpu)
    rows.append(row("server: support pixel → query matches (reverse)", times, cpu))

    if not args.no_browser:
        from fss_attr.explore import create_app

        rows += browser_rows(session, create_app, args, rng)

    print(f"LiteMatcher, {args.shots}-shot, {args.size} px, torch threads {torch.get_num_threads()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end; "
          f"encoding the episode once: {encode_ms:.0f} ms\n")
    print("| what (ms) | n | p50 | p95 | max | CPU p50 | CPU p95 |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


def browser_rows(session, create_app, args, rng):
    import uvicorn
    from playwright.sync_api import sync_playwright

    chromium = os.environ.get("FSS_ATTR_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(session), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_function("Number(document.body.dataset.renderCount) >= 1", timeout=120_000)
            box = page.locator("#query").bounding_box()
            scale = box["width"] / args.size
            for i in range(args.clicks + 3):
                done = int(page.evaluate("document.body.dataset.renderCount"))
                x, y = (int(v) for v in rng.integers(0, args.size, 2))
                page.click("#query", position={"x": (x + 0.5) * scale, "y": (y + 0.5) * scale})
                page.wait_for_function(f"Number(document.body.dataset.renderCount) > {done}", timeout=60_000)
            lat = page.evaluate("window.explorer.latencies")[4:]          # drop the first load and 3 warm-ups
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    return [row("browser: click → maps on screen (unmasked)", [l["total_ms"] for l in lat]),
            row("  of which server compute", [l["server_ms"] for l in lat])]


if __name__ == "__main__":
    raise SystemExit(main())
