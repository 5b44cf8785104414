"""The explorer's ASGI app (starlette): the page under ``static/`` and a small JSON API.

Routes (all answers JSON unless said otherwise; errors are ``{"error": message}`` with a 4xx status):

- ``GET /``: the page (``static/index.html``); ``GET /static/...``: its script, style and colour maps.
- ``GET /api/config``: ``{n_episodes, model, variants, weightings, region_kinds}``.
- ``GET /api/episodes/{i}``: episode i as the page draws it: ``height``, ``width``, ``n_shots``, ``class_name``,
  base64 RGB bytes ``query`` and ``supports`` (H·W·3 each), base64 0/1 bytes ``support_masks``,
  ``prediction`` and ``ground_truth`` (H·W each; the latter null when unknown), ``levels``.
- ``POST /api/explain``: body ``{episode, region, variant, softmax, top_k, weights, per_level}`` (region as
  :meth:`ExplorerSession.region`); answers ``maps`` (base64 little-endian float32 [N, H, W], exactly
  ``AffinityExplainer.explain_levels`` of the cached levels), ``shape``, ``level_weights``, ``zero`` (signed
  only), ``level_maps`` (L base64 float32 [N, H, W], when ``per_level``), ``region_pixels``, ``compute_ms``.
- ``POST /api/explain.bin``: the same body; answers the same arrays as raw little-endian float32 (the maps,
  then the level maps when asked), the rest as JSON in the ``X-Explorer-Meta`` header (what the page uses:
  no base64, no JSON parsing of the maps).
- ``POST /api/explain.npy``: the same body; answers the maps as a ``.npy`` file (float32 [N, H, W]).
- ``POST /api/reverse``: body ``{episode, shot, x, y, softmax, top_k, weights, region}``; answers ``map``
  (base64 float32 [H, W]), ``level_maps``, ``level_weights``, ``compute_ms``.
"""
from __future__ import annotations

import base64
import io
import json
from importlib import resources

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from fss_attr.explore.session import REGION_KINDS, WEIGHTINGS, ExplorerError, ExplorerSession
from fss_attr.affex.explainer import VARIANTS

MAX_BODY_BYTES = 8 << 20      # a painted 1024×1024 region is 1.4 MB of base64
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


def static_dir() -> str:
    """The folder of the page's files, shipped inside the package (no CDN, no network)."""
    return str(resources.files("fss_attr.explore") / "static")


def b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")


def f32(t) -> str:
    """base64 of a tensor as little-endian float32 bytes."""
    return b64(t.detach().cpu().numpy().astype("<f4", copy=False))


def error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def read_json(request: Request) -> dict:
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
        raise ExplorerError(f"request body over {MAX_BODY_BYTES} bytes", 413)
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise ExplorerError(f"request body over {MAX_BODY_BYTES} bytes", 413)
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ExplorerError(f"the request body is not JSON: {e}") from None
    if not isinstance(data, dict):
        raise ExplorerError("the request body must be a JSON object")
    return data


def _explain_args(data: dict) -> dict:
    unknown = set(data) - {"episode", "region", "variant", "softmax", "top_k", "weights", "per_level"}
    if unknown:
        raise ExplorerError(f"unknown field(s): {', '.join(sorted(unknown))}")
    if "region" not in data:
        raise ExplorerError("missing field: region")
    if not isinstance(data.get("per_level", False), bool):
        raise ExplorerError("per_level must be true or false")
    return {"index": data.get("episode", 0), "region": data["region"], "variant": data.get("variant", "unmasked"),
            "softmax": data.get("softmax", True), "top_k": data.get("top_k", 0),
            "weights": data.get("weights", "ablation"), "per_level": data.get("per_level", False)}


