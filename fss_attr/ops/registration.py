"""Python-side registration of the compiled ops: fake kernels (torchvision's pattern).

Run once when the extension is loaded (:mod:`fss_attr.ops` calls :func:`register`). The fake kernels give
``torch.ops.fss_attr.backproject_scores`` and ``backproject_features`` their output shapes and dtypes under
FakeTensorMode and torch.compile, and check their arguments with the functions the wrappers use
(:mod:`fss_attr.ops.checks`), so a bad input raises the same error while tracing as in eager mode.

``correlation`` needs nothing here: it is one CompositeImplicitAutograd C++ kernel made of ATen operations
(csrc/correlation.cpp), which tracing and autograd see through.
"""
from __future__ import annotations

import torch

from fss_attr.ops import checks
from fss_attr.ops.torch_twin import acc_dtype

_registered = False


def register() -> None:
    """Register the fake kernels (idempotent)."""
    global _registered
    if _registered:
        return

    @torch.library.register_fake("fss_attr::backproject_scores")
    def _(scores, weights, softmax, top_k, version=0):
        checks.check_scores_args(scores, weights, top_k, strict_weights=True)
        checks.check_version(version, "backproject_scores", scores.device.type)
        return scores.new_empty((scores.shape[0], 2, scores.shape[2]), dtype=acc_dtype(scores.dtype))

    @torch.library.register_fake("fss_attr::backproject_features")
    def _(query, support, weights, similarity, scale, relu, softmax, top_k, version=0):
        checks.check_features_args(query, support, weights, similarity, top_k, strict_weights=True)
        checks.check_version(version, "backproject_features", query.device.type)
        return query.new_empty((query.shape[0], 2, support.shape[1]), dtype=acc_dtype(query.dtype))

    _registered = True
