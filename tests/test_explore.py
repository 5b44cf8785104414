"""fss-attr explore: the API through starlette's ASGI test client, and the command's option checks."""
import base64
import io
import json
import threading

import numpy as np
import pytest
import torch

pytest.importorskip("starlette")
pytest.importorskip("httpx")

from starlette.testclient import TestClient  # noqa: E402

from fss_attr import AffinityExplainer  # noqa: E402
from fss_attr.affex.interp import upsample_bilinear  # noqa: E402
from fss_attr.explore import ExplorerSession, controlled_source, create_app  # noqa: E402
from fss_attr.models.base import level_weights_from_ablations  # noqa: E402
from fss_attr.ops.reference import literal_probabilities  # noqa: E402

SIZE, SHOTS, EPISODES = 64, 2, 3


@pytest.fixture(scope="module")
def model():
    from fss_attr.models.lite_matcher import LiteMatcher

    return LiteMatcher().eval()


@pytest.fixture(scope="module")
def session(model):
    return ExplorerSession(model, controlled_source(EPISODES, seed=42, shots=SHOTS, size=SIZE), EPISODES,
                           backend="auto")


@pytest.fixture(scope="module")
def client(session):
    return TestClient(create_app(session))


def f32(b64, shape):
    return torch.from_numpy(np.frombuffer(base64.b64decode(b64), dtype="<f4").reshape(shape).copy())


def region_tensor(spec, episode, prediction):
    r = torch.zeros(1, SIZE, SIZE, dtype=torch.bool)
    if spec["kind"] == "point":
        r[0, spec["y"], spec["x"]] = True
    elif spec["kind"] == "box":
        r[0, min(spec["y0"], spec["y1"]):max(spec["y0"], spec["y1"]) + 1,
          min(spec["x0"], spec["x1"]):max(spec["x0"], spec["x1"]) + 1] = True
    elif spec["kind"] == "mask":
        r[0] = torch.from_numpy(np.frombuffer(base64.b64decode(spec["data"]), np.uint8).reshape(SIZE, SIZE) == 1)
    elif spec["kind"] == "prediction":
        r = prediction.clone()
    elif spec["kind"] == "gt":
        r = episode.query_mask.clone()
    return r


def painted():
    m = np.zeros((SIZE, SIZE), np.uint8)
    m[5:9, 40:50] = 1
    m[30, 3] = 1
    return base64.b64encode(m.tobytes()).decode()


REGIONS = [{"kind": "point", "x": 17, "y": 40}, {"kind": "box", "x0": 50, "y0": 12, "x1": 30, "y1": 20},
           {"kind": "mask", "data": painted()}, {"kind": "prediction"}, {"kind": "gt"}]


@pytest.mark.parametrize("variant,top_k,softmax,weights", [
    ("unmasked", 0, True, "ablation"), ("masked", 0, True, "uniform"), ("signed", 0, True, "ablation"),
    ("masked", 7, True, "ablation")])
def test_explain_maps_equal_library_explain_bit_for_bit(client, session, model, variant, top_k, softmax, weights):
    """The maps the page gets for a region are AffinityExplainer.explain's for that region, bit for bit."""
    for episode_index, spec in zip((1, 1, 2, 0, 2), REGIONS):
        body = {"episode": episode_index, "region": spec, "variant": variant, "top_k": top_k, "softmax": softmax,
                "weights": weights}
        res = client.post("/api/explain", json=body)
        assert res.status_code == 200, res.text
        out = res.json()
        assert out["shape"] == [SHOTS, SIZE, SIZE]
        maps = f32(out["maps"], out["shape"])
        enc = session.encoded(episode_index)
        r = region_tensor(spec, enc.episode, enc.prediction)
        assert out["region_pixels"] == int(r.sum())
        ref = AffinityExplainer(variant, softmax=softmax, top_k=top_k).explain(model, enc.episode, region=r,
                                                                              level_weights=weights)
        assert torch.equal(maps, ref.maps[0]), (variant, spec["kind"])
        assert torch.equal(torch.tensor(out["level_weights"], dtype=torch.float64), ref.level_weights[0])
        assert ("zero" in out) == (variant == "signed")


def test_cached_ablation_weights_equal_the_adapters(session, model):
    enc = session.encoded(0)
    r = torch.zeros(1, SIZE, SIZE, dtype=torch.bool)
    r[0, 10:30, 20:25] = True
    assert torch.equal(level_weights_from_ablations(enc.logits, enc.ablated_logits, r),
                       model.level_weights(enc.state, r, enc.logits))


