"""fss-attr explore in a real browser: headless Chromium (Debian's package) driven by playwright's Python API.

Skips with a reason when playwright or the browser is missing outside CI; in CI (CI=true) that fails instead,
since .ci/run installs Debian's chromium. Set FSS_ATTR_CHROMIUM to use another Chromium binary.
"""
import os
import shutil
import socket
import threading
import time

import numpy as np
import pytest
import torch

from fss_attr import AffinityExplainer

SIZE, SHOTS, EPISODES = 64, 3, 2
IN_CI = os.environ.get("CI", "").lower() == "true"


def chromium_path():
    for p in (os.environ.get("FSS_ATTR_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
              shutil.which("chromium-browser")):
        if p and os.path.exists(p):
            return p
    return None


def need(condition, reason):
    if not condition:
        if IN_CI:
            pytest.fail(f"{reason} (CI=true: .ci/run installs it, so this is an error)")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def served():
    """(url, session, model): the explorer served by uvicorn on a free loopback port in a thread."""
    try:
        import uvicorn
    except ImportError:
        need(False, "uvicorn is not installed (pip install -r requirements.txt)")
    from fss_attr.explore import ExplorerSession, controlled_source, create_app
    from fss_attr.models.lite_matcher import LiteMatcher

    model = LiteMatcher().eval()
    session = ExplorerSession(model, controlled_source(EPISODES, seed=3, shots=SHOTS, size=SIZE), EPISODES)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(session, allowed_hosts=["127.0.0.1"]), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/", session, model
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need(False, "playwright is not installed (pip install -r requirements.txt)")
    path = chromium_path()
    need(path is not None, "no Chromium found: apt-get install chromium (or set FSS_ATTR_CHROMIUM)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, headless=True)
        yield b
        b.close()


def lut(name, values):
    import matplotlib

    return matplotlib.colormaps[name](values, bytes=True)[..., :3]


def canvas_rgb(page, element_id):
    data = page.evaluate(f"""() => {{ const c = document.getElementById({element_id!r});
        return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data); }}""")
    return np.array(data, dtype=np.uint8).reshape(SIZE, SIZE, 4)


def click_pixel(page, element_id, x, y):
    """Click the canvas at image pixel (x, y), whatever its display scale."""
    scale = page.evaluate(f"document.getElementById({element_id!r}).getBoundingClientRect().width") / SIZE
    page.click(f"#{element_id}", position={"x": (x + 0.5) * scale, "y": (y + 0.5) * scale})


def test_click_query_and_support_in_chromium(served, browser):
    url, session, model = served
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    problems = []
    page.on("console", lambda m: problems.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.goto(url)
    page.wait_for_function("Number(document.body.dataset.renderCount) >= 1", timeout=60_000)
    for n in range(SHOTS):
        assert page.locator(f"#support-{n}").count() == 1
    before = [canvas_rgb(page, f"support-{n}") for n in range(SHOTS)]

    # click a query pixel: the support maps become the library's maps for that one-pixel region
    x, y = 21, 37
    click_pixel(page, "query", x, y)
    page.wait_for_function("Number(document.body.dataset.renderCount) >= 2 && "
                           "window.explorer.lastExplain.body.region.kind === 'point'", timeout=60_000)
    sent = page.evaluate("window.explorer.lastExplain.body")
    assert sent["region"] == {"kind": "point", "x": x, "y": y}
    enc = session.encoded(0)
    region = torch.zeros(1, SIZE, SIZE, dtype=torch.bool)
    region[0, y, x] = True
    ref = AffinityExplainer(sent["variant"], softmax=sent["softmax"], top_k=sent["top_k"]).explain(
        model, enc.episode, region=region, level_weights=sent["weights"]).maps[0]
    shown = torch.tensor(page.evaluate("Array.from(window.explorer.maps)"), dtype=torch.float32).view(SHOTS, SIZE, SIZE)
    assert torch.equal(shown, ref)
    changed = 0
    for n in range(SHOTS):
        rgb = canvas_rgb(page, f"support-{n}")
        assert np.array_equal(rgb[..., :3], lut("viridis", ref[n].numpy())), f"support-{n} pixels"
        changed += not np.array_equal(rgb, before[n])
    assert changed > 0, "no support canvas changed after the click"

    # the reverse view: click a support pixel, the query overlay shows what it matches
    click_pixel(page, "support-1", 40, 25)
    page.wait_for_function("Number(document.body.dataset.reverseCount) >= 1", timeout=60_000)
    rev = page.evaluate("window.explorer.lastReverse.body")
    assert (rev["shot"], rev["x"], rev["y"]) == (1, 40, 25)
    expect = session.reverse(0, 1, 40, 25, rev["softmax"], rev["top_k"], rev["weights"], rev["region"])["map"]
    got = torch.tensor(page.evaluate("Array.from(window.explorer.reverse.map)"), dtype=torch.float32).view(SIZE, SIZE)
    assert torch.equal(got, expect)
    assert np.array_equal(canvas_rgb(page, "reverse")[..., :3], lut("viridis", expect.numpy()))
    assert page.evaluate("getComputedStyle(document.getElementById('reverse')).visibility") == "visible"

    # switch to the signed variant: the diverging colours are centred on the zero the server reported
    page.select_option("#variant", "signed")
    page.wait_for_function("window.explorer.lastExplain.body.variant === 'signed'", timeout=60_000)
    page.wait_for_function("window.explorer.zero !== null", timeout=60_000)
    zero = page.evaluate("window.explorer.zero")
    maps = np.array(page.evaluate("Array.from(window.explorer.maps)"), dtype=np.float32).reshape(SHOTS, SIZE, SIZE)
    d = 0.5 + (maps[0].astype(np.float64) - zero) / (2 * max(zero, 1 - zero))
    idx = np.clip(np.floor(np.clip(d, 0, None) * 256), 0, 255).astype(int)
    assert np.array_equal(canvas_rgb(page, "support-0")[..., :3], lut("RdBu_r", idx))

    # downloads: the .npy holds the maps on screen; the .png is a PNG
    with page.expect_download() as dl:
        page.click("#download-npy")
    npy = np.load(dl.value.path())
    assert npy.shape == (SHOTS, SIZE, SIZE) and np.array_equal(npy, maps)
    with page.expect_download() as dl:
        page.click("#download-png")
    with open(dl.value.path(), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"

    # episode navigation: the next episode's maps arrive (its prediction is the region again)
    page.click("#next")
    page.wait_for_function("window.explorer.lastExplain.body.episode === 1", timeout=60_000)
    assert page.input_value("#episode") == "1"

    # a bad request shows its message on the page (no console error)
    page.fill("#top-k", "-3")
    page.dispatch_event("#top-k", "change")
    page.wait_for_function("document.getElementById('message').textContent.includes('top_k')", timeout=60_000)
    page.close()
    assert not problems, problems
