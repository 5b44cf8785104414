"""Per-episode scores of a model's output: foreground IoU against the query ground truth, foreground
confidence over a query region R, and the mean foreground logit over R (the baselines' target). All return
float64 [B]."""
from __future__ import annotations

import torch

from fss_attr.validation import check_mask, check_tensor


def _check_logits(logits: torch.Tensor) -> torch.Tensor:
    check_tensor("logits", logits, ndim=4, floating=True, finite=True)
    if logits.shape[1] != 2:
        raise ValueError(f"logits must be [B, 2, H, W] (background, foreground), got {tuple(logits.shape)}")
    return logits


def foreground_iou(logits: torch.Tensor, query_mask: torch.Tensor) -> torch.Tensor:
    """Foreground IoU of the prediction against the query ground truth, per episode.

    The prediction is ``logits.argmax(1) == 1`` (a tie counts as background, as ``argmax`` picks the first).
    IoU = |pred ∧ gt| / |pred ∨ gt|, and 1 when the union is empty (nothing predicted, nothing to find).
    A "mIoU" over a data set is the mean of these per-episode values.

    Args:
        logits: [B, 2, H, W] floating (background, foreground).
        query_mask: [B, H, W] bool (or 0/1) ground truth.

    Returns:
        [B] float64.
    """
    _check_logits(logits)
    b, _, h, w = logits.shape
    gt = check_mask("query_mask", query_mask, (b, h, w), logits.device)
    pred = logits.argmax(1) == 1
    inter = (pred & gt).flatten(1).sum(1).to(torch.float64)
    union = (pred | gt).flatten(1).sum(1).to(torch.float64)
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def foreground_confidence(logits: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Mean softmax foreground probability over the query region R, per episode.

    Args:
        logits: [B, 2, H, W] floating (background, foreground).
        region: [B, H, W] bool (or 0/1) query region R, non-empty in every episode.

    Returns:
        [B] float64: mean over p ∈ R of softmax(logits)[:, 1, p], computed in float64.
    """
    _check_logits(logits)
    r, size = _check_region(logits, region)
    fg = torch.softmax(logits.to(torch.float64), dim=1)[:, 1]
    return (fg * r).flatten(1).sum(1) / size.to(torch.float64)


def _check_region(logits: torch.Tensor, region: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """region [B, H, W] as bool, non-empty in every episode, and its pixel counts [B]."""
    b, _, h, w = logits.shape
    r = check_mask("region", region, (b, h, w), logits.device)
    size = r.flatten(1).sum(1)
    empty = (size == 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"region is empty in episode(s) {empty}: the score averages over R")
    return r, size


def foreground_logit(logits: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Mean foreground logit over the query region R, per episode: the target the baseline explainers
    attribute (as the AffEx paper's code does).

    Args:
        logits: [B, 2, H, W] floating (background, foreground).
        region: [B, H, W] bool (or 0/1) query region R, non-empty in every episode.

    Returns:
        [B] float64: mean over p ∈ R of logits[:, 1, p], computed in float64.
    """
    _check_logits(logits)
    r, size = _check_region(logits, region)
    return (logits[:, 1].to(torch.float64) * r).flatten(1).sum(1) / size.to(torch.float64)


SCORES = {"iou": foreground_iou, "confidence": foreground_confidence, "logit": foreground_logit}
