"""The evaluation library: shares and resumes equal one pass, degenerate episodes, the durable store, and the
command's checks of options and inputs (before anything loads or is written)."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from fss_attr.baselines import make_explainer
from fss_attr.baselines.simple import Random
from fss_attr.cli import main
from fss_attr.evaluation import EvaluationConfig, evaluate_episodes
from fss_attr.evaluation.distributed import Context, share
from fss_attr.evaluation.report import build_summary, table_text
from fss_attr.evaluation.store import (ConfigMismatch, RowWriter, atomic_write_text, check_folder, prepare_folder,
                                       read_records)
from tests.test_metrics_models import ConvMatcher, blob_episode

METRICS = ("miou", "iauc", "dauc", "iauc@1%", "infidelity_norm")


def explainers():
    return {"random": lambda seed: Random(seed=seed), "affex-masked": make_explainer("affex-masked", backend="torch"),
            "saliency": make_explainer("saliency")}


def values(results):
    return {(r["episode"], r["explainer"]): tuple(r[m] for m in METRICS + ("pointing_game",))
            for res in results for r in res.rows}


@pytest.mark.filterwarnings("ignore")
def test_shares_and_a_resume_equal_one_pass(gen):
    seed = int(torch.randint(0, 2**30, (1,), generator=gen))
    episodes = [blob_episode(torch.Generator().manual_seed(seed + i), b=1, n=2, size=(16, 16)) for i in range(4)]
    model = ConvMatcher().double()
    config = EvaluationConfig(metrics=METRICS, steps=5, infidelity_perturbations=2, seed=7)
    full = values(evaluate_episodes(model, episodes, explainers(), config))
    assert len(full) == 12
    sharded = {}
    for rank in range(2):                   # two ranks, each its share, in any order
        mine = share(range(4), Context(rank, 2))
        sharded.update(values(evaluate_episodes(model, episodes, explainers(), config, indices=mine[::-1])))
    assert sharded == full                  # bit for bit, the random explainer included
    # a resume: (1, random) and (2, affex-masked) are done; the first explainer still runs for the shared logits
    done = {(1, "random"), (2, "affex-masked")}
    resumed = values(evaluate_episodes(model, episodes, explainers(), config, indices=[1, 2],
                                       skip=lambda i, n: (i, n) in done))
    assert set(resumed) == {(1, "affex-masked"), (1, "saliency"), (2, "random"), (2, "saliency")}
    assert all(resumed[k] == full[k] for k in resumed)


@pytest.mark.filterwarnings("ignore")
def test_degenerate_episodes_are_flagged_and_left_out_of_the_means(gen):
    episodes = [blob_episode(torch.Generator().manual_seed(3 + i), b=1, n=2, size=(16, 16)) for i in range(2)]
    model = ConvMatcher().double()
    config = EvaluationConfig(metrics=("miou", "iauc"), steps=4, region="all")
    rows = [r for res in evaluate_episodes(model, episodes, explainers(), config) for r in res.rows]
    assert rows and all(r["degenerate"] == 1 for r in rows)       # R = every pixel: AffEx maps are uniform
    # one clean episode and one degenerate one: the means are over the clean one
    rows = [{"episode": 0, "explainer": "x", "iauc": 0.25, "degenerate": 0, "miou": 0.5},
            {"episode": 1, "explainer": "x", "iauc": 0.75, "degenerate": 1, "miou": 0.5}]
    s = build_summary(rows, ("iauc",), {"explainers": ["x"]}, expected_episodes=2, environment={})
    assert s["metrics"]["x"]["iauc"]["mean"] == 0.25 and s["metrics"]["x"]["iauc"]["n"] == 1
    assert s["episodes"] == 2 and s["episodes_degenerate"] == 1 and s["episodes_in_means"] == 1 and s["complete"]
    assert "1 degenerate episodes left out" in table_text(s, rows)


def test_rows_survive_a_torn_last_line_and_duplicates_must_agree(tmp_path):
    with RowWriter(tmp_path, 0, "a") as w:
        w.write({"episode": 0, "explainer": "random", "iauc": 0.5})
        w.write({"episode": 1, "explainer": "random", "iauc": float("nan")})
    path = tmp_path / "rows" / "rank0000-a.jsonl"
    with open(path, "a") as f:
        f.write('{"key": [2, "random"], "row": {"epis')              # a kill mid-write
    records, dup = read_records(tmp_path, ("iauc",))
    assert sorted(records) == [(0, "random"), (1, "random")] and dup == 0
    with RowWriter(tmp_path, 1, "b") as w:                          # a later launch: the same key, the same value
        w.write({"episode": 1, "explainer": "random", "iauc": float("nan")})
    assert read_records(tmp_path, ("iauc",))[1] == 1
    with RowWriter(tmp_path, 1, "c") as w:
        w.write({"episode": 0, "explainer": "random", "iauc": 0.25})
    with pytest.raises(ValueError, match="episode 0, random: iauc"):
        read_records(tmp_path, ("iauc",))


def test_the_folder_is_resumed_refused_or_started_over(tmp_path):
    out = tmp_path / "run"
    cfg = {"model": "M", "evaluation": {"steps": 5, "seed": 42}, "explainers": ["random"]}
    assert check_folder(out, cfg) == "new"
    prepare_folder(out, cfg, "new")
    assert check_folder(out, cfg) == "resume"
    with pytest.raises(ConfigMismatch, match=r"evaluation.steps: 5 -> 6"):
        check_folder(out, {**cfg, "evaluation": {"steps": 6, "seed": 42}})
    assert check_folder(out, {**cfg, "explainers": ["lime"]}, overwrite=True) == "overwrite"
    old = tmp_path / "old"
    old.mkdir()
    (old / "episodes.csv").write_text("episode\n0\n")
    with pytest.raises(ConfigMismatch, match="without a recorded configuration"):
        check_folder(old, cfg)
    atomic_write_text(out / "x.txt", "new")
    assert (out / "x.txt").read_text() == "new" and not list(out.glob(".*tmp"))


def fake_voc(root):
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        lab = np.zeros((40, 40), np.uint8)
        lab[10:30, 10:30] = 1 + i % 2
        Image.fromarray((rng.random((40, 40, 3)) * 255).astype(np.uint8)).save(root / "JPEGImages" / f"img{i:02d}.jpg")
        Image.fromarray(lab).save(root / "SegmentationClass" / f"img{i:02d}.png")


@pytest.mark.parametrize("options, needle", [
    (["--size", "16"], "--size must be an int >= 32"),
    (["--explainers", " , "], "--explainers must name at least one explainer"),
    (["--explainers", "random,gradcam"], "unknown explainer 'gradcam'"),
    (["--metrics", ""], "metrics must name at least one metric"),
    (["--steps", "0"], "--steps must be an int >= 2"),
    (["--episodes", "0"], "--episodes must be an int >= 1"),
    (["--threads", "0"], "--threads must be an int >= 1"),
    (["--fold", "1"], "--fold does not apply to --dataset controlled"),
    (["--root", "."], "--root does not apply to --dataset controlled"),
    (["--episode-list", "e.csv"], "--episode-list does not apply to --dataset controlled"),
    (["--dataset", "pascal"], "--dataset pascal needs --root"),
    (["--device", "nope"], "--device"),
    (["--merge-only", "nowhere"], "--merge-only nowhere: not an evaluation folder"),
])
def test_bad_options_exit_2_with_one_line_and_write_nothing(options, needle, tmp_path, capsys):
    out = tmp_path / "out"
    where = [] if "--merge-only" in options else ["--out", str(out)]
    assert main(["evaluate", *options, *where, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not out.exists()


@pytest.mark.parametrize("name, text, needle", [
    ("no_class_column", "episode,query,support_1,support_2\n0,img00,img02,img04\n", "not an episode list"),
    ("class_not_int", "episode,class_id,query,support_1,support_2\n0,cat,img00,img02,img04\n", "not an episode list"),
    ("short_row", "episode,class_id,query,support_1,support_2\n0,1,img00,img02\n", "expected a query and --shots 2 support images"),
    ("class_of_other_fold", "episode,class_id,query,support_1,support_2\n0,17,img00,img02,img04\n",
     "not a class of pascal fold 0"),
])
def test_bad_episode_lists_are_refused_before_the_model_loads(name, text, needle, tmp_path, capsys):
    fake_voc(tmp_path / "VOC")
    path = tmp_path / f"{name}.csv"
    path.write_text(text)
    out = tmp_path / "out"
    assert main(["evaluate", "--dataset", "pascal", "--root", str(tmp_path / "VOC"), "--shots", "2", "--size", "32",
                 "--episodes", "1", "--explainers", "random", "--metrics", "miou", "--episode-list", str(path),
                 "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0] and str(path) in err[0], err
    assert not out.exists()


def test_merge_only_takes_no_other_option(tmp_path, capsys):
    prepare_folder(tmp_path, {"episodes": 1, "explainers": ["random"], "evaluation": {}}, "new")
    assert main(["evaluate", "--merge-only", str(tmp_path), "--steps", "5"]) == 2
    assert "--merge-only takes no other option" in capsys.readouterr().err
    assert json.loads((tmp_path / "config.json").read_text())["config"]["episodes"] == 1


def test_the_job_layout_comes_from_torchruns_environment(monkeypatch):
    from fss_attr.evaluation import distributed

    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    assert distributed.context() == Context(0, 1, 0, 1)
    monkeypatch.setenv("RANK", "3"), monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1"), monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    ctx = distributed.context()
    assert ctx == Context(3, 4, 1, 2) and ctx.distributed and not ctx.is_main
    assert distributed.device_for("cuda", ctx) == "cuda:1" and distributed.device_for("cpu", ctx) == "cpu"
    assert distributed.device_for("cuda:0", Context()) == "cuda:0"
    assert distributed.threads_per_rank(ctx) == max(1, distributed.usable_cpus() // 2)
    assert share(range(10), ctx) == [3, 7]
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ValueError, match="RANK=4"):
        distributed.context()
