"""Argument checks that raise clear Python exceptions naming the argument.

Every module of fss_attr checks its arguments with these functions (the compiled-op wrappers in
:mod:`fss_attr.ops` included), so one kind of bad input gets one message everywhere:

- numbers: :func:`check_positive_int` (ints with a minimum, and an optional maximum), :func:`check_positive`,
  :func:`check_nonnegative` (finite-or-not reals), :func:`check_choice` (one of a few names);
- tensors: :func:`check_tensor` (rank, dtype family, dtype, device, finite values), :func:`check_mask` ({0, 1}
  masks of an exact shape); the [B, Q, D] / [B, M, D] feature pair of a matching level is checked by
  :func:`fss_attr.ops.checks.check_query_support`, shared with the compiled ops and their fake kernels;
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


def check_int(name: str, value, minimum: int | None = None, maximum: int | None = None, *, odd: bool = False,
              what: str = "") -> int:
    """Check that ``value`` is an int (a Python or numpy integer, not a bool) within [minimum, maximum] (either
    bound optional; and odd, with ``odd=True``); returns it as a Python int. The one int check of fss_attr
    (:func:`check_positive_int` and the command-line :func:`option_int` call it).

    Messages: "{name} must be a positive int" (minimum 1, no maximum; "a positive odd int" with ``odd``),
    "{name} must be an int >= {minimum}", "{name} must be an int <= {maximum}" or "{name} must be an int in
    {minimum}..{maximum}", then `` ({what})`` when given, then the value given.

    Raises:
        ValueError: as above.
    """
    ok = (_is_int(value) and (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
          and (not odd or value % 2))
    if not ok:
        kind = "odd int" if odd else "int"
        if minimum is not None and maximum is not None:
            bound = f"an {kind} in {minimum}..{maximum}"
        elif minimum == 1:
            bound = f"a positive {kind}"
        elif minimum is not None:
            bound = f"an {kind} >= {minimum}"
        elif maximum is not None:
            bound = f"an {kind} <= {maximum}"
        else:
            bound = f"an {kind}"
        raise ValueError(f"{name} must be {bound}{f' ({what})' if what else ''}, got {value!r}")
    return int(value)


def check_positive_int(name: str, value, minimum: int = 1, maximum: int | None = None, *, odd: bool = False) -> int:
    """:func:`check_int` with a lower bound (default 1: "{name} must be a positive int, got ...")."""
    return check_int(name, value, minimum, maximum, odd=odd)


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


def check_level_weights(level_weights, n_levels: int, b: int, device) -> torch.Tensor:
    """Level weights [L] or [B, L] -> [B, L] float64: finite, >= 0, with a positive sum in every episode
    (the paper's ablation weights are |Δ logit| normalized to sum 1; a zero or signed sum has no meaning)."""
    try:
        w = torch.as_tensor(level_weights, dtype=torch.float64, device=device)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"level_weights must be a sequence or tensor of numbers, got {level_weights!r}") from None
    if w.dim() == 1 and w.shape[0] == n_levels:
        w = w.expand(b, n_levels)
    if tuple(w.shape) != (b, n_levels):
        raise ValueError(f"level_weights must have shape [{n_levels}] or [{b}, {n_levels}], got {tuple(w.shape)}")
    if not bool(torch.isfinite(w).all()):
        raise ValueError("level_weights contains NaN or infinite values")
    if bool((w < 0).any()):
        raise ValueError(f"level_weights must be >= 0, got a minimum of {float(w.min()):.3g}")
    zero = (w.sum(1) <= 0).nonzero().flatten().tolist()
    if zero:
        raise ValueError(f"level_weights must have a positive sum in every episode; they sum to 0 in episode(s) "
                         f"{zero}")
    return w


class OptionError(ValueError):
    """A command-line option with a value it cannot take; ``fss-attr`` prints the message as one line and exits
    with status 2 (argparse's usage-error status)."""


def option_int(minimum: int | None = None, maximum: int | None = None, what: str = ""):
    """An argparse ``type=`` for an int within [minimum, maximum]; ``what`` explains the bound in the error.

    E.g. ``parser.add_argument("--size", type=option_int(MIN_IMAGE_SIDE, what="the backbone's smallest
    input"))``: a bad value ends the command with exit status 2 and one line naming the option, before
    anything is loaded or written.
    """
    import argparse

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an int, got {text!r}") from None
        try:
            return check_int("value", value, minimum, maximum, what=what)
        except ValueError as e:   # argparse names the option itself
            raise argparse.ArgumentTypeError(str(e).removeprefix("value ")) from None

    parse.__name__ = "int"
    return parse


def option_float(minimum: float | None = None, exclusive: bool = False):
    """An argparse ``type=`` for a finite float >= minimum (> minimum when ``exclusive``)."""
    import argparse
    import math

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        if not math.isfinite(value) or (minimum is not None and (value <= minimum if exclusive else value < minimum)):
            raise argparse.ArgumentTypeError(f"must be a finite number {'>' if exclusive else '>='} {minimum}, "
                                             f"got {text}")
        return value

    parse.__name__ = "float"
    return parse


def option_list(option: str, text: str, allowed) -> tuple[str, ...]:
    """A comma-separated option value -> its names; OptionError unless it names at least one and each is in
    ``allowed``."""
    names = tuple(t.strip() for t in str(text).split(",") if t.strip())
    if not names:
        raise OptionError(f"{option} must name at least one of {', '.join(allowed)}")
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise OptionError(f"{option}: unknown {', '.join(map(repr, unknown))}; choose from {', '.join(allowed)}")
    return names


def check_output_folder(option: str, path) -> None:
    """An output folder option must not name an existing file."""
    from pathlib import Path

    if Path(path).exists() and not Path(path).is_dir():
        raise OptionError(f"{option} {path} is a file; expected a folder")
