"""Keep freed memory in the process on glibc (Linux), for large-batch CPU inference.

glibc serves blocks above its mmap threshold (at most 32 MB) with fresh ``mmap`` calls and unmaps them on
free, so every large activation of a batched forward pass starts as untouched pages that the kernel must
fault in and zero. On a 2-core machine this made EfficientNet-Lite0 at 96 images of 128 px about 3× slower
per image than at 6 images (most of it system time). :func:`keep_freed_memory` turns mmap allocation off
(``M_MMAP_MAX = 0``) and heap trimming off (``M_TRIM_THRESHOLD`` huge), so the heap grows to the peak once
and is reused. The cost: the process keeps its peak memory until it exits. Equivalent environment:
``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1000000000000``.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Apply the glibc settings above to this process; returns whether they took effect (False off glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(M_MMAP_MAX, 0) == 1
    # the largest int: glibc compares it as an unsigned size, so trimming never triggers
    return bool(ok and mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1)
