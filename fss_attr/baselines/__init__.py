"""Baseline explainers of support attributions, for comparison with AffEx: Saliency, Integrated Gradients,
DeepLift, GradientShap (the last three through captum), LIME over SLIC superpixels, random maps and the noisy
ground-truth mask. All share the explainer protocol's call (docs/explainers.md),
``explain(model, episode, region="logits") -> fss_attr.Explanation`` (``maps`` [B, N, H, W] in [0, 1], ``raw``,
``logits``, ``prediction``, ``region``), and the target of :mod:`fss_attr.baselines.base`.
``make_explainer(name)`` builds any of them, AffEx variants included."""
from fss_attr.baselines.base import SupportExplainer, SupportTarget
from fss_attr.baselines.gradients import DeepLift, GradientShap, IntegratedGradients, Saliency
from fss_attr.baselines.lime import Lime
from fss_attr.baselines.registry import EXPLAINERS, make_explainer
from fss_attr.baselines.simple import GaussNoise, Random

__all__ = ["SupportExplainer", "SupportTarget", "Saliency", "IntegratedGradients", "DeepLift",
           "GradientShap", "Lime", "Random", "GaussNoise", "EXPLAINERS", "make_explainer"]
