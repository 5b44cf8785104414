"""The core ops, dispatched to the compiled kernels (cpu, cuda) or their pure-PyTorch twins (torch).

Semantics are in docs/ops.md. When the extension is loaded, this module also
registers fake (meta) kernels, so the ops trace under torch.compile, and the
autograd formula of ``correlation``.
"""
from __future__ import annotations

import torch

from fss_attr.ops import torch_twin
from fss_attr._extension import C, has_kernel
from fss_attr.validation import check_tensor, check_top_k

BACKENDS = ("literal", "torch", "cpu", "cuda")
_SIMILARITIES = ("dot", "cosine")


def available_backends() -> list[str]:
    """The backends that run here: always "literal" and "torch"; "cpu" and "cuda" when the kernels are built
    (and, for "cuda", a GPU is visible)."""
    names = ["literal", "torch"]
    if has_kernel("backproject_scores", "CPU"):
        names.append("cpu")
    if has_kernel("backproject_scores", "CUDA") and torch.cuda.is_available():
        names.append("cuda")
    return names


def resolve_backend(backend: str, device: torch.device) -> str:
    """Turn "auto" into the fastest backend for ``device``; check an explicit choice can run there."""
    if backend not in BACKENDS + ("auto",):
        raise ValueError(f"backend must be one of {('auto',) + BACKENDS}, got {backend!r}")
    available = available_backends()
    if backend == "auto":
        native = "cuda" if device.type == "cuda" else "cpu" if device.type == "cpu" else None
        return native if native in available else "torch"
    if backend not in available:
        raise RuntimeError(f"backend {backend!r} is not available here (available: {available}); "
                           "see `python -m fss_attr.info`")
    if backend in ("cpu", "cuda") and device.type != backend:
        raise ValueError(f"backend {backend!r} needs tensors on {backend}, got tensors on {device}")
    return backend


def _check_weights(weights, b, q, device, acc):
    check_tensor("weights", weights, ndim=3, floating=True, finite=True, device=device)
    if tuple(weights.shape) != (b, 2, q):
        raise ValueError(f"weights must have shape {(b, 2, q)}, got {tuple(weights.shape)}")
    return weights.to(acc).contiguous()


def backproject_scores(scores: torch.Tensor, weights: torch.Tensor, softmax: bool = True, top_k: int = 0,
                       backend: str = "auto", *, check_finite: bool = True) -> torch.Tensor:
    """Column sums [B, 2, M] of the row-normalised scores; scores [B, Q, M], weights [B, 2, Q] (docs/ops.md).

    ``check_finite=False`` skips the NaN/infinity scan of the scores (for callers that checked already,
    such as LevelScores); the kernels assume finite inputs. Not differentiable: inputs that require grad are
    read as constants (the result never requires grad), the same on every backend.
    """
    check_tensor("scores", scores, ndim=3, floating=True, finite=check_finite)
    top_k = check_top_k(top_k)
    b, q, _ = scores.shape
    acc = torch_twin.acc_dtype(scores.dtype)
    weights = _check_weights(weights, b, q, scores.device, acc)
    backend = resolve_backend(backend, scores.device)
    scores, weights = scores.detach(), weights.detach()      # the kernels write with out=: no graph to build
    if backend in ("cpu", "cuda"):
        return torch.ops.fss_attr.backproject_scores(scores.contiguous(), weights, bool(softmax), top_k)
    return torch_twin.backproject_scores(scores, weights, bool(softmax), top_k)


