"""Argument checks that raise clear Python exceptions naming the argument.

Every module of fss_attr checks its arguments with these functions (the compiled-op wrappers in
:mod:`fss_attr.ops` included), so one kind of bad input gets one message everywhere:

- numbers: :func:`check_positive_int` (ints with a minimum, and an optional maximum), :func:`check_positive`,
  :func:`check_nonnegative` (finite-or-not reals), :func:`check_choice` (one of a few names);
- tensors: :func:`check_tensor` (rank, dtype family, dtype, device, finite values), :func:`check_mask` ({0, 1}
  masks of an exact shape), :func:`check_query_support` (the [B, Q, D] / [B, M, D] feature pair of a matching
  level and of the back-projection op);
- shapes and options: :func:`check_grid` ((height, width) pairs), :func:`check_top_k`, :func:`check_blur` (the
  Gaussian of AffEx's masked and signed variants).
"""
from __future__ import annotations

import math
from numbers import Integral

import torch

FLOATING = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _is_int(value) -> bool:
    """A Python or numpy integer that is not a bool (every int check of the package goes through here)."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def check_positive_int(name: str, value, minimum: int = 1, maximum: int | None = None, *, odd: bool = False) -> int:
    """Check that ``value`` is an int (a Python or numpy integer, not a bool) with ``minimum <= value`` (and
    ``value <= maximum``; and odd, with ``odd=True``); returns it as a Python int.

    Messages: "{name} must be a positive int" (minimum 1, no maximum; "a positive odd int" with ``odd``),
    "{name} must be an int >= {minimum}", or "{name} must be an int in {minimum}..{maximum}", each followed by
    the value given.
    """
    ok = _is_int(value) and value >= minimum and (maximum is None or value <= maximum) and (not odd or value % 2)
    if not ok:
        kind = "odd int" if odd else "int"
        if maximum is not None:
            what = f"an {kind} in {minimum}..{maximum}"
        else:
            what = f"a positive {kind}" if minimum == 1 else f"an {kind} >= {minimum}"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(value)


def _real(name: str, value) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None


def check_positive(name: str, value) -> float:
    """Check that ``value`` is a real number > 0 (NaN is not); returns it as a float."""
    v = _real(name, value)
    if not v > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return v


def check_nonnegative(name: str, value) -> float:
    """Check that ``value`` is a real number >= 0 (NaN is not); returns it as a float."""
    v = _real(name, value)
    if not v >= 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return v


def check_finite_number(name: str, value) -> float:
    """Check that ``value`` is a finite real number (an int or a float, not a bool); returns it as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def check_choice(name: str, value, choices):
    """Check that ``value`` is one of ``choices``: "{name} must be one of {choices}, got {value!r}"."""
    choices = tuple(choices)
    try:
        ok = value in choices
    except TypeError:               # an unhashable or incomparable value
        ok = False
    if not ok:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_tensor(name: str, x, *, ndim: int | None = None, floating: bool = False, finite: bool = False,
                 dtype: torch.dtype | None = None, device: torch.device | None = None) -> torch.Tensor:
    """Check that ``x`` is a tensor of the given rank, dtype family, dtype, device, and finite values."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if ndim is not None and x.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(x.shape)}")
    if floating and x.dtype not in FLOATING:
        raise TypeError(f"{name} must be float32, float64, float16 or bfloat16, got {x.dtype}")
    if dtype is not None and x.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype}, got {x.dtype}")
    if device is not None and x.device != device:
        raise ValueError(f"{name} must be on {device}, got {x.device}")
    if finite and x.numel() and not all_finite(x):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def all_finite(x: torch.Tensor) -> bool:
    """True when x holds no NaN or infinity. Fast path: a finite sum implies finite entries; only when the
    sum is not finite (a NaN or infinity, or an overflow of the sum) are the entries checked one by one."""
    if not x.is_floating_point():
        return True
    if bool(torch.isfinite(x.sum())):
        return True
    return bool(torch.isfinite(x).all())


def check_query_support(query, support, *, finite: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Check a matching's feature pair: query [B, Q, D] and support [B, M, D] floating tensors of one dtype and
    device, with the same batch size B and feature size D (and finite values unless ``finite=False``)."""
    check_tensor("query", query, ndim=3, floating=True, finite=finite)
    check_tensor("support", support, ndim=3, floating=True, finite=finite, dtype=query.dtype, device=query.device)
    if support.shape[0] != query.shape[0] or support.shape[2] != query.shape[2]:
        raise ValueError(f"support must match query in batch size B and feature size D: got query "
                         f"[B={query.shape[0]}, Q={query.shape[1]}, D={query.shape[2]}], support "
                         f"[B={support.shape[0]}, M={support.shape[1]}, D={support.shape[2]}]")
    return query, support


def check_grid(name: str, hw) -> tuple[int, int]:
    """Check a (height, width) pair of positive ints."""
    try:
        h, w = hw
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (height, width) pair, got {hw!r}") from None
    for v in (h, w):
        if not _is_int(v) or v < 1:
            raise ValueError(f"{name} must hold two positive ints, got {hw!r}")
    return int(h), int(w)


def check_top_k(top_k) -> int:
    if not _is_int(top_k) or top_k < 0:
        raise ValueError(f"top_k must be an int >= 0 (0 turns top-k off), got {top_k!r}")
    return int(top_k)


def check_blur(kernel_size, sigma, size: tuple[int, int] | None = None) -> tuple[int, float]:
    """Check the Gaussian blur of the support masks: ``blur_kernel`` a positive odd int, ``blur_sigma`` > 0, and,
    when the masks' (H, W) ``size`` is given, H and W larger than kernel_size // 2 (reflect padding needs it)."""
    kernel_size = check_positive_int("blur_kernel", kernel_size, odd=True)
    sigma = check_positive("blur_sigma", sigma)
    if size is not None:
        h, w = size
        pad = kernel_size // 2
        if pad >= h or pad >= w:
            raise ValueError(f"blur_kernel={kernel_size} needs support masks larger than {pad}x{pad} "
                             f"for reflect padding, got {h}x{w}; choose a smaller blur_kernel")
    return kernel_size, sigma


def check_mask(name: str, x, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """A {0,1} mask of exactly ``shape`` (bool, or any dtype holding only 0 and 1) -> bool tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if tuple(x.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(x.shape)}")
    if x.device != device:
        raise ValueError(f"{name} must be on {device}, got {x.device}")
    if x.dtype != torch.bool:
        if x.is_floating_point() and not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} contains NaN or infinite values")
        if not bool(((x == 0) | (x == 1)).all()):
            raise ValueError(f"{name} must be binary (0/1 or bool)")
        x = x != 0
    return x
