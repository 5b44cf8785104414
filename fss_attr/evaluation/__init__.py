"""Evaluation runs: explainers × metrics over many episodes (the library side of ``fss-attr evaluate``).

- :mod:`~fss_attr.evaluation.loop`: :func:`evaluate_episodes` computes per-episode rows and curves, writes nothing;
- :mod:`~fss_attr.evaluation.report`: summaries and the report writers (CSV, JSON, markdown table, figure);
- :mod:`~fss_attr.evaluation.store`: durable, exactly-once results in a run folder;
- :mod:`~fss_attr.evaluation.distributed` and :mod:`~fss_attr.evaluation.job`: one job over torchrun's processes;
- :mod:`~fss_attr.evaluation.episodes`: episode sources any process can index.
"""
from fss_attr.evaluation.loop import CURVES, EpisodeResult, EvaluationConfig, evaluate_episodes, explainer_seed, row_fields

__all__ = ["CURVES", "EpisodeResult", "EvaluationConfig", "evaluate_episodes", "explainer_seed", "row_fields"]