def test_per_level_maps_and_npy_download(client, session):
    body = {"episode": 0, "region": {"kind": "box", "x0": 3, "y0": 3, "x1": 20, "y1": 30}, "variant": "masked"}
    out = client.post("/api/explain", json={**body, "per_level": True}).json()
    enc = session.encoded(0)
    assert len(out["level_maps"]) == len(enc.levels) == len(out["level_weights"])
    for m in out["level_maps"]:
        m = f32(m, [SHOTS, SIZE, SIZE])
        assert float(m.min()) == 0.0 and float(m.max()) == 1.0
    res = client.post("/api/explain.bin", json={**body, "per_level": True})
    meta = json.loads(res.headers["x-explorer-meta"])
    raw = np.frombuffer(res.content, "<f4").reshape(1 + meta["n_level_maps"], SHOTS, SIZE, SIZE)
    assert np.array_equal(raw[0], f32(out["maps"], [SHOTS, SIZE, SIZE]).numpy())
    assert all(np.array_equal(raw[1 + l], f32(m, [SHOTS, SIZE, SIZE]).numpy()) for l, m in enumerate(out["level_maps"]))
    assert meta["level_weights"] == out["level_weights"] and meta["shape"] == out["shape"]
    res = client.post("/api/explain.npy", json=body)
    assert res.status_code == 200 and "attachment" in res.headers["content-disposition"]
    npy = np.load(io.BytesIO(res.content))
    assert npy.dtype == np.float32 and npy.shape == (SHOTS, SIZE, SIZE)
    assert np.array_equal(npy, f32(out["maps"], [SHOTS, SIZE, SIZE]).numpy())


def reverse_reference(enc, shot, x, y, weights, softmax=True, top_k=0):
    """The reverse view from the definition: materialised scores, P, bilinear mix of columns, upsampling."""
    from fss_attr.affex.interp import linear_interp_matrix

    total, per = 0, []
    for li, lv in enumerate(enc.levels):
        s = lv.materialize().scores.double()
        p = literal_probabilities(s, softmax, top_k)[0]                       # [Q, M]
        hs, ws = lv.support_hw
        mix = torch.outer(linear_interp_matrix(SIZE, hs)[y], linear_interp_matrix(SIZE, ws)[x]).flatten()
        col = p[:, shot * hs * ws:(shot + 1) * hs * ws] @ mix
        u = upsample_bilinear(col.view(1, *lv.query_hw), (SIZE, SIZE))[0]
        u = u / (u.sum() + 1e-6)
        per.append(u)
        total = total + weights[li] * u
    mm = lambda t: (t - t.min()) / (t.max() - t.min())  # noqa: E731
    return mm(total), [mm(u) for u in per]


@pytest.mark.parametrize("softmax,top_k,weights", [(True, 0, "ablation"), (True, 9, "uniform")])
def test_reverse_view_matches_the_definition(client, session, softmax, top_k, weights):
    body = {"episode": 1, "shot": 1, "x": 37, "y": 21, "softmax": softmax, "top_k": top_k, "weights": weights,
            "region": {"kind": "prediction"}}
    res = client.post("/api/reverse", json=body)
    assert res.status_code == 200, res.text
    out = res.json()
    enc = session.encoded(1)
    w = torch.tensor(out["level_weights"], dtype=torch.float64)
    if weights == "ablation":
        assert torch.equal(w, level_weights_from_ablations(enc.logits, enc.ablated_logits, enc.prediction)[0])
    ref, ref_levels = reverse_reference(enc, 1, 37, 21, w, softmax, top_k)
    got = f32(out["map"], [SIZE, SIZE]).double()
    assert torch.allclose(got, ref, atol=2e-5), float((got - ref).abs().max())
    for m, r in zip(out["level_maps"], ref_levels):
        assert torch.allclose(f32(m, [SIZE, SIZE]).double(), r, atol=2e-5)


def test_reverse_is_dual_to_the_forward_attribution(session):
    """Mean over R of a support position's reverse map (before min-max) is that position's attribution a_j."""
    enc = session.encoded(0)
    lv = enc.levels[0]
    hs, ws = lv.support_hw
    r = torch.zeros(1, SIZE, SIZE, dtype=torch.bool)
    r[0, 20:40, 10:33] = True
    a = AffinityExplainer(backend="torch").level_attribution(lv, r).double()[0]      # [M]
    p = literal_probabilities(lv.materialize().scores.double(), True, 0)[0]
    j = 1 * hs * ws + 2 * ws + 3
    u = upsample_bilinear(p[:, j].view(1, *lv.query_hw), (SIZE, SIZE))[0]
    u = u / (u.sum() + 1e-6)
    assert torch.allclose(u[r[0]].mean(), a[j], rtol=1e-5)


