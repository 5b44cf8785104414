"""Evaluation of support attributions: the causal metrics of the AffEx paper (IAUC/DAUC, IAUC@p%,
mIoULoss@p, image-level insertion/deletion), infidelity, and localisation against known evidence.

Perturbation states run through the model many per forward pass (``internal_batch_size``); ``loop=True``
runs one per forward pass and gives the same numbers. See :func:`evaluate` for everything at once.
"""
from fss_attr.metrics.evaluate import (DEFAULT_METRICS, LOCALISATION_METRICS, PAPER_METRICS, check_metrics,
                                       evaluate, higher_is_better)
from fss_attr.metrics.fss import iauc_at, iauc_dauc, image_insertion_deletion, miou_loss
from fss_attr.metrics.infidelity import infidelity
from fss_attr.metrics.localisation import pointing_game, relevance_mass
from fss_attr.metrics.perturbation import (State, auc, evaluate_states, image_ranks, make_state, moved_count,
                                           pixel_ranks)
from fss_attr.metrics.scores import foreground_confidence, foreground_iou, foreground_logit

__all__ = ["evaluate", "DEFAULT_METRICS", "PAPER_METRICS", "LOCALISATION_METRICS", "check_metrics",
           "higher_is_better", "iauc_dauc", "iauc_at", "miou_loss", "image_insertion_deletion", "infidelity",
           "relevance_mass", "pointing_game", "State", "auc", "evaluate_states", "make_state", "moved_count",
           "pixel_ranks", "image_ranks", "foreground_iou", "foreground_confidence", "foreground_logit"]
