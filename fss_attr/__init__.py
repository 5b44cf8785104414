"""fss_attr: explanations of matching-based vision models (AffEx and friends), with fused C++/CUDA kernels.

Quick start::

    import fss_attr
    from fss_attr import AffinityExplainer, LevelScores
    out = AffinityExplainer("masked").explain(model, episode)          # an fss_attr.Explanation
    maps = AffinityExplainer("masked").explain_levels(levels, region, support_masks)

Every explainer of the package answers ``explain(model, *inputs, ...) -> fss_attr.Explanation``
(docs/explainers.md).
"""
from fss_attr._extension import EXTENSION_ERROR
from fss_attr.affex.explainer import AffinityExplainer
from fss_attr.affex.levels import LevelFeatures, LevelScores
from fss_attr.data.episode import Episode
from fss_attr.explanation import Explainer, Explanation
from fss_attr.ops import available_backends

__version__ = "0.1.0"
__all__ = ["AffinityExplainer", "LevelScores", "LevelFeatures", "Episode", "Explainer", "Explanation",
           "available_backends", "EXTENSION_ERROR", "__version__"]
