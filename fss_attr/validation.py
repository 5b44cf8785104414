"""Argument checks that raise clear Python exceptions naming the argument."""
from __future__ import annotations

import torch

FLOATING = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


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


def check_grid(name: str, hw) -> tuple[int, int]:
    """Check a (height, width) pair of positive ints."""
    try:
        h, w = hw
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (height, width) pair, got {hw!r}") from None
    for v in (h, w):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must hold two positive ints, got {hw!r}")
    return h, w


def check_top_k(top_k) -> int:
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise ValueError(f"top_k must be an int >= 0 (0 turns top-k off), got {top_k!r}")
    return top_k


def check_mask(name: str, x, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """A {0,1} mask of exactly ``shape`` (bool, or any dtype holding only 0 and 1) -> bool tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if tuple(x.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(x.shape)}")
    if x.device != device:
        raise ValueError(f"{name} must be on {device} (like the levels), got {x.device}")
    if x.dtype != torch.bool:
        if x.is_floating_point() and not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} contains NaN or infinite values")
        if not bool(((x == 0) | (x == 1)).all()):
            raise ValueError(f"{name} must be binary (0/1 or bool)")
        x = x != 0
    return x


def check_int(name: str, value, minimum: int | None = None, maximum: int | None = None) -> int:
    """An int (not a bool) within [minimum, maximum] (either bound optional); returns it.

    Raises:
        ValueError: naming ``name``, the value and the allowed range.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        lo = "" if minimum is None else f">= {minimum}"
        hi = "" if maximum is None else f"<= {maximum}"
        raise ValueError(f"{name} must be {' and '.join(x for x in (lo, hi) if x)}, got {value!r}")
    return value
