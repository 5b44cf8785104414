"""Argument checks of the ops, shared by the public wrappers, the fake kernels and the level classes.

One bad input gives one error wherever it enters: through a wrapper (:mod:`fss_attr.ops`), through the raw op
(``torch.ops.fss_attr.*``, checked in C++ by csrc/common.h with the same text), or while tracing
(FakeTensorMode, torch.compile: the fake kernels of :mod:`fss_attr.ops.registration` call these functions). The
messages here and in csrc/common.h are written to be identical; keep them in step.

Error types: a bad shape or value raises :class:`OpArgumentError`, a bad dtype :class:`OpDtypeError`. Both are
``RuntimeError`` subclasses, the type the raw op raises (c10::Error), and ``ValueError`` / ``TypeError``
subclasses, the types a Python caller expects. Under torch.compile the error arrives wrapped in Dynamo's own
``RuntimeError`` subclass, with this message inside.

The conditions go through ``torch._check_with``, so they work with symbolic sizes while tracing.
"""
from __future__ import annotations

import torch

__all__ = ["OpArgumentError", "OpDtypeError", "FLOATING", "KERNEL_VERSIONS", "check_query_support",
           "check_scores_args", "check_features_args", "check_correlation_args", "check_top_k", "check_similarity",
           "check_weights", "check_version"]

FLOATING = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
SIMILARITIES = ("dot", "cosine")

# The last kernel version of each compiled op per device type (csrc/cpu, csrc/cuda; docs/ops.md "Kernel versions").
KERNEL_VERSIONS = {
    ("backproject_scores", "cpu"): 2,
    ("backproject_scores", "cuda"): 3,
    ("backproject_features", "cpu"): 2,
    ("backproject_features", "cuda"): 3,
}

# How c10 prints a ScalarType, so the messages match the C++ ones character for character.
_C10_NAMES = {torch.float32: "Float", torch.float64: "Double", torch.float16: "Half", torch.bfloat16: "BFloat16",
              torch.int64: "Long", torch.int32: "Int", torch.int16: "Short", torch.int8: "Char", torch.uint8: "Byte",
              torch.bool: "Bool", torch.complex64: "ComplexFloat", torch.complex128: "ComplexDouble"}


class OpArgumentError(ValueError, RuntimeError):
    """A compiled op's argument has the wrong shape or value (a ValueError and a RuntimeError)."""


class OpDtypeError(TypeError, RuntimeError):
    """A compiled op's argument has the wrong dtype (a TypeError and a RuntimeError)."""


def _dtype_name(dtype: torch.dtype) -> str:
    return _C10_NAMES.get(dtype, str(dtype))


def _shape(x: torch.Tensor) -> str:
    return str(list(x.shape))


def _is_tensor(name: str, x) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")


def _check_rank(x: torch.Tensor, rank: int, name: str, layout: str) -> None:
    _is_tensor(name, x)
    torch._check_with(OpArgumentError, x.dim() == rank,
                      lambda: f"{name} must be {layout} ({rank} dimensions), got shape {_shape(x)}")


def _check_floating(x: torch.Tensor, name: str) -> None:
    torch._check_with(OpDtypeError, x.dtype in FLOATING,
                      lambda: f"{name} must be float32, float64, float16 or bfloat16, got {_dtype_name(x.dtype)}")


def _check_same_dtype(support: torch.Tensor, query: torch.Tensor) -> None:
    torch._check_with(OpDtypeError, support.dtype == query.dtype,
                      lambda: f"support must have the dtype of query ({_dtype_name(query.dtype)}), "
                              f"got {_dtype_name(support.dtype)}")


