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


def foreground_iou(logits: torch.Tensor, query_mask: torch.Tensor, ignore: torch.Tensor | None = None) -> torch.Tensor:
    """Foreground IoU of the prediction against the query ground truth, per episode.

    The prediction is ``logits.argmax(1) == 1`` (a tie counts as background, as ``argmax`` picks the first).
    IoU = |pred ∧ gt| / |pred ∨ gt| over the pixels not in ``ignore``, and 1 when that union is empty
    (nothing predicted, nothing to find). Ignored pixels count neither as hits nor as errors, as the PASCAL
    evaluators (label 255) and the AffEx paper's code (torchmetrics' ``ignore_index``) do. A "mIoU" over a
    data set is the mean of these per-episode values (the paper's code averages per-episode IoUs too).

    Args:
        logits: [B, 2, H, W] floating (background, foreground).
        query_mask: [B, H, W] bool (or 0/1) ground truth.
        ignore: optional [B, H, W] bool (or 0/1), the pixels to leave out (e.g. ``Episode.query_ignore``).

    Returns:
        [B] float64.
    """
    _check_logits(logits)
    b, _, h, w = logits.shape
    gt = check_mask("query_mask", query_mask, (b, h, w), logits.device)
    pred = logits.argmax(1) == 1
    if ignore is not None:
        keep = ~check_mask("ignore", ignore, (b, h, w), logits.device)
        pred, gt = pred & keep, gt & keep
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
