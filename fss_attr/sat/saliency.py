"""Gradient explanations of image classifiers as non-negative [B, H, W] maps, for Segment Attribution Tables.

Both explain the *log-probability* of a target class, log softmax(logits)[target] (``log_prob=True``, default) or
its raw logit. The gradient of the log-probability is the discriminative direction ∂/∂z (z_t − logsumexp z) =
e_t − p: evidence that raises every class's logit alike cancels, which a raw logit's gradient keeps.

- :class:`GradCAM` / :func:`grad_cam`: Grad-CAM (Selvaraju et al., 2017) on a feature map A [B, C, h, w] of the
  classifier: channel weights α_c = mean over positions of ∂score/∂A_c, map relu(Σ_c α_c A_c), upsampled
  bilinearly (align_corners=False) to the image size (:func:`fss_attr.explanation.grad_cam_map`, fss_attr's one
  Grad-CAM). For a head that average-pools A and applies an affine map, the map before the ReLU is each
  position's contribution to the score (CAM, Zhou et al., 2016), so it shows what the head relies on.
- :class:`InputGradient` / :func:`input_gradient`: vanilla gradient saliency (Simonyan et al., 2014),
  |∂score/∂x| summed over RGB (:func:`fss_attr.explanation.input_gradient_map`, fss_attr's one input gradient).
  It measures local sensitivity, not contribution: saturated regions (a strong uniform cue) get little of it even
  when the decision rests on them.

The classes answer the explainer protocol (docs/explainers.md), ``explain(model, images, target=None) ->
fss_attr.Explanation`` (``maps`` [B, H, W] min-max scaled per image, ``raw`` the non-negative map, ``scores``,
``target``); the functions return the raw maps and are what the classes compute.

Batches are explained with one backward pass of the summed scores, which equals per-image gradients when the
model treats images independently (eval mode: no batch statistics).
"""
from __future__ import annotations

from typing import Callable

import torch

from fss_attr.affex.interp import upsample_bilinear
from fss_attr.explanation import Explanation, grad_cam_map, input_gradient_map, minmax, score_gradient
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


def grad_cam(head: Callable[[torch.Tensor], torch.Tensor], features: torch.Tensor, target: torch.Tensor,
             out_size: tuple[int, int], log_prob: bool = True) -> torch.Tensor:
    """Grad-CAM maps of the target classes (see the module docstring): the ``raw`` of :class:`GradCAM`.

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
    grad = score_gradient(lambda a: class_score(head(a), target, log_prob), features)
    cam = grad_cam_map(grad, features.detach()).clamp_min(0)
    return upsample_bilinear(cam, out_size)


def input_gradient(model: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, target: torch.Tensor,
                   log_prob: bool = True) -> torch.Tensor:
    """Vanilla gradient saliency |∂score/∂x| summed over channels: the ``raw`` of :class:`InputGradient`.

    Args:
        model: images [B, C, H, W] -> logits [B, K].
        images: [B, C, H, W] floating (as the model takes them).
        target: [B] int64, the class explained in each image.
        log_prob: explain the log-probability (default) or the logit.

    Returns:
        [B, H, W] non-negative maps in images' dtype.
    """
    check_tensor("images", images, ndim=4, floating=True, finite=True)
    return input_gradient_map(lambda x: class_score(model(x), target, log_prob), images, channel_dim=1, reduce="sum")


class ClassifierSaliency:
    """Base of the SAT saliency explainers: ``explain(model, images, target=None) -> fss_attr.Explanation``.

    Args:
        log_prob: explain the target's log-probability (default) or its logit.
    """

    name = "base"

    def __init__(self, log_prob: bool = True):
        self.log_prob = bool(log_prob)

    def raw_maps(self, model, images: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(raw [B, H, W] non-negative maps, logits [B, K]) of the target classes."""
        raise NotImplementedError

    def explain(self, model, images: torch.Tensor, target: torch.Tensor | None = None) -> Explanation:
        """Explain a classifier's score of the target class in each image (the explainer protocol).

        Args:
            model: an image classifier, images -> logits [B, K]; :class:`GradCAM` needs ``model.features``
                (images -> feature map [B, C, h, w]) and ``model.head`` (feature map -> logits), as
                :class:`fss_attr.sat.ProbedClassifier` has.
            images: [B, C, H, W] floating, as the model takes them.
            target: [B] int64, the class explained in each image; None explains the predicted class.

        Returns:
            :class:`fss_attr.Explanation` with ``maps`` [B, H, W] float32 in [0, 1] (min-max per image), ``raw``
            [B, H, W] the non-negative map in the images' (or features') dtype, ``scores`` [B] the explained
            score (log-probability or logit) and ``target`` [B].
        """
        check_tensor("images", images, ndim=4, floating=True, finite=True)
        if target is None:
            with torch.no_grad():
                target = model(images).argmax(1)
        raw, logits = self.raw_maps(model, images, target)
        with torch.no_grad():
            scores = class_score(logits, target, self.log_prob)
        return Explanation(minmax(raw, torch.float32), raw, scores=scores, target=target)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(log_prob={self.log_prob})"


class GradCAM(ClassifierSaliency):
    """Grad-CAM of an image classifier split into ``model.features`` and ``model.head`` (:func:`grad_cam`)."""

    name = "gradcam"

    def raw_maps(self, model, images, target):
        with torch.no_grad():
            features = model.features(images)
            logits = model.head(features)
        return grad_cam(model.head, features, target, tuple(images.shape[-2:]), self.log_prob), logits


class InputGradient(ClassifierSaliency):
    """Input-gradient saliency of an image classifier (:func:`input_gradient`)."""

    name = "saliency"

    def raw_maps(self, model, images, target):
        with torch.no_grad():
            logits = model(images)
        return input_gradient(model, images, target, self.log_prob), logits