def _check_same_device(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    torch._check_with(OpArgumentError, a.device == b.device,
                      lambda: f"{name_a} and {name_b} must be on the same device, got {a.device} and {b.device}")


def check_top_k(top_k) -> int:
    """top_k: an int >= 0 (0 turns top-k off)."""
    ok = isinstance(top_k, int) and not isinstance(top_k, bool) and top_k >= 0
    torch._check_with(OpArgumentError, ok, lambda: f"top_k must be an int >= 0 (0 turns top-k off), got {top_k!r}")
    return top_k


def check_similarity(similarity) -> str:
    """similarity: "dot" or "cosine"."""
    torch._check_with(OpArgumentError, similarity in SIMILARITIES,
                      lambda: f"similarity must be 'dot' or 'cosine', got '{similarity}'")
    return similarity


def check_query_support(query: torch.Tensor, support: torch.Tensor) -> None:
    """query [B, Q, D] and support [B, M, D]: floating, one dtype, one device, the same B and D.

    The one Python check of a features pair: :func:`fss_attr.ops.backproject_features`, its fake kernel and
    :class:`fss_attr.affex.levels.LevelFeatures` call it (the C++ op checks the same, in the same order).

    Raises:
        TypeError: not a tensor; OpDtypeError (a TypeError): not floating, or dtypes differ;
        OpArgumentError (a ValueError): wrong rank, devices differ, B or D differ.
    """
    _check_rank(query, 3, "query", "[B, Q, D]")
    _check_rank(support, 3, "support", "[B, M, D]")
    _check_floating(query, "query")
    _check_same_dtype(support, query)
    _check_same_device(query, support, "query", "support")

    rule = "support [B, M, D] must match query [B, Q, D] in B and D"
    torch._check_with(OpArgumentError, support.shape[0] == query.shape[0],
                      lambda: f"support has batch size {support.shape[0]}, query has {query.shape[0]}: {rule}")
    torch._check_with(OpArgumentError, support.shape[2] == query.shape[2],
                      lambda: f"support has feature size D={support.shape[2]}, query has D={query.shape[2]}: {rule}")


def check_weights(weights: torch.Tensor, b, q, ref: torch.Tensor, acc: torch.dtype | None) -> None:
    """weights [B, 2, Q] on ref's device; of dtype ``acc`` unless ``acc`` is None (the wrappers convert)."""
    _check_rank(weights, 3, "weights", "[B, 2, Q]")

    def message():
        return f"weights must have shape [{b}, 2, {q}], got {_shape(weights)}"

    torch._check_with(OpArgumentError, weights.shape[0] == b, message)
    torch._check_with(OpArgumentError, weights.shape[1] == 2, message)
    torch._check_with(OpArgumentError, weights.shape[2] == q, message)
    if acc is None:
        _check_floating(weights, "weights")
    else:
        torch._check_with(OpDtypeError, weights.dtype == acc,
                          lambda: f"weights must have dtype {_dtype_name(acc)} (the accumulation dtype), "
                                  f"got {_dtype_name(weights.dtype)}")
    _check_same_device(weights, ref, "weights", "scores/query")


def check_version(version, op: str, device_type: str) -> int:
    """The kernel-version argument of a compiled op: 0 (auto) or 1..last for ``device_type`` ("cpu", "cuda")."""
    last = KERNEL_VERSIONS.get((op, device_type))
    ok = (isinstance(version, int) and not isinstance(version, bool) and last is not None
          and 0 <= version <= last)
    torch._check_with(OpArgumentError, ok,
                      lambda: f"version must be 0 (auto) or 1..{last} for {op} on {device_type.upper()}, "
                              f"got {version!r}")
    return version


def _acc(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def check_scores_args(scores: torch.Tensor, weights: torch.Tensor, top_k, *, strict_weights: bool) -> None:
    """The arguments of backproject_scores, in the order csrc/common.h checks them.

    ``strict_weights``: the weights must already be of the accumulation dtype (the raw op); the wrappers pass
    False and convert them.
    """
    _check_rank(scores, 3, "scores", "[B, Q, M]")
    _check_floating(scores, "scores")
    check_top_k(top_k)
    check_weights(weights, scores.shape[0], scores.shape[1], scores,
                  _acc(scores.dtype) if strict_weights else None)


def check_features_args(query: torch.Tensor, support: torch.Tensor, weights: torch.Tensor, similarity, top_k, *,
                        strict_weights: bool) -> None:
    """The arguments of backproject_features, in the order csrc/common.h checks them."""
    check_query_support(query, support)
    check_similarity(similarity)
    check_top_k(top_k)
    check_weights(weights, query.shape[0], query.shape[1], query, _acc(query.dtype) if strict_weights else None)


def check_correlation_args(query: torch.Tensor, support: torch.Tensor, similarity, top_k) -> None:
    """query [B, C, Hq, Wq] and support [B, N, C, Hs, Ws], as csrc/correlation.cpp checks them."""
    _check_rank(query, 4, "query", "[B, C, Hq, Wq]")
    _check_rank(support, 5, "support", "[B, N, C, Hs, Ws]")
    _check_floating(query, "query")
    _check_same_dtype(support, query)
    _check_same_device(query, support, "query", "support")

    def message():
        return (f"support [B, N, C, Hs, Ws] must match query [B, C, Hq, Wq] in B and C: got query {_shape(query)}, "
                f"support {_shape(support)}")

    torch._check_with(OpArgumentError, support.shape[0] == query.shape[0], message)
    torch._check_with(OpArgumentError, support.shape[2] == query.shape[1], message)
    check_similarity(similarity)
    check_top_k(top_k)