def test_episode_endpoint(client, session):
    out = client.get("/api/episodes/2").json()
    assert (out["height"], out["width"], out["n_shots"], out["index"]) == (SIZE, SIZE, SHOTS, 2)
    assert len(base64.b64decode(out["query"])) == SIZE * SIZE * 3
    assert len(out["supports"]) == len(out["support_masks"]) == SHOTS
    pred = np.frombuffer(base64.b64decode(out["prediction"]), np.uint8).reshape(SIZE, SIZE)
    assert np.array_equal(pred, session.encoded(2).prediction[0].numpy())
    assert len(out["levels"]) == len(session.encoded(2).levels)
    page = client.get("/")
    assert page.status_code == 200 and 'id="query"' in page.text
    assert client.get("/static/app.js").status_code == 200


BAD = [
    ("/api/explain", {"episode": 3, "region": {"kind": "all"}}, 404, "out of range"),
    ("/api/explain", {"episode": -1, "region": {"kind": "all"}}, 404, "out of range"),
    ("/api/explain", {"episode": "x", "region": {"kind": "all"}}, 400, "integer"),
    ("/api/explain", {"episode": 0, "region": {"kind": "point", "x": SIZE, "y": 0}}, 400, "outside"),
    ("/api/explain", {"episode": 0, "region": {"kind": "point", "x": 1.5, "y": 0}}, 400, "integer"),
    ("/api/explain", {"episode": 0, "region": {"kind": "point", "x": 1}}, 400, "region.y"),
    ("/api/explain", {"episode": 0, "region": {"kind": "box", "x0": 0, "y0": 0, "x1": 0, "y1": -1}}, 400, "outside"),
    ("/api/explain", {"episode": 0, "region": {"kind": "mask", "data": "AAAA"}}, 400, "bytes"),
    ("/api/explain", {"episode": 0, "region": {"kind": "mask", "data": "!!"}}, 400, "base64"),
    ("/api/explain", {"episode": 0, "region": {"kind": "mask",
                                               "data": base64.b64encode(bytes(SIZE * SIZE)).decode()}}, 422, "empty"),
    ("/api/explain", {"episode": 0, "region": {"kind": "mask",
                                               "data": base64.b64encode(b"\x02" * SIZE * SIZE).decode()}}, 400, "0 or 1"),
    ("/api/explain", {"episode": 0, "region": {"kind": "lasso"}}, 400, "region.kind"),
    ("/api/explain", {"episode": 0}, 400, "region"),
    ("/api/explain", {"episode": 0, "region": {"kind": "all"}, "variant": "x"}, 400, "variant"),
    ("/api/explain", {"episode": 0, "region": {"kind": "all"}, "top_k": -1}, 400, "top_k"),
    ("/api/explain", {"episode": 0, "region": {"kind": "all"}, "softmax": "yes"}, 400, "softmax"),
    ("/api/explain", {"episode": 0, "region": {"kind": "all"}, "weights": "x"}, 400, "weights"),
    ("/api/explain", {"episode": 0, "region": {"kind": "all"}, "colour": 1}, 400, "unknown"),
    ("/api/reverse", {"episode": 0, "shot": SHOTS, "x": 0, "y": 0}, 400, "shot"),
    ("/api/reverse", {"episode": 0, "shot": 0, "x": 0, "y": SIZE}, 400, "outside"),
    ("/api/reverse", {"episode": 0, "shot": 0, "x": 0}, 400, "missing"),
    # LiteMatcher's affinities are signed: without the softmax AffEx refuses them (issue 15), so does the page
    ("/api/explain", {"episode": 0, "region": {"kind": "prediction"}, "softmax": False}, 400, "negative affinities"),
    ("/api/reverse", {"episode": 0, "shot": 0, "x": 0, "y": 0, "softmax": False}, 400, "negative affinities"),
]


@pytest.mark.parametrize("path,body,status,words", BAD)
def test_bad_requests_get_4xx_with_a_message(client, path, body, status, words):
    res = client.post(path, json=body)
    assert res.status_code == status, res.text
    assert words in res.json()["error"]


def test_malformed_bodies_and_routes(client):
    assert client.post("/api/explain", content=b"{not json").status_code == 400
    assert client.post("/api/explain", json=[1, 2]).status_code == 400
    big = client.post("/api/explain", content=b" " * (9 << 20), headers={"content-type": "application/json"})
    assert big.status_code == 413
    assert client.get("/api/episodes/99").status_code == 404
    assert client.get("/api/episodes/abc").status_code == 400
    assert client.get("/api/explain").status_code == 405
    assert client.get("/nowhere").status_code == 404


