"""Durable, exactly-once results of an evaluation run, in its output folder.

Layout of a run folder::

    config.json                    the configuration that decides the numbers (written once, atomically)
    rows/rank0003-<launch>.jsonl   one append-only file per (launch, rank): one JSON record per finished
                                   (episode, explainer), flushed and fsynced before the next one starts
    episodes.csv, summary.json, table.md, curves.png   the report, merged from rows/ (atomic replacements)

Why per-rank append-only files and not SQLite: every file has exactly one writer for its whole life, so no
locks are needed and nothing depends on the filesystem's locking; that holds on the network filesystems
(NFS, Lustre, GPFS) that multi-node jobs share, where SQLite's WAL mode is documented not to work (its
shared-memory index needs all writers on one host) and its rollback journal relies on POSIX locks those
filesystems often get wrong. A kill can only cut the last line of a file, which :func:`read_records` drops
(that (episode, explainer) is simply computed again). Exactly once: a record's key is (episode, explainer); a
relaunch skips every key on disk, and the merge keeps one record per key (the first, in launch order; a second
copy, possible only when two jobs share a folder at once, is checked to hold the same metric values).
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Iterator

CONFIG = "config.json"
ROWS = "rows"
REPORT_FILES = ("episodes.csv", "summary.json", "table.md", "curves.png")
FORMAT = 1


class ConfigMismatch(ValueError):
    """The output folder holds a run with another configuration."""


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder, fsynced, then renamed over it:
    a reader sees the old file or the new one, never a part."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def config_differences(old: dict, new: dict) -> list[str]:
    """Human-readable differences between two recorded configurations ("steps: 5 -> 10", ...)."""
    old, new = _flat(old), _flat(new)
    out = []
    for k in sorted(set(old) | set(new)):
        if old.get(k, "<absent>") != new.get(k, "<absent>"):
            out.append(f"{k}: {old.get(k, '<absent>')!r} -> {new.get(k, '<absent>')!r}")
    return out


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_folder(out: str | Path, config: dict, overwrite: bool = False) -> str:
    """What a run into ``out`` with ``config`` would do, without touching anything: "new", "resume" or
    "overwrite".

    Raises:
        ConfigMismatch: ``out`` holds a run with another configuration (the message names each difference),
            or files of a run without a recorded configuration; not raised with ``overwrite``.
        NotADirectoryError: ``out`` exists and is not a folder.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} exists and is not a folder")
    recorded = out / CONFIG
    if overwrite:
        return "overwrite" if out.exists() and any(out.iterdir()) else "new"
    if recorded.is_file():
        try:
            old = json.loads(recorded.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigMismatch(f"--out {out}: cannot read {recorded} ({e}); use --overwrite to start over") from None
        diff = config_differences(old.get("config", {}), config)
        if diff:
            raise ConfigMismatch(f"--out {out} holds a run with another configuration ({'; '.join(diff)}); "
                                 "rerun with its options to resume, use another --out, or --overwrite to start over")
        return "resume"
    if out.is_dir() and any((out / name).exists() for name in REPORT_FILES + (ROWS,)):
        raise ConfigMismatch(f"--out {out} holds results without a recorded configuration (an older run?); "
                             "use another --out, or --overwrite to start over")
    return "new"


def prepare_folder(out: str | Path, config: dict, mode: str) -> None:
    """Create (``mode`` "new"), keep ("resume") or clear and recreate ("overwrite": the rows and the report
    only) the run folder, and record ``config``. Call on one process only, after :func:`check_folder`."""
    out = Path(out)
    if mode == "overwrite":
        shutil.rmtree(out / ROWS, ignore_errors=True)
        for name in REPORT_FILES + (CONFIG,):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / ROWS).mkdir(exist_ok=True)
    if mode != "resume" or not (out / CONFIG).is_file():
        atomic_write_text(out / CONFIG, json.dumps({"format": FORMAT, "config": config}, indent=2) + "\n")


def read_config(out: str | Path) -> dict:
    """The recorded configuration of a run folder.

    Raises:
        FileNotFoundError: no run folder (no config.json) at ``out``.
    """
    path = Path(out) / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{out} is not an evaluation folder (no {CONFIG})")
    return json.loads(path.read_text())["config"]


class RowWriter:
    """Append-only JSON-lines file of one (launch, rank); every :meth:`write` is on disk when it returns."""

    def __init__(self, out: str | Path, rank: int, launch: str):
        folder = Path(out) / ROWS
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"rank{rank:04d}-{launch}.jsonl"
        self._f = open(self.path, "a", encoding="utf-8")
        _fsync_dir(folder)

    def write(self, row: dict, curves: dict | None = None) -> None:
        """Append one (episode, explainer) record and fsync it."""
        record = {"key": [int(row["episode"]), str(row["explainer"])], "row": row, "curves": curves or {}}
        self._f.write(json.dumps(record, allow_nan=True) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def record_files(out: str | Path) -> list[Path]:
    """The row files of a run folder, oldest launch first (then by rank)."""
    folder = Path(out) / ROWS
    if not folder.is_dir():
        return []
    files = list(folder.glob("rank*-*.jsonl"))
    return sorted(files, key=lambda p: (p.stem.split("-", 1)[1], p.stem))


def iter_records(path: Path) -> Iterator[dict]:
    """The complete records of one row file; a last line cut by a kill is skipped."""
    with open(path, "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                return                              # torn by a kill mid-write
            try:
                yield json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue


def read_records(out: str | Path, metrics=None) -> tuple[dict[tuple[int, str], dict], int]:
    """Every (episode, explainer) record of a run folder, once: ({key: record}, number of extra copies dropped).

    Raises:
        ValueError: two copies of a key disagree on a metric in ``metrics`` (two runs with different settings
            wrote into one folder).
    """
    records: dict[tuple[int, str], dict] = {}
    duplicates = 0
    for path in record_files(out):
        for rec in iter_records(path):
            key = (int(rec["key"][0]), str(rec["key"][1]))
            if key in records:
                duplicates += 1
                first = records[key]["row"]
                for m in metrics or ():
                    a, b = first.get(m), rec["row"].get(m)
                    if a != b and not (a != a and b != b):          # NaN == NaN here
                        raise ValueError(f"{path}: episode {key[0]}, {key[1]}: {m} = {b!r}, but an earlier record "
                                         f"holds {a!r}: two runs with different settings wrote into {out}")
                continue
            records[key] = rec
    return records, duplicates


def new_launch_id() -> str:
    """A name for one launch of a job, sortable by time."""
    return time.strftime("%Y%m%dT%H%M%S") + f"{time.time_ns() % 10**9:09d}-{os.getpid()}"


def count_lines(paths) -> int:
    """Number of complete lines in the given files (for progress)."""
    n = 0
    for p in paths:
        try:
            with open(p, "rb") as f:
                n += sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
        except OSError:
            pass
    return n
