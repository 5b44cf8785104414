"""Explanations of similarity / metric-learning models: SFAM (our formulation of it), gradient similarity
attention, the spatial similarity decomposition (Stylianou et al.) and Grad-CAM on a similarity target, for
pairs, all B×B pairs of a batch, or triplets, in the one call of the explainer protocol,
``explain(model, x1[, x2[, x3]]) -> fss_attr.Explanation`` (see :mod:`fss_attr.similarity.explainers`)."""
from fss_attr.similarity.evaluation import controlled_triplets, pair_maps, pair_metrics, similarity_curves
from fss_attr.similarity.explainers import (METHODS, SFAM, GradCAMSimilarity, GradientAttention,
                                            SimilarityExplainer, SpatialDecomposition,
                                            default_methods)
from fss_attr.similarity.loss import AttentionConsistencyLoss
from fss_attr.similarity.measures import SIMILARITIES, all_pairs, head_vjp, similarity, similarity_grad
from fss_attr.similarity.model import EmbeddingModel, default_model

__all__ = ["EmbeddingModel", "default_model", "SIMILARITIES", "similarity", "all_pairs", "similarity_grad",
           "head_vjp", "SimilarityExplainer", "SFAM", "GradientAttention",
           "SpatialDecomposition", "GradCAMSimilarity", "METHODS", "AttentionConsistencyLoss",
           "default_methods", "similarity_curves", "controlled_triplets", "pair_maps", "pair_metrics"]
