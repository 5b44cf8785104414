"""``fss-attr evaluate`` at scale: torchrun ranks, a SIGKILL and a relaunch, the merge of a folder whose ranks
died, Ctrl-C, and re-runs with bad options; every result exactly once and equal to one process's."""
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fss_attr.cli import build_parser, main
from fss_attr.evaluation import evaluate_episodes
from fss_attr.evaluation.store import RowWriter, read_records, record_files

REPO = Path(__file__).resolve().parents[1]
OPTIONS = ["--episodes", "4", "--shots", "2", "--size", "32", "--explainers", "random,affex-masked",
           "--metrics", "miou,iauc", "--steps", "3", "--threads", "1", "--malloc", "default", "--no-progress"]
KEY_METRICS = ("miou", "iauc", "relevance_mass", "pointing_game")


def torchrun(out, nproc=2):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
            "-m", "fss_attr", "evaluate", *OPTIONS, "--out", str(out)]


def env():
    e = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    e.pop("RANK", None), e.pop("WORLD_SIZE", None)
    return e


def pid_of_rank(out: Path, rank: int) -> int | None:
    """The worker of ``rank`` whose command line names ``out`` (Linux /proc)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(out).encode() in cmd and f"RANK={rank}".encode() in environ and b"fss_attr" in cmd:
            return int(proc.name)
    return None


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory):
    """A 2-rank torchrun job whose rank 1 was SIGKILLed after its first durable row; returns (folder, a copy of
    it as the kill left it)."""
    root = tmp_path_factory.mktemp("scale")
    out = root / "run"
    p = subprocess.Popen(torchrun(out), env=env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         start_new_session=True)
    try:
        deadline = time.time() + 240
        killed = False
        while time.time() < deadline and p.poll() is None:
            files = list((out / "rows").glob("rank0001-*.jsonl")) if (out / "rows").is_dir() else []
            if files and lines(files[0]) >= 1:
                pid = pid_of_rank(out, 1)
                if pid is not None:
                    os.kill(pid, signal.SIGKILL)
                    killed = True
                    break
            time.sleep(0.05)
        log = p.communicate(timeout=120)[0].decode(errors="replace")
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert killed, f"rank 1 wrote no row in time or was not found:\n{log[-3000:]}"
    assert p.returncode != 0, log[-3000:]
    died = root / "died"
    shutil.copytree(out, died)
    return out, died


def single_process_values():
    """The same evaluation through the library in this process (1 thread, as the ranks)."""
    from fss_attr.commands import evaluate as cmd
    from fss_attr.evaluation.episodes import ControlledEpisodes

    args = build_parser().parse_args(["evaluate", *OPTIONS])
    names = cmd.explainer_names(args.explainers)
    config = cmd.evaluation_config(args, tuple(args.metrics.split(",")))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, _ = cmd.load_model("cpu")
        source = ControlledEpisodes(args.episodes, seed=args.seed, n_shots=args.shots, size=(args.size, args.size))
        results = list(evaluate_episodes(model, source, cmd.explainer_factories(names, args), config))
    finally:
        torch.set_num_threads(threads)
    return {(r["episode"], r["explainer"]): r for res in results for r in res.rows}


def csv_rows(folder: Path) -> list[dict]:
    with open(folder / "episodes.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_a_killed_rank_and_a_relaunch_give_every_result_once_equal_to_one_process(killed_run):
    out, died = killed_run
    before = {p.name: p.read_bytes() for p in record_files(out)}
    assert any(n.startswith("rank0001-") and b for n, b in before.items())
    p = subprocess.run(torchrun(out), env=env(), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    for name, data in before.items():           # the killed launch's records are kept, byte for byte
        assert (out / "rows" / name).read_bytes().startswith(data[: data.rfind(b"\n") + 1])
    records, duplicates = read_records(out)
    assert duplicates == 0 and len(records) == 8
    rows = csv_rows(out)
    keys = [(int(r["episode"]), r["explainer"]) for r in rows]
    assert sorted(keys) == sorted(set(keys)) and len(keys) == 8
    want = single_process_values()
    assert set(want) == set(keys)
    for r in rows:
        w = want[(int(r["episode"]), r["explainer"])]
        for m in KEY_METRICS:
            assert float(r[m]) == w[m], (r["episode"], r["explainer"], m)     # bit for bit
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["episodes"] == 4


@pytest.mark.slow
def test_merge_only_on_a_folder_whose_ranks_died(killed_run, capsys):
    _, died = killed_run
    records, _ = read_records(died)
    assert 0 < len(records) < 8
    assert main(["evaluate", "--merge-only", str(died)]) == 0
    rows = csv_rows(died)
    assert {(int(r["episode"]), r["explainer"]) for r in rows} == set(records) and len(rows) == len(records)
    summary = json.loads((died / "summary.json").read_text())
    assert summary["complete"] is False and summary["episodes_expected"] == 4
    assert summary["episodes"] == len({e for e, _ in records})
    assert "incomplete" in capsys.readouterr().out


@pytest.mark.slow
def test_reruns_with_bad_options_leave_every_result_intact(killed_run, tmp_path, capsys):
    _, died = killed_run
    folder = tmp_path / "run"
    shutil.copytree(died, folder)
    assert main(["evaluate", "--merge-only", str(folder)]) == 0
    before = snapshot(folder)
    base = ["evaluate", *OPTIONS, "--out", str(folder)]
    for bad, needle in ((["--steps", "0"], "--steps"), (["--size", "16"], "--size"),
                        (["--explainers", " , "], "--explainers"), (["--fold", "1"], "--fold"),
                        (["--episode-list", "x.csv"], "--episode-list"), (["--steps", "4"], "evaluation.steps: 3 -> 4"),
                        (["--explainers", "random"], "explainers")):
        capsys.readouterr()
        assert main(base + bad) == 2, bad
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], (bad, err)
        assert snapshot(folder) == before, bad


@pytest.mark.slow
def test_ctrl_c_during_a_run_keeps_every_result_and_the_rerun_completes(killed_run, tmp_path, capsys, monkeypatch):
    _, died = killed_run
    folder = tmp_path / "run"
    shutil.copytree(died, folder)
    assert main(["evaluate", "--merge-only", str(folder)]) == 0
    before = snapshot(folder)
    real_write = RowWriter.write

    def write_then_ctrl_c(self, *args, **kw):     # Ctrl-C right after the first new row is durable (a watcher
        real_write(self, *args, **kw)             # thread raced the run's last episode on a loaded machine)
        monkeypatch.setattr(RowWriter, "write", real_write)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(RowWriter, "write", write_then_ctrl_c)
    threads = torch.get_num_threads()
    try:
        rc = main(["evaluate", *OPTIONS, "--out", str(folder)])
    finally:
        monkeypatch.setattr(RowWriter, "write", real_write)
        torch.set_num_threads(threads)
    assert rc == 130
    assert "run the same command again to resume" in capsys.readouterr().err
    after = snapshot(folder)
    for path, data in before.items():              # rows, report and configuration: all as they were
        assert after[path] == data, path
    records, _ = read_records(folder)
    assert len(records) > len(read_records(died)[0])     # and the interrupted run's own finished rows are kept
    try:
        assert main(["evaluate", *OPTIONS, "--out", str(folder)]) == 0
    finally:
        torch.set_num_threads(threads)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["complete"] and len(csv_rows(folder)) == 8
