"""One evaluation job over 1..K processes: the durable loop of each rank and the merge.

A job is the same code in every process (``torchrun --nproc-per-node K -m fss_attr evaluate ...``, or one
plain process, K = 1):

1. rank 0 lists the (episode, explainer) results already on disk and picks a launch name; both reach every
   rank (:func:`plan`);
2. each rank evaluates its share of the pending episodes (every K-th, :func:`fss_attr.evaluation.distributed.share`)
   and appends every result to its own row file as soon as it exists (:func:`run_share`);
3. after a barrier, rank 0 merges the row files into the report (:func:`merge`), which
   ``fss-attr evaluate --merge-only DIR`` also runs alone on a folder whose ranks died.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from fss_attr.evaluation import distributed, store
from fss_attr.evaluation.loop import EvaluationConfig, evaluate_episodes, row_fields


@dataclass(frozen=True)
class JobPlan:
    """What a launch does: its name, the (episode -> explainers done) already on disk, and the episodes with
    work left, in order."""

    launch: str
    done: dict[int, tuple[str, ...]]
    pending: tuple[int, ...]
    total: int                 # (episode, explainer) results of the whole job
    finished: int              # of which on disk before this launch


def pending_work(out: str | Path, n_episodes: int, explainers: Sequence[str]) -> tuple[dict, list[int], int]:
    """({episode: explainers done}, episodes with work left, results done) from a run folder's rows."""
    records, _ = store.read_records(out)
    done: dict[int, set] = {}
    names = set(explainers)
    for (e, name) in records:
        if 0 <= e < n_episodes and name in names:
            done.setdefault(e, set()).add(name)
    pending = [e for e in range(n_episodes) if len(done.get(e, ())) < len(names)]
    return {e: tuple(sorted(v)) for e, v in done.items()}, pending, sum(len(v) for v in done.values())


def plan(ctx: distributed.Context, out: str | Path, n_episodes: int, explainers: Sequence[str]) -> JobPlan:
    """Rank 0 reads the folder and names the launch; every rank gets the same :class:`JobPlan`."""
    p = None
    if ctx.is_main:
        done, pending, finished = pending_work(out, n_episodes, explainers)
        p = JobPlan(store.new_launch_id(), done, tuple(pending), n_episodes * len(explainers), finished)
    return distributed.broadcast(ctx, p)


def run_share(ctx: distributed.Context, out: str | Path, the_plan: JobPlan, model, episodes, explainers: Mapping,
              config: EvaluationConfig, *, metric_model=None, device: str = "cpu", progress: bool = True) -> int:
    """Evaluate this rank's share of the pending episodes, writing every (episode, explainer) result to the
    rank's row file as it comes (flushed and fsynced). Rank 0 shows the progress of the whole job.

    Returns:
        the number of results this rank wrote.
    """
    mine = distributed.share(the_plan.pending, ctx)
    done = the_plan.done
    written = 0
    monitor = (distributed.ProgressMonitor(Path(out) / store.ROWS, the_plan.launch, the_plan.total,
                                           the_plan.finished, enabled=progress)
               if ctx.is_main else None)
    with store.RowWriter(out, ctx.rank, the_plan.launch) as writer:
        if monitor is not None:
            monitor.__enter__()
        try:
            for result in evaluate_episodes(model, episodes, explainers, config, indices=mine,
                                            skip=lambda i, name: name in done.get(i, ()),
                                            metric_model=metric_model, device=device):
                for row in result.rows:
                    writer.write(row, result.curves.get(row["explainer"]))
                    written += 1
        finally:
            if monitor is not None:
                monitor.__exit__(None, None, None)
    return written


def merge(out: str | Path, wall_time_s: float | None = None) -> dict:
    """Write the report of a run folder from its durable rows: episodes.csv (one line per (episode, explainer),
    sorted), summary.json, table.md, curves.png, each replaced atomically. Works on a folder whose ranks died
    (the summary then says ``"complete": false``).

    Returns:
        the summary (see :func:`fss_attr.evaluation.report.build_summary`).

    Raises:
        FileNotFoundError: ``out`` is not a run folder.
        ValueError: two records of one key disagree (see :func:`fss_attr.evaluation.store.read_records`).
    """
    from fss_attr.evaluation.report import build_summary, write_report

    cfg = store.read_config(out)
    ecfg = EvaluationConfig(**cfg["evaluation"])
    names = list(cfg["explainers"])
    records, _ = store.read_records(out, ecfg.all_metrics())
    keys = sorted((k for k in records if k[1] in names and 0 <= k[0] < cfg["episodes"]),
                  key=lambda k: (k[0], names.index(k[1])))
    rows = [records[k]["row"] for k in keys]
    curves = {k: records[k].get("curves", {}) for k in keys}
    summary = build_summary(rows, ecfg.all_metrics(), cfg, expected_episodes=cfg["episodes"],
                            wall_time_s=wall_time_s)
    write_report(out, rows, curves, summary, row_fields(ecfg.all_metrics()))
    return summary
