"""The Affinity Explainer (AffEx): which support pixels made a few-shot segmentation model's query prediction.

- :mod:`fss_attr.affex.levels`: one level of matching, as scores (:class:`LevelScores`) or as the features
  whose similarity is the affinity (:class:`LevelFeatures`);
- :mod:`fss_attr.affex.interp`: the bilinear interpolation matrices and the query row weights of the identity
  (docs/affex.md §2);
- :mod:`fss_attr.affex.blur`: the Gaussian blur of the support masks (masked and signed variants);
- :mod:`fss_attr.affex.explainer`: :class:`AffinityExplainer`, the definition of docs/affex.md §1 on every backend.
"""
from fss_attr.affex.explainer import VARIANTS, AffinityExplainer, ExplanationCache
from fss_attr.affex.levels import LevelFeatures, LevelScores

__all__ = ["AffinityExplainer", "ExplanationCache", "LevelScores", "LevelFeatures", "VARIANTS"]
