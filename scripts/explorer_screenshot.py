"""Regenerate docs/explorer.png: the explorer page (LiteMatcher, 5-shot, 192 px, controlled episode 0) with a
box region on the query, the reverse view of one support pixel and the per-level view, in headless Chromium.

    PYTHONPATH=. python scripts/explorer_screenshot.py [--out docs/explorer.png]
"""
import argparse
import os
import shutil
import socket
import threading
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/explorer.png")
    args = ap.parse_args()
    import uvicorn
    from playwright.sync_api import sync_playwright

    from fss_attr.explore import ExplorerSession, controlled_source, create_app
    from fss_attr.models.lite_matcher import LiteMatcher

    session = ExplorerSession(LiteMatcher().eval(), controlled_source(100, shots=5, size=192), 100)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(session), log_level="warning"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    chromium = os.environ.get("FSS_ATTR_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True)
        page = browser.new_page(viewport={"width": 1500, "height": 900})
        page.goto(f"http://127.0.0.1:{sock.getsockname()[1]}/")
        page.wait_for_function("Number(document.body.dataset.renderCount) >= 1", timeout=120_000)
        page.check("input[name=mode][value=box]")
        box = page.locator("#query").bounding_box()
        s = box["width"] / 192
        page.mouse.move(box["x"] + 40 * s, box["y"] + 45 * s)
        page.mouse.down()
        page.mouse.move(box["x"] + 80 * s, box["y"] + 80 * s, steps=4)
        page.mouse.up()
        page.check("#per-level")
        page.wait_for_function("window.explorer.lastExplain.body.per_level && !window.explorer.inFlight",
                               timeout=120_000)
        n = page.evaluate("document.body.dataset.reverseCount")
        sb = page.locator("#support-2").bounding_box()
        page.mouse.click(sb["x"] + sb["width"] * 0.55, sb["y"] + sb["height"] * 0.45)
        page.wait_for_function(f"document.body.dataset.reverseCount > {n}", timeout=120_000)
        page.wait_for_timeout(300)
        page.screenshot(path=args.out, full_page=True)
        browser.close()
    server.should_exit = True
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
