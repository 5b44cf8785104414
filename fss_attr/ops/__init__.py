"""The core ops: public wrappers that dispatch to the compiled kernels (cpu, cuda) or to their pure-PyTorch twins.

The package, by role:

- ``fss_attr.ops`` (this module): the public wrappers :func:`backproject_scores`, :func:`backproject_features`,
  :func:`correlation`, and backend selection (:func:`available_backends`, :func:`resolve_backend`).
- :mod:`fss_attr.ops.checks`: the argument checks, shared by the wrappers, the fake kernels and the level
  classes (the C++ kernels check the same, with the same messages).
- :mod:`fss_attr.ops.registration`: the fake kernels of the compiled ops (FakeTensorMode, torch.compile).
- :mod:`fss_attr.ops.torch_twin`: the pure-PyTorch twin of every op (the ``torch`` backend).
- :mod:`fss_attr.ops.reference`: the step-by-step definition of AffEx steps 1–4 (the ``literal`` backend, the
  test oracle).

Semantics, errors, kernel versions and determinism: docs/ops.md.
"""
from __future__ import annotations

import torch

from fss_attr.ops import checks, torch_twin
from fss_attr._extension import C, has_kernel
from fss_attr.validation import check_tensor

BACKENDS = ("literal", "torch", "cpu", "cuda")


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


def _compiled_version(version, op: str, backend: str) -> int:
    """The kernel version passed to a compiled op; only 0 (auto) is meaningful for the pure-PyTorch backends."""
    if backend in ("cpu", "cuda"):
        return checks.check_version(version, op, backend)
    if version != 0:
        raise checks.OpArgumentError(f"version selects a compiled kernel; backend {backend!r} has none, "
                                     f"so version must be 0, got {version!r}")
    return 0


def backproject_scores(scores: torch.Tensor, weights: torch.Tensor, softmax: bool = True, top_k: int = 0,
                       backend: str = "auto", *, check_finite: bool = True, version: int = 0) -> torch.Tensor:
    """Column sums of the row-normalised scores (docs/ops.md, ``backproject_scores``).

    Args:
        scores: [B, Q, M] float32/float64/float16/bfloat16 scores, any strides.
        weights: [B, 2, Q] floating row weights (converted to the accumulation dtype).
        softmax: normalise each row by a softmax over its kept entries.
        top_k: keep each row's entries >= its k-th largest (0: off).
        backend: "auto", "torch", "cpu" or "cuda" ("literal" computes as "torch").
        check_finite: scan the scores for NaN/infinity (the kernels assume finite inputs); False for callers that
            checked already, such as LevelScores.
        version: the compiled kernel's version (0: the kernel chooses; docs/ops.md, "Kernel versions").

    Returns:
        [B, 2, M] in the accumulation dtype (float64 for float64 scores, else float32). Not
        differentiable: inputs that require grad are read as constants (the result never requires grad), the
        same on every backend.

    Raises:
        OpArgumentError (a ValueError): bad rank, shape, top_k, version or non-finite values;
        OpDtypeError (a TypeError): non-floating scores or weights.
    """
    checks.check_scores_args(scores, weights, top_k, strict_weights=False)
    check_tensor("scores", scores, finite=check_finite)
    check_tensor("weights", weights, finite=True)
    weights = weights.to(torch_twin.acc_dtype(scores.dtype))
    backend = resolve_backend(backend, scores.device)
    version = _compiled_version(version, "backproject_scores", backend)
    scores, weights = scores.detach(), weights.detach()      # the kernels write with out=: no graph to build
    if backend in ("cpu", "cuda"):
        return torch.ops.fss_attr.backproject_scores(scores, weights, bool(softmax), top_k, version)
    return torch_twin.backproject_scores(scores, weights, bool(softmax), top_k)


def backproject_features(query: torch.Tensor, support: torch.Tensor, weights: torch.Tensor,
                         similarity: str = "dot", scale: float = 1.0, relu: bool = False, softmax: bool = True,
                         top_k: int = 0, backend: str = "auto", *, check_finite: bool = True,
                         version: int = 0) -> torch.Tensor:
    """Column sums of the scores sim(query, support) after the row rules (docs/ops.md, ``backproject_features``).

    Args:
        query: [B, Q, D] floating features, any strides; support: [B, M, D], same dtype and device.
        weights: [B, 2, Q] floating row weights.
        similarity: "dot" (scale·q·k) or "cosine" (scale·cos(q, k)); relu clamps the scores at 0.
        softmax, top_k, backend, check_finite, version: as in :func:`backproject_scores`.

    Returns:
        [B, 2, M] in the accumulation dtype. Not differentiable: inputs that require grad are read as
        constants, the same on every backend.

    Raises:
        OpArgumentError / OpDtypeError as in :func:`backproject_scores`; also for B or D that differ and an
        unknown similarity.
    """
    checks.check_features_args(query, support, weights, similarity, top_k, strict_weights=False)
    check_tensor("query", query, finite=check_finite)
    check_tensor("support", support, finite=check_finite)
    check_tensor("weights", weights, finite=True)
    weights = weights.to(torch_twin.acc_dtype(query.dtype))
    backend = resolve_backend(backend, query.device)
    version = _compiled_version(version, "backproject_features", backend)
    query, support, weights = query.detach(), support.detach(), weights.detach()
    if backend in ("cpu", "cuda"):
        return torch.ops.fss_attr.backproject_features(query, support, weights, similarity, float(scale), bool(relu),
                                                       bool(softmax), top_k, version)
    return torch_twin.backproject_features(query, support, weights, similarity, float(scale), bool(relu),
                                          bool(softmax), top_k)


def correlation(query: torch.Tensor, support: torch.Tensor, similarity: str = "cosine", relu: bool = False,
                top_k: int = 0, backend: str = "auto") -> torch.Tensor:
    """Dense 4D correlation [B, Hq, Wq, N, Hs, Ws] of query [B, C, Hq, Wq] and support [B, N, C, Hs, Ws].

    Same floating dtype for both inputs, any strides; the result has that dtype. Differentiable on every backend
    (autograd through ATen operations; the top-k selection is a constant mask). docs/ops.md, ``correlation``.
    An empty input (B = 0 or C = 0) gives the twin's result on every backend: an empty tensor, or zeros when
    only C is 0.

    Raises:
        OpArgumentError (a ValueError) / OpDtypeError (a TypeError), as the compiled op does.
    """
    checks.check_correlation_args(query, support, similarity, top_k)
    check_tensor("query", query, finite=True)
    check_tensor("support", support, finite=True)
    backend = resolve_backend(backend, query.device)
    if backend in ("cpu", "cuda") and query.numel() and support.numel():
        return torch.ops.fss_attr.correlation(query, support, similarity, bool(relu), top_k)
    return torch_twin.correlation(query, support, similarity, bool(relu), top_k)


if C is not None:
    from fss_attr.ops import registration

    registration.register()
