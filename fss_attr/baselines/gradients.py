"""Gradient-based baselines: Saliency (fss_attr's one input gradient,
:func:`fss_attr.explanation.input_gradient_map`), and Integrated Gradients, DeepLift, GradientShap through captum.

All attribute the target of :mod:`fss_attr.baselines.base` (mean foreground logit over R) to the
support RGB values; the query, the support masks and R are passed to captum as additional forward
arguments, which captum repeats alongside the inputs when it expands the batch. The baseline (reference
input) of IG and DeepLift is the zero image: the mean colour, since images are normalized.
"""
from __future__ import annotations

import numpy as np
import torch

from fss_attr.baselines.base import SupportExplainer, SupportTarget, reduce_channels
from fss_attr.explanation import input_gradient_map
from fss_attr.validation import check_choice, check_nonnegative, check_positive_int


# captum sets requires_grad on the inputs it is given, and DeepLift hooks the model's non-linear modules
CAPTUM_NOTICES = (".*did not already require gradients.*", "Setting forward, backward hooks")


def _args(episode, region):
    return (episode.query, episode.support_masks, region)


class Saliency(SupportExplainer):
    """|∂f/∂x| (Simonyan et al. 2014), averaged over RGB: :func:`fss_attr.explanation.input_gradient_map` of the
    target (the same numbers as captum's ``Saliency(abs=True)``)."""

    name = "saliency"

    def attribute(self, model, episode, region):
        target = SupportTarget(model)
        return input_gradient_map(lambda x: target(x, *_args(episode, region)), episode.support_images,
                                  channel_dim=2, reduce="mean")


class IntegratedGradients(SupportExplainer):
    """Integrated Gradients from the zero image, Gauss-Legendre ``n_steps`` points, ``internal_batch_size``
    interpolation points per forward pass."""

    name = "ig"
    expected_warnings = CAPTUM_NOTICES

    def __init__(self, n_steps: int = 25, internal_batch_size: int = 16):
        self.n_steps = check_positive_int("n_steps", n_steps)
        self.internal_batch_size = check_positive_int("internal_batch_size", internal_batch_size)

    def attribute(self, model, episode, region):
        from captum.attr import IntegratedGradients as CaptumIG

        attr = CaptumIG(SupportTarget(model)).attribute(
            episode.support_images, baselines=0.0, additional_forward_args=_args(episode, region),
            n_steps=self.n_steps, internal_batch_size=self.internal_batch_size * episode.batch_size)
        return reduce_channels(attr)


class DeepLift(SupportExplainer):
    """DeepLift (rescale rule) from the zero image.

    ``implementation="rescale"`` (default): :func:`fss_attr.baselines.deeplift.deeplift_rescale`, paired by
    activation call, correct whatever the adapter's batch layout or module reuse (every shipped adapter),
    and the same for an episode alone or batched with others. ``implementation="captum"``: captum's
    ``DeepLift`` as before issue 16 (right only where each hooked ``nn.ReLU``-like module is called once per
    forward on an input-major batch; see the module docstring of :mod:`fss_attr.baselines.deeplift`).
    """

    name = "deeplift"
    expected_warnings = CAPTUM_NOTICES

    def __init__(self, implementation: str = "rescale"):
        self.implementation = check_choice("implementation", implementation, ("rescale", "captum"))

    def attribute(self, model, episode, region):
        if self.implementation == "rescale":
            from fss_attr.baselines.deeplift import deeplift_rescale

            target = SupportTarget(model)
            attr = deeplift_rescale(lambda x: target(x, *_args(episode, region)), episode.support_images,
                                    torch.zeros_like(episode.support_images))
            return reduce_channels(attr)
        from captum.attr import DeepLift as CaptumDeepLift

        attr = CaptumDeepLift(SupportTarget(model)).attribute(
            episode.support_images, baselines=torch.zeros_like(episode.support_images),
            additional_forward_args=_args(episode, region))
        return reduce_channels(attr)


class GradientShap(SupportExplainer):
    """GradientShap: expected gradients × (input − baseline) over ``n_samples`` random points between the
    input (plus N(0, stdevs²) noise) and baselines drawn from {the zero image} (``noise_baseline=False``) or
    {the zero image, one N(0, 1) image} (default). captum draws from the global torch and numpy generators;
    they are seeded with ``seed`` + the call count for the call and restored after it, so runs repeat and the
    caller's random state is left alone."""

    name = "gradientshap"
    expected_warnings = CAPTUM_NOTICES

    def __init__(self, n_samples: int = 8, stdevs: float = 0.1, noise_baseline: bool = True, seed: int = 0):
        self.n_samples = check_positive_int("n_samples", n_samples)
        self.stdevs = check_nonnegative("stdevs", stdevs)
        self.noise_baseline = bool(noise_baseline)
        self.seed = int(seed)
        self._calls = 0

    def attribute(self, model, episode, region):
        from captum.attr import GradientShap as CaptumGradientShap

        x = episode.support_images
        devices = [x.device] if x.device.type == "cuda" else []
        seed = self.seed + self._calls
        self._calls += 1
        np_state = np.random.get_state()
        try:
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed)
                np.random.seed(seed % 2**32)
                baselines = torch.zeros((1,) + tuple(x.shape[1:]), dtype=x.dtype, device=x.device)
                if self.noise_baseline:
                    baselines = torch.cat([baselines, torch.randn_like(baselines)])
                attr = CaptumGradientShap(SupportTarget(model)).attribute(
                    x, baselines=baselines, n_samples=self.n_samples, stdevs=self.stdevs,
                    additional_forward_args=_args(episode, region))
        finally:
            np.random.set_state(np_state)
        return reduce_channels(attr)
