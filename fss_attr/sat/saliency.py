"""Gradient explanations of image classifiers as non-negative [B, H, W] maps, for Segment Attribution Tables.

Both explain the *log-probability* of a target class, log softmax(logits)[target] (``log_prob=True``, default) or
its raw logit. The gradient of the log-probability is the discriminative direction ∂/∂z (z_t − logsumexp z) =
e_t − p: evidence that raises every class's logit alike cancels, which a raw logit's gradient keeps.

- :func:`grad_cam`: Grad-CAM (Selvaraju et al., 2017) on a feature map A [B, C, h, w] of the classifier: channel
  weights α_c = mean over positions of ∂score/∂A_c, map relu(Σ_c α_c A_c), upsampled bilinearly
  (align_corners=False) to the image size. For a head that average-pools A and applies an affine map, the map
  before the ReLU is each position's contribution to the score (CAM, Zhou et al., 2016), so it shows what the
  head relies on.
- :func:`input_gradient`: vanilla gradient saliency (Simonyan et al., 2014), |∂score/∂x| summed over RGB. It
  measures local sensitivity, not contribution: saturated regions (a strong uniform cue) get little of it even
  when the decision rests on them.

Batches are explained with one backward pass of the summed scores, which equals per-image gradients when the
model treats images independently (eval mode: no batch statistics).
"""
from __future__ import annotations

from typing import Callable

import torch

from fss_attr.affex.interp import upsample_bilinear
from fss_attr.validation import check_tensor


def class_score(logits: torch.Tensor, target: torch.Tensor, log_prob: bool = True) -> torch.Tensor:
    """[B, K] logits, [B] int64 classes -> [B] the explained score (log-probability or logit of the target)."""
    check_tensor("logits", logits, ndim=2, floating=True, finite=True)
    b, k = logits.shape
    check_tensor("target", target, ndim=1)
    if target.dtype != torch.int64 or target.shape[0] != b:
        raise ValueError(f"target must be int64 of shape ({b},), got {target.dtype} {tuple(target.shape)}")
    if b and (int(target.min()) < 0 or int(target.max()) >= k):
        raise ValueError(f"target must hold classes in 0..{k - 1}")
    scores = torch.log_softmax(logits, dim=1) if log_prob else logits
    return scores.gather(1, target.to(logits.device)[:, None])[:, 0]


def score_gradient(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, target: torch.Tensor,
                   log_prob: bool = True) -> torch.Tensor:
    """∂ class_score(fn(x), target) / ∂x for every item of the batch at once (x's shape and dtype)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        score = class_score(fn(x), target, log_prob)
        (grad,) = torch.autograd.grad(score.sum(), x)
    return grad


def grad_cam(head: Callable[[torch.Tensor], torch.Tensor], features: torch.Tensor, target: torch.Tensor,
             out_size: tuple[int, int], log_prob: bool = True) -> torch.Tensor:
    """Grad-CAM maps of the target classes (see the module docstring).

    Args:
        head: features [B, C, h, w] -> logits [B, K], the part of the classifier above the feature map.
        features: [B, C, h, w] floating, the classifier's feature map of the images (no gradient needed).
        target: [B] int64, the class explained in each image.
        out_size: (H, W) of the images.
        log_prob: explain the log-probability (default) or the logit.

    Returns:
        [B, H, W] non-negative maps in features' dtype.
    """
    check_tensor("features", features, ndim=4, floating=True, finite=True)
    grad = score_gradient(head, features, target, log_prob)
    cam = (grad.mean((2, 3), keepdim=True) * features.detach()).sum(1).clamp_min(0)
    return upsample_bilinear(cam, out_size)


def input_gradient(model: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, target: torch.Tensor,
                   log_prob: bool = True) -> torch.Tensor:
    """Vanilla gradient saliency |∂score/∂x| summed over channels.

    Args:
        model: images [B, C, H, W] -> logits [B, K].
        images: [B, C, H, W] floating (as the model takes them).
        target: [B] int64, the class explained in each image.
        log_prob: explain the log-probability (default) or the logit.

    Returns:
        [B, H, W] non-negative maps in images' dtype.
    """
    check_tensor("images", images, ndim=4, floating=True, finite=True)
    return score_gradient(model, images, target, log_prob).abs().sum(1)
