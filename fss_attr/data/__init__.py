"""Offline data: controlled few-shot episodes built from scikit-image's bundled real photos."""
from fss_attr.data.controlled import CLASSES, ControlledImage, make_episode, make_episodes, render_image

__all__ = ["CLASSES", "ControlledImage", "make_episode", "make_episodes", "render_image"]