def backproject_features(query: torch.Tensor, support: torch.Tensor, weights: torch.Tensor,
                         similarity: str = "dot", scale: float = 1.0, relu: bool = False, softmax: bool = True,
                         top_k: int = 0, backend: str = "auto", *, check_finite: bool = True) -> torch.Tensor:
    """Column sums [B, 2, M] of the scores sim(query [B, Q, D], support [B, M, D]) (docs/ops.md).

    Not differentiable: inputs that require grad are read as constants, the same on every backend.
    """
    check_tensor("query", query, ndim=3, floating=True, finite=check_finite)
    check_tensor("support", support, ndim=3, floating=True, finite=check_finite, dtype=query.dtype,
                 device=query.device)
    if support.shape[0] != query.shape[0] or support.shape[2] != query.shape[2]:
        raise ValueError(f"support [B, M, D] must match query [B, Q, D] in B and D: "
                         f"got query {tuple(query.shape)}, support {tuple(support.shape)}")
    if similarity not in _SIMILARITIES:
        raise ValueError(f"similarity must be one of {_SIMILARITIES}, got {similarity!r}")
    top_k = check_top_k(top_k)
    acc = torch_twin.acc_dtype(query.dtype)
    weights = _check_weights(weights, query.shape[0], query.shape[1], query.device, acc)
    backend = resolve_backend(backend, query.device)
    query, support, weights = query.detach(), support.detach(), weights.detach()
    if backend in ("cpu", "cuda"):
        return torch.ops.fss_attr.backproject_features(query.contiguous(), support.contiguous(), weights,
                                                       similarity, float(scale), bool(relu), bool(softmax), top_k)
    return torch_twin.backproject_features(query, support, weights, similarity, float(scale), bool(relu),
                                          bool(softmax), top_k)


def correlation(query: torch.Tensor, support: torch.Tensor, similarity: str = "cosine", relu: bool = False,
                top_k: int = 0, backend: str = "auto") -> torch.Tensor:
    """Dense 4D correlation [B, Hq, Wq, N, Hs, Ws] of query [B, C, Hq, Wq] and support [B, N, C, Hs, Ws].

    Differentiable on every backend (the top-k selection is treated as constant). An empty input (B = 0 or
    C = 0) gives the twin's result on every backend: an empty tensor, or zeros when only C is 0.
    """
    check_tensor("query", query, ndim=4, floating=True, finite=True)
    check_tensor("support", support, ndim=5, floating=True, finite=True, dtype=query.dtype, device=query.device)
    if support.shape[0] != query.shape[0] or support.shape[2] != query.shape[1]:
        raise ValueError(f"support [B, N, C, Hs, Ws] must match query [B, C, Hq, Wq] in B and C: "
                         f"got query {tuple(query.shape)}, support {tuple(support.shape)}")
    if similarity not in _SIMILARITIES:
        raise ValueError(f"similarity must be one of {_SIMILARITIES}, got {similarity!r}")
    top_k = check_top_k(top_k)
    backend = resolve_backend(backend, query.device)
    if backend in ("cpu", "cuda") and query.numel() and support.numel():
        return torch.ops.fss_attr.correlation(query.contiguous(), support.contiguous(), similarity, bool(relu), top_k)
    return torch_twin.correlation(query, support, similarity, bool(relu), top_k)


def _register_python_side():
    """Fake kernels and autograd for the compiled ops (torchvision's pattern)."""

    @torch.library.register_fake("fss_attr::backproject_scores")
    def _(scores, weights, softmax, top_k):
        return scores.new_empty((scores.shape[0], 2, scores.shape[2]), dtype=torch_twin.acc_dtype(scores.dtype))

    @torch.library.register_fake("fss_attr::backproject_features")
    def _(query, support, weights, similarity, scale, relu, softmax, top_k):
        return query.new_empty((query.shape[0], 2, support.shape[1]), dtype=torch_twin.acc_dtype(query.dtype))

    @torch.library.register_fake("fss_attr::correlation")
    def _(query, support, similarity, relu, top_k):
        b, _, hq, wq = query.shape
        return query.new_empty((b, hq, wq, support.shape[1], support.shape[3], support.shape[4]))

    @torch.library.register_fake("fss_attr::correlation_backward")
    def _(grad, query, support, similarity, relu, top_k):
        return torch.empty_like(query), torch.empty_like(support)

    def setup_context(ctx, inputs, output):
        query, support, similarity, relu, top_k = inputs
        ctx.save_for_backward(query, support)
        ctx.options = (similarity, relu, top_k)

    def backward(ctx, grad):
        query, support = ctx.saved_tensors
        gq, gs = torch.ops.fss_attr.correlation_backward(grad.contiguous(), query, support, *ctx.options)
        return gq, gs, None, None, None

    torch.library.register_autograd("fss_attr::correlation", backward, setup_context=setup_context)


if C is not None:
    _register_python_side()
