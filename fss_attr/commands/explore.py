"""``fss-attr explore``: a local page to explore AffEx interactively (see docs/explorer.md).

Default: LiteMatcher (ImageNet-pretrained EfficientNet-Lite0, installed offline) on controlled 5-shot episodes
(the episodes of ``fss-attr evaluate`` with the same --episodes, --shots, --size and --seed), no download.
Serves on 127.0.0.1 unless --host says otherwise.
"""
from __future__ import annotations

import sys

NAME = "explore"
HELP = "serve a local page: click the query, see the support evidence (AffEx), and the other way round"


def add_arguments(parser) -> None:
    parser.add_argument("--episodes", type=int, default=100, help="number of episodes to browse (default 100)")
    parser.add_argument("--shots", type=int, default=5, help="support images per episode (default 5)")
    parser.add_argument("--size", type=int, default=192, help="image side in pixels, 32 … 1024 (default 192)")
    parser.add_argument("--seed", type=int, default=42, help="episode seed (default 42, as fss-attr evaluate)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--backend", default="auto", help="AffEx backend: auto, literal, torch, cpu, cuda (default auto)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 exposes the page "
                             "to the network)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    parser.add_argument("--cache", type=int, default=8, help="encoded episodes kept in memory (default 8)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice). On a machine other jobs keep busy, 1 "
                             "gives steadier latency")


def _fail(message: str) -> int:
    print(f"fss-attr explore: {message}", file=sys.stderr)
    return 2


def check_args(args) -> str | None:
    """The first problem with the options, or None (checked before the model is loaded)."""
    from fss_attr import ops

    if args.episodes < 1:
        return f"--episodes must be >= 1, got {args.episodes}"
    if not 1 <= args.shots <= 64:
        return f"--shots must be in 1 … 64, got {args.shots}"
    if not 32 <= args.size <= 1024:
        return f"--size must be in 32 … 1024 (LiteMatcher's coarsest level has stride 32), got {args.size}"
    if not 0 <= args.port <= 65535:
        return f"--port must be in 0 … 65535, got {args.port}"
    if args.cache < 1:
        return f"--cache must be >= 1, got {args.cache}"
    if args.threads is not None and args.threads < 1:
        return f"--threads must be >= 1, got {args.threads}"
    if args.backend not in ops.BACKENDS + ("auto",):
        return f"--backend must be one of auto, {', '.join(ops.BACKENDS)}; got {args.backend!r}"
    try:
        import torch

        dev = torch.device(args.device)
    except (RuntimeError, ValueError) as e:
        return f"--device {args.device!r}: {e}"
    if dev.type == "cuda" and not torch.cuda.is_available():
        return "--device cuda: no CUDA device is visible"
    if args.backend != "auto" and args.backend not in ops.available_backends():
        return f"--backend {args.backend} is not available here (available: {', '.join(ops.available_backends())})"
    return None


def build_session(args):
    """The :class:`ExplorerSession` the options describe (loads LiteMatcher)."""
    from fss_attr.explore import ExplorerSession, controlled_source
    from fss_attr.models.lite_matcher import LiteMatcher

    model = LiteMatcher().to(args.device).eval()
    source = controlled_source(args.episodes, seed=args.seed, shots=args.shots, size=args.size)
    return ExplorerSession(model, source, args.episodes, backend=args.backend, device=args.device,
                           cache_size=args.cache)


def loopback(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


def run(args) -> int:
    problem = check_args(args)
    if problem:
        return _fail(problem)
    import socket

    try:
        import uvicorn

        from fss_attr.explore.server import LOOPBACK_HOSTS, create_app
    except ImportError as e:
        return _fail(f"needs starlette and uvicorn ({e}); pip install -r requirements.txt")

    try:  # bind before loading the model: a taken port fails fast with one line
        family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
        sock.listen(128)  # connections made as soon as the address is printed wait in the backlog
    except (OSError, OverflowError) as e:
        return _fail(f"cannot listen on {args.host}:{args.port}: {e}")
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    session = build_session(args)
    session.encoded(0)  # the first page load is then instant
    allowed = list(LOOPBACK_HOSTS) + [args.host] if loopback(args.host) and ":" not in args.host else None
    app = create_app(session, allowed_hosts=allowed)
    port = sock.getsockname()[1]
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"fss-attr explore: http://{shown}:{port}/  ({args.episodes} episodes, {args.shots}-shot, "
          f"{args.size} px, {type(session.adapter).__name__}; Ctrl-C stops)", flush=True)
    if not loopback(args.host):
        print("fss-attr explore: warning: the page is reachable from the network; it has no authentication",
              file=sys.stderr)
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    return 0
