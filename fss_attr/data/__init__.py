"""Episodes and where they come from.

- :mod:`fss_attr.data.episode`: :class:`~fss_attr.data.episode.Episode`, a batch of few-shot segmentation episodes;
- :mod:`fss_attr.data.controlled`: controlled episodes built offline from scikit-image's bundled real photos,
  with known support evidence (:mod:`fss_attr.data.textures` draws their textures);
- :mod:`fss_attr.data.pascal`, :mod:`fss_attr.data.coco`: PASCAL-5i and COCO-20i on disk;
  :mod:`fss_attr.data.episode_list`: sampled and replayable episode lists; :mod:`fss_attr.data.benchmarks`:
  one call from a benchmark name to episodes;
- :mod:`fss_attr.data.classification`: few-shot classification pools and episodes;
- :mod:`fss_attr.data.imagenet`: the ImageNet colour normalization all images carry.
"""
from fss_attr.data.episode import Episode

_CONTROLLED = ("CLASSES", "ControlledImage", "make_episode", "make_episodes", "render_image")


def __getattr__(name):
    if name in _CONTROLLED:  # imported on first use: scikit-image's photos and the texture code are not light
        from fss_attr.data import controlled
        return getattr(controlled, name)
    raise AttributeError(f"module 'fss_attr.data' has no attribute {name!r}")

__all__ = ["CLASSES", "ControlledImage", "Episode", "make_episode", "make_episodes", "render_image"]