def test_host_header_is_checked_when_asked(session):
    c = TestClient(create_app(session, allowed_hosts=["127.0.0.1", "localhost"]), base_url="http://127.0.0.1")
    assert c.get("/api/config").status_code == 200
    assert c.get("/api/config", headers={"host": "attacker.example"}).status_code == 400


def test_concurrent_requests_from_several_tabs(client, session):
    bodies = [{"episode": i % EPISODES, "region": {"kind": "point", "x": 5 + i, "y": 9}, "variant": "signed"}
              for i in range(6)]
    expected = [client.post("/api/explain", json=b).json()["maps"] for b in bodies]
    results = [None] * len(bodies)

    def go(i):
        results[i] = client.post("/api/explain", json=bodies[i]).json()["maps"]

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == expected


@pytest.mark.parametrize("argv,words", [
    (["--size", "4"], "--size"), (["--episodes", "0"], "--episodes"), (["--port", "70000"], "--port"),
    (["--backend", "gpu"], "--backend"), (["--shots", "0"], "--shots"), (["--device", "nonsense"], "--device")])
def test_cli_rejects_bad_options_before_loading_the_model(monkeypatch, capsys, argv, words):
    from fss_attr import cli
    from fss_attr.commands import explore

    monkeypatch.setattr(explore, "build_session", lambda args: pytest.fail("the model must not be loaded"))
    assert cli.main(["explore", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fss-attr explore:") and words in err[0]


def test_signed_zero_is_where_the_raw_signed_value_is_zero(session):
    """The page centres the diverging colours on ``zero``: check it against E ⊙ (2G − 1) computed directly."""
    from fss_attr.affex.blur import gaussian_blur

    for index, spec in ((0, {"kind": "prediction"}), (1, {"kind": "point", "x": 30, "y": 30}),
                        (2, {"kind": "box", "x0": 0, "y0": 0, "x1": 20, "y1": 63})):
        out = session.explain(index, spec, "signed", weights="uniform")
        enc = session.encoded(index)
        e = AffinityExplainer("unmasked").explain_levels(enc.levels, out["region"][None], None, None, (SIZE, SIZE))
        t = gaussian_blur(enc.episode.support_masks.float(), 31, 50.0).double() * 2 - 1
        raw = e.double() * t
        exact = float(-raw.min() / (raw.max() - raw.min()))
        assert abs(out["zero"] - exact) < 1e-3, (index, out["zero"], exact)


def test_command_serves_on_loopback_and_prints_its_address():
    """`fss-attr explore --port 0` binds 127.0.0.1, prints the address, serves the API, checks the Host header."""
    import re
    import subprocess
    import sys
    import urllib.error
    import urllib.request

    proc = subprocess.Popen([sys.executable, "-m", "fss_attr", "explore", "--port", "0", "--size", "32",
                             "--shots", "1", "--episodes", "2", "--threads", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        m = re.match(r"fss-attr explore: (http://127\.0\.0\.1:(\d+)/) ", line)
        assert m, (line, proc.stderr.read() if proc.poll() is not None else "")
        with urllib.request.urlopen(m.group(1) + "api/config", timeout=30) as r:
            assert json.load(r)["n_episodes"] == 2
        req = urllib.request.Request(m.group(1) + "api/config", headers={"Host": "attacker.example"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=30)
        assert err.value.code == 400
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_reverse_and_explain_with_materialised_scores():
    """Levels given as LevelScores (a model that materialises its affinity) take the same paths."""
    from fss_attr.data.controlled import make_episode
    from tests.toy_adapter import PooledPixelMatcher

    class ScoresMatcher(PooledPixelMatcher):
        def levels(self, state):
            return [lv.materialize() for lv in super().levels(state)]

    model = ScoresMatcher(grids=(4, 8))
    s = ExplorerSession(model, lambda i: make_episode(i, n_shots=2, size=(SIZE, SIZE)), 2)
    enc = s.encoded(1)
    out = s.reverse(1, 0, 12, 50, top_k=5, weights="uniform")
    ref, ref_levels = reverse_reference(enc, 0, 12, 50, out["level_weights"], True, 5)
    assert torch.allclose(out["map"].double(), ref, atol=2e-5)
    region = torch.zeros(1, SIZE, SIZE, dtype=torch.bool)
    region[0, 3:9, 40:60] = True
    maps = s.explain(1, region, "masked")["maps"]
    assert torch.equal(maps, AffinityExplainer("masked").explain(model, enc.episode, region=region).maps[0])
