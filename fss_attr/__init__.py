"""fss_attr: explanations of matching-based vision models (AffEx and friends), with fused C++/CUDA kernels.

Quick start::

    import fss_attr
    from fss_attr import AffinityExplainer, LevelScores
    maps = AffinityExplainer("masked").explain_levels(levels, region, support_masks)
"""
from fss_attr._extension import EXTENSION_ERROR
from fss_attr.affex.explainer import AffinityExplainer
from fss_attr.affex.levels import LevelFeatures, LevelScores
from fss_attr.data.episode import Episode
from fss_attr.explanation import Explanation
from fss_attr.ops import available_backends

__version__ = "0.1.0"
__all__ = ["AffinityExplainer", "LevelScores", "LevelFeatures", "Episode", "Explanation", "available_backends",
           "EXTENSION_ERROR", "__version__"]