def create_app(session: ExplorerSession, allowed_hosts: list[str] | None = None) -> Starlette:
    """The ASGI app around ``session``.

    Args:
        session: the :class:`ExplorerSession` (model, episodes, caches).
        allowed_hosts: Host headers accepted (protection against DNS rebinding when bound to a loopback
            address); None accepts any.
    """

    async def index(request: Request):
        return FileResponse(f"{static_dir()}/index.html", headers={"Cache-Control": "no-store"})

    async def config(request: Request):
        return JSONResponse({"n_episodes": session.n_episodes, "model": type(session.adapter).__name__,
                             "variants": list(VARIANTS), "weightings": list(WEIGHTINGS),
                             "region_kinds": list(REGION_KINDS), "backend": session.backend})

    async def episode(request: Request):
        info = await run_in_threadpool(session.episode_info, request.path_params["index"])
        for k in ("query", "prediction", "ground_truth"):
            info[k] = None if info[k] is None else b64(info[k])
        info["supports"] = [b64(s) for s in info["supports"]]
        info["support_masks"] = [b64(m) for m in info["support_masks"]]
        return JSONResponse(info)

    async def explain(request: Request):
        args = _explain_args(await read_json(request))
        out = await run_in_threadpool(lambda: session.explain(**args))
        body = {"maps": f32(out["maps"]), "shape": list(out["maps"].shape),
                "level_weights": out["level_weights"].tolist(), "region_pixels": int(out["region"].sum()),
                "compute_ms": out["compute_ms"]}
        if "zero" in out:
            body["zero"] = out["zero"]
        if "level_maps" in out:
            body["level_maps"] = [f32(m) for m in out["level_maps"]]
        return JSONResponse(body)

    async def explain_bin(request: Request):
        args = _explain_args(await read_json(request))
        out = await run_in_threadpool(lambda: session.explain(**args))
        parts = [out["maps"]] + list(out.get("level_maps", []))
        data = b"".join(p.detach().cpu().numpy().astype("<f4", copy=False).tobytes() for p in parts)
        meta = {"shape": list(out["maps"].shape), "level_weights": out["level_weights"].tolist(),
                "region_pixels": int(out["region"].sum()), "compute_ms": out["compute_ms"],
                "n_level_maps": len(parts) - 1}
        if "zero" in out:
            meta["zero"] = out["zero"]
        return Response(data, media_type="application/octet-stream",
                        headers={"X-Explorer-Meta": json.dumps(meta), "Cache-Control": "no-store"})

    async def explain_npy(request: Request):
        args = _explain_args(await read_json(request))
        args["per_level"] = False
        out = await run_in_threadpool(lambda: session.explain(**args))
        buf = io.BytesIO()
        np.save(buf, out["maps"].cpu().numpy().astype(np.float32))
        return Response(buf.getvalue(), media_type="application/octet-stream",
                        headers={"Content-Disposition": f'attachment; filename="affex_episode{args["index"]}.npy"'})

    async def reverse(request: Request):
        data = await read_json(request)
        unknown = set(data) - {"episode", "shot", "x", "y", "softmax", "top_k", "weights", "region"}
        if unknown:
            raise ExplorerError(f"unknown field(s): {', '.join(sorted(unknown))}")
        for k in ("shot", "x", "y"):
            if k not in data:
                raise ExplorerError(f"missing field: {k}")
        out = await run_in_threadpool(lambda: session.reverse(
            data.get("episode", 0), data["shot"], data["x"], data["y"], data.get("softmax", True),
            data.get("top_k", 0), data.get("weights", "ablation"), data.get("region")))
        return JSONResponse({"map": f32(out["map"]), "shape": list(out["map"].shape),
                             "level_maps": [f32(m) for m in out["level_maps"]],
                             "level_weights": out["level_weights"].tolist(), "compute_ms": out["compute_ms"]})

    async def explorer_error(request: Request, exc: ExplorerError):
        return error(str(exc), exc.status)

    async def http_error(request: Request, exc: HTTPException):
        return error(exc.detail or "error", exc.status_code)

    routes = [
        Route("/", index),
        Route("/api/config", config),
        Route("/api/episodes/{index}", episode),
        Route("/api/explain", explain, methods=["POST"]),
        Route("/api/explain.bin", explain_bin, methods=["POST"]),
        Route("/api/explain.npy", explain_npy, methods=["POST"]),
        Route("/api/reverse", reverse, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=static_dir()), name="static"),
    ]
    middleware = [] if allowed_hosts is None else [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)]
    return Starlette(routes=routes, middleware=middleware,
                     exception_handlers={ExplorerError: explorer_error, HTTPException: http_error})
