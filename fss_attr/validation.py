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


def check_level_weights(level_weights, n_levels: int, b: int, device) -> torch.Tensor:
    """Level weights [L] or [B, L] -> [B, L] float64: finite, >= 0, with a positive sum in every episode
    (the paper's ablation weights are |Δ logit| normalised to sum 1; a zero or signed sum has no meaning)."""
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
            return check_int("value", value, minimum, maximum, what)
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


def check_int(name: str, value, minimum: int | None = None, maximum: int | None = None, what: str = "") -> int:
    """An int (not a bool) within [minimum, maximum] (either bound optional); returns it. ``what`` explains the
    bound in the message (e.g. "the backbone's smallest input").

    Raises:
        ValueError: "<name> must be an int >= 1, got 0" (or "<= M", "in m..M"), naming ``name`` and the value.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bound = (f">= {minimum}" if maximum is None else f"<= {maximum}" if minimum is None
                 else f"in {minimum}..{maximum}")
        raise ValueError(f"{name} must be an int {bound}{f' ({what})' if what else ''}, got {value!r}")
    return value
