"""The evaluation loop: explain episodes with many explainers and score the maps. Computes; writes nothing.

:func:`evaluate_episodes` yields one :class:`EpisodeResult` per episode: a row per explainer (the metric values,
timings and flags) and the curves of the insertion/deletion metrics. The report writers
(:mod:`fss_attr.evaluation.report`) and the durable store (:mod:`fss_attr.evaluation.store`) take it from there.

Reproducibility whatever the order of work (sharded over processes, resumed after a kill): everything random in
episode ``i`` is seeded from the run's ``seed`` and ``i`` alone. Explainers given as factories are built afresh
for every episode with ``seed = config.seed + i`` (:func:`explainer_seed`); the infidelity's noise draws use
seeds ``config.seed + i·J …`` (J = ``infidelity_perturbations``); the global torch generator is forked and
seeded with the same per-episode seed around each episode. The logits of the perturbation states that do not
depend on the map (the original support, the substrate, the noisy supports) are computed once per episode, by
the first explainer in the order given, and shared by the others; when that explainer's row is already done
(``skip``) it is still run first so the shared logits, and so every number, are those of an uninterrupted run.
"""
from __future__ import annotations

import inspect
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import torch

from fss_attr.metrics.evaluate import DEFAULT_METRICS
from fss_attr.validation import check_int

REGIONS = ("logits", "gt", "all")
EMPTY_PREDICTION_RULES = ("exclude", "paper")
CURVES = ("iauc", "dauc", "iauc@1%", "image_iauc", "image_dauc")


@dataclass(frozen=True)
class EvaluationConfig:
    """What is computed for every (episode, explainer): the settings that decide the numbers.

    Attributes:
        metrics: metric names (:mod:`fss_attr.metrics.evaluate`; default its DEFAULT_METRICS); the localisation metrics are added for episodes
            that carry ``support_evidence``.
        region: the query region R explained and scored: "logits" (the prediction), "gt" or "all".
        steps: IAUC / DAUC steps (75 in the paper).
        internal_batch_size: perturbation states per forward pass (changes the rounding of batch-size dependent
            kernels, so it is part of the configuration).
        loop: one state per forward pass (the reference path).
        infidelity_perturbations: noise draws J of the infidelity.
        seed: the run's seed; episode i's explainers get ``seed + i``.
        empty_prediction: what happens to an episode whose prediction is empty when R is the prediction
            (``region="logits"``). "exclude" (default): R falls back to the whole query, every explainer gets a
            defined map, and the episode is flagged ``degenerate`` and left out of every mean. "paper": the
            AffEx paper's code, whose R is then empty (means over no pixels): the maps of the explainers that
            read R (all but those with ``reads_region = False``: random, gaussnoise) are constant (zeros: the
            metrics rank ties in index order, as torch's sort ranks the paper's NaN maps), the metrics that read
            R (:func:`fss_attr.metrics.evaluate.reads_region`: iauc@P%, infidelity), and the localisation metrics
            of the constant maps, are NaN and so left out of their means, and the episode stays in the means of
            the others (docs/metrics.md).

    Raises:
        ValueError: naming the field, on a bad value.
    """

    metrics: tuple[str, ...] = DEFAULT_METRICS
    region: str = "logits"
    steps: int = 75
    internal_batch_size: int = 16
    loop: bool = False
    infidelity_perturbations: int = 16
    seed: int = 0
    empty_prediction: str = "exclude"

    def __post_init__(self):
        from fss_attr.metrics import check_metrics

        object.__setattr__(self, "metrics", check_metrics(tuple(self.metrics)))
        if self.region not in REGIONS:
            raise ValueError(f"region must be one of {REGIONS}, got {self.region!r}")
        check_int("steps", self.steps, 2)
        check_int("internal_batch_size", self.internal_batch_size, 1)
        check_int("infidelity_perturbations", self.infidelity_perturbations, 1)
        check_int("seed", self.seed, 0)
        if self.empty_prediction not in EMPTY_PREDICTION_RULES:
            raise ValueError(f"empty_prediction must be one of {EMPTY_PREDICTION_RULES}, got {self.empty_prediction!r}")
        object.__setattr__(self, "loop", bool(self.loop))

    def all_metrics(self) -> tuple[str, ...]:
        """The metrics asked for, then the localisation metrics (computed where the episode allows)."""
        from fss_attr.metrics import LOCALISATION_METRICS

        return self.metrics + tuple(m for m in LOCALISATION_METRICS if m not in self.metrics)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["metrics"] = list(self.metrics)
        return d


