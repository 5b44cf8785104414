"""Running one evaluation over many processes started by ``torchrun`` (one process is the case K = 1).

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE (plus the rendezvous address) in each
process; :func:`context` reads them. Only small control messages cross processes (the launch name and the
work list from rank 0, a barrier before the merge), so the gloo backend serves CPU and GPU jobs alike and no
GPU memory goes to a communicator; each GPU rank computes on ``cuda:LOCAL_RANK``.
"""
from __future__ import annotations

import datetime
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch


@dataclass(frozen=True)
class Context:
    """Where this process stands in the job: ``rank`` of ``world_size``, ``local_rank`` of ``local_world_size``
    on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an int, got {value!r}") from None


def context() -> Context:
    """The job layout from torchrun's environment (a lone process: rank 0 of 1)."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_world = _env_int("LOCAL_WORLD_SIZE", world)
    local_rank = _env_int("LOCAL_RANK", rank)
    if not (0 <= rank < world and 0 <= local_rank < local_world):
        raise ValueError(f"RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local_rank}, LOCAL_WORLD_SIZE={local_world} "
                         "do not describe a process of a job")
    return Context(rank, world, local_rank, local_world)


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def threads_per_rank(ctx: Context) -> int:
    """CPU threads for one rank: the node's usable cores shared evenly by its ranks (at least 1)."""
    return max(1, usable_cpus() // ctx.local_world_size)


def device_for(requested: str, ctx: Context) -> str:
    """The device of this rank: "cuda" (or "cuda:k" in a multi-process job) becomes ``cuda:LOCAL_RANK``;
    anything else is kept."""
    if requested.startswith("cuda") and (requested == "cuda" or ctx.distributed):
        return f"cuda:{ctx.local_rank}"
    return requested


def init(ctx: Context, timeout_s: float = 7 * 24 * 3600) -> None:
    """Join the job's process group (gloo) when there is more than one process. The long timeout lets rank 0
    wait at the final barrier for the slowest rank; a rank that dies ends the job through torchrun, not
    through the timeout."""
    if ctx.distributed and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("gloo", timeout=datetime.timedelta(seconds=timeout_s))


def finish(ctx: Context) -> None:
    if ctx.distributed and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def barrier(ctx: Context) -> None:
    if ctx.distributed:
        torch.distributed.barrier()


def broadcast(ctx: Context, obj):
    """Rank 0's ``obj`` on every rank."""
    if not ctx.distributed:
        return obj
    box = [obj if ctx.is_main else None]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def share(items: Sequence, ctx: Context) -> list:
    """This rank's deterministic share of ``items``: every ``world_size``-th, starting at ``rank``."""
    return list(items)[ctx.rank::ctx.world_size]


class ProgressMonitor:
    """Rank 0's progress bar for the whole job: a thread counts the records of this launch in the run folder
    (every rank's row files) twice a second. ``total`` and ``initial`` count (episode, explainer) results."""

    def __init__(self, rows_folder: Path, launch: str, total: int, initial: int = 0, enabled: bool = True,
                 interval_s: float = 0.5):
        from tqdm import tqdm

        self.folder, self.launch, self.interval = Path(rows_folder), launch, interval_s
        self.bar = tqdm(total=total, initial=initial, desc="evaluate", unit="result", disable=not enabled)
        self.initial = initial
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True) if enabled else None

    def _count(self) -> int:
        from fss_attr.evaluation.store import count_lines

        return count_lines(self.folder.glob(f"rank*-{self.launch}.jsonl"))

    def _update(self):
        n = self.initial + self._count()
        if n > self.bar.n:
            self.bar.update(n - self.bar.n)

    def _run(self):
        while not self._stop.wait(self.interval):
            self._update()

    def __enter__(self):
        if self._thread is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._update()
        self.bar.close()
