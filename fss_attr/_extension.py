"""Loads the compiled extension ``fss_attr._C`` if it is there, and says once when it is not.

Everything in fss_attr works without the extension, on the pure-PyTorch backends
("literal" and "torch"); ``FSS_ATTR_DISABLE_EXTENSION=1`` forces that. Importing ``_C``
registers the ``torch.ops.fss_attr.*`` kernels (CPU, and CUDA when it was built with CUDA).
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import warnings

import torch  # noqa: F401  (the extension links against torch's libraries)

__all__ = ["C", "EXTENSION_ERROR", "has_kernel", "build_info"]


class ExtensionMissingWarning(UserWarning):
    """The compiled extension could not be loaded; fss_attr runs on pure PyTorch."""


def _load():
    if os.environ.get("FSS_ATTR_DISABLE_EXTENSION") == "1":
        return None, "disabled by FSS_ATTR_DISABLE_EXTENSION=1"
    if importlib.util.find_spec("fss_attr._C") is None:
        return None, "not built"
    try:
        return importlib.import_module("fss_attr._C"), None
    except Exception as exc:  # ImportError, or an OSError from a torch it was not built against
        return None, f"{type(exc).__name__}: {exc}"


C, EXTENSION_ERROR = _load()
if C is None:
    warnings.warn(
        "fss_attr: the compiled extension fss_attr._C is not available "
        f"({EXTENSION_ERROR}); using the pure-PyTorch backends. "
        "Build it with `pip install --no-build-isolation -e .`.",
        ExtensionMissingWarning,
        stacklevel=2,
    )


def has_kernel(op: str, dispatch_key: str) -> bool:
    """True when ``torch.ops.fss_attr.<op>`` has a kernel for ``dispatch_key`` ("CPU", "CUDA")."""
    if C is None:
        return False
    try:
        return bool(torch._C._dispatch_has_kernel_for_dispatch_key(f"fss_attr::{op}", dispatch_key))
    except RuntimeError:
        return False


def build_info() -> dict:
    """How ``_C`` was built (torch and CUDA versions, arch list, compiler); empty without it."""
    if C is None:
        return {}
    return dict(C.build_info())