@dataclass
class EpisodeResult:
    """One episode's results.

    Attributes:
        index: the episode's index in the run (0-based).
        rows: one dict per explainer computed, in the order given: "episode", "explainer", "class", a float per
            metric the episode allows, "explain_s" and "evaluate_s" (seconds), "empty_prediction" (0/1: the
            model predicted no query foreground), "degenerate" (0/1: the explained region R covers the whole
            query or none of it, so an AffEx map is uniform by construction — the empty-prediction fallback,
            region "all", an empty ground truth; such episodes are left out of the means; with
            ``empty_prediction="paper"`` an empty prediction does not flag the episode, see
            :class:`EvaluationConfig`).
        curves: {explainer: {curve name: list of floats}} for the curves in :data:`CURVES` that were computed.
    """

    index: int
    rows: list[dict] = field(default_factory=list)
    curves: dict[str, dict[str, list[float]]] = field(default_factory=dict)


def explainer_seed(seed: int, index: int) -> int:
    """The seed of episode ``index``'s explainers in a run seeded with ``seed``: ``seed + index``."""
    return int(seed) + int(index)


def _instance(spec, seed: int):
    """An explainer from ``spec``: an object with ``explain`` is used as it is; any other callable is a factory
    ``seed -> explainer``, called with the episode's seed."""
    if hasattr(spec, "explain"):
        return spec
    if callable(spec):
        return spec(seed)
    raise TypeError(f"explainers must map names to explainers (with .explain) or to factories seed -> explainer, "
                    f"got {type(spec).__name__}")


def _accepts(fn, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _degenerate(region: torch.Tensor) -> bool:
    """R covers every query pixel or none: an AffEx map is then uniform (every support position gets 1/|R|
    of the mass by construction) and its ranking is rounding noise."""
    flat = region.flatten(1)
    return bool((flat.all(1) | ~flat.any(1)).any())


def evaluate_episodes(model, episodes: Iterable, explainers: Mapping[str, object],
                      config: EvaluationConfig = EvaluationConfig(), *, indices: Iterable[int] | None = None,
                      skip: Callable[[int, str], bool] | None = None, metric_model=None,
                      device: str | torch.device = "cpu") -> Iterator[EpisodeResult]:
    """Explain every episode with every explainer and score the maps; yields one result per episode.

    Args:
        model: the model explained (any :class:`fss_attr.models.MatchingAdapter`).
        episodes: batch-1 :class:`fss_attr.data.episode.Episode` objects: an iterable (episode i is the i-th
            item), or, with ``indices``, a sequence read as ``episodes[i]``.
        explainers: {name: explainer} in the order they run. A value with ``explain(model, episode, region=...)``
            is used for every episode as it is (its random state then depends on the episodes before); any other
            callable is a factory ``seed -> explainer`` called per episode with :func:`explainer_seed` (what makes
            sharded and resumed runs equal an uninterrupted one). An explainer whose ``explain`` takes a
            ``cache`` keyword gets a dict shared by the explainers of the episode (and fresh per episode).
        config: :class:`EvaluationConfig`.
        indices: the episodes to evaluate (global indices, e.g. one rank's share); default all, in order.
        skip: ``skip(i, name)`` True for (episode, explainer) results that exist already: their rows are not
            yielded (the first explainer still runs when a later one is needed, see the module docstring).
        metric_model: the same model for the metrics' forward passes (e.g. a compiled copy); default ``model``.
        device: where the episodes are moved.

    Yields:
        :class:`EpisodeResult`, one per episode with at least one row to compute, in the order of ``indices``.

    Raises:
        TypeError: an explainer entry is neither an explainer nor a factory.
        ValueError: from the metrics (e.g. a metric needs ground truth the episode lacks).
    """
    from fss_attr.metrics import LOCALISATION_METRICS, evaluate
    from fss_attr.metrics.evaluate import reads_region

    if not isinstance(config, EvaluationConfig):
        raise TypeError(f"config must be an EvaluationConfig, got {type(config).__name__}")
    names = list(explainers)
    if not names:
        raise ValueError("explainers must name at least one explainer")
    scoring_model = model if metric_model is None else metric_model
    skip = skip or (lambda i, name: False)
    if indices is None:
        items: Iterable = enumerate(episodes)
    else:
        items = ((i, episodes[i]) for i in indices)
    all_metrics = config.all_metrics()
    for i, episode in items:
        wanted = [n for n in names if not skip(i, n)]
        if not wanted:
            continue
        run = names[:1] + [n for n in wanted if n != names[0]]   # the first one fills the shared logits
        episode = episode.to(device)
        use = tuple(m for m in all_metrics if m not in LOCALISATION_METRICS or episode.support_evidence is not None)
        seed = explainer_seed(config.seed, i)
        result = EpisodeResult(i)
        cache: dict = {}           # logits of the map-free support states, shared by the explainers
        shared: dict = {}          # for explainers that accept a per-episode cache (e.g. one encode for all)
        flags, paper_empty = None, False
        devices = [episode.device] if episode.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            for name in run:
                torch.manual_seed(seed)
                explainer = _instance(explainers[name], seed)
                kwargs = {"cache": shared} if _accepts(explainer.explain, "cache") else {}
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="region='logits'")
                    explanation = explainer.explain(model, episode, region=config.region, **kwargs)
                t1 = time.perf_counter()
                if flags is None:
                    empty = not bool(explanation.prediction.any())
                    paper_empty = empty and config.region == "logits" and config.empty_prediction == "paper"
                    flagged = getattr(explanation, "degenerate", None)
                    degenerate = not paper_empty and (
                        _degenerate(explanation.region) or (flagged is not None and bool(torch.as_tensor(flagged).any())))
                    flags = {"empty_prediction": int(empty), "degenerate": int(degenerate)}
                maps = explanation.maps.to(torch.float64)
                stand_in = paper_empty and getattr(explainer, "reads_region", True)
                if stand_in:
                    maps = torch.zeros_like(maps)        # the paper's R is empty: its maps are NaN (see config)
                values = evaluate(scoring_model, episode, maps, use,
                                  region=explanation.region, steps=config.steps,
                                  internal_batch_size=config.internal_batch_size, loop=config.loop,
                                  infidelity_perturbations=config.infidelity_perturbations,
                                  seed=config.seed + i * config.infidelity_perturbations,
                                  return_curves=True, cache=cache)
                t2 = time.perf_counter()
                if name not in wanted:
                    continue
                row = {"episode": i, "explainer": name, "class": _class_name(episode),
                       "explain_s": round(t1 - t0, 4), "evaluate_s": round(t2 - t1, 4), **flags}
                undefined = [m for m in use if (paper_empty and reads_region(m))
                             or (stand_in and m in LOCALISATION_METRICS)]      # a stand-in map localises nothing
                row.update({m: float("nan") if m in undefined else float(values[m][0]) for m in use})
                result.rows.append(row)
                result.curves[name] = {k[6:]: values[k][0].cpu().tolist() for k in values
                                       if k.startswith("curve:") and k[6:] in CURVES
                                       and not (paper_empty and reads_region(k[6:]))}
        result.rows.sort(key=lambda r: names.index(r["explainer"]))
        yield result


def _class_name(episode) -> str:
    meta = episode.meta or {}
    name = meta.get("class_name", meta.get("class_id", ""))
    return "" if name is None else str(name)


def row_fields(metrics: Sequence[str]) -> list[str]:
    """The columns of a row, in CSV order, for a run with these (all) metrics."""
    return ["episode", "explainer", "class"] + list(metrics) + ["explain_s", "evaluate_s", "empty_prediction",
                                                                 "degenerate"]
